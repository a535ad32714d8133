"""Identity and grants through a running gateway, over real sockets.

The gateway runs as `aperture serve` in a subprocess and listens on 127.0.0.1.
A LocalAPI stand-in (tests/fakes/tailscaled.py, in a thread of this process)
maps loopback source addresses to tailnet identities; clients bind those
addresses, so the gateway's WhoIs lookup sees a different peer per caller:

    127.0.0.2  alice@example.com  (user)
    127.0.0.3  bob@example.com    (admin through one grant, user through another)
    127.0.0.4  tagged node tag:ci (no user)
    127.0.0.5  carol@example.com  (member of group:ml, reported by tailscaled)
    127.0.0.6  dave@example.com   (matched only by a grant without a role)
    127.0.0.7  erin@example.com   (granted only by the tailnet policy file, in CapMap)
    127.0.0.8  a node with neither a user nor tags
    127.0.0.9  not on the tailnet ("no match")

The provider simulator runs in-process too, so a test can see exactly what
reached the upstream (`simulator.sim.seen`) and, for a denied request, that
nothing did.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import tempfile
import urllib.parse
import uuid
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from tests.fakes.tailscaled import FakeTailscaled, tagged, user

from . import conftest
from .conftest import Reply, launch_gateway, wait_for

CAP = "tailscale.com/cap/aperture"
ANT_KEY = "sk-ant-api03-identity-suite-0123456789abcdef"
OAI_KEY = "sk-proj-identity-suite-fedcba9876543210"

ALICE, BOB, CI, CAROL, DAVE, ERIN, NOBODY, UNKNOWN = (
    "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8",
    "127.0.0.9")
ERIN_CAPS = [{"role": "user"}, {"models": "openai/gpt-5.4"}]


def no_user_nor_tags() -> dict:
    doc = user("", "", node_name="orphan", node_id="nORPHAN1CNTRL")
    doc["UserProfile"]["LoginName"] = ""
    return doc


PEERS = {
    ALICE: user("alice@example.com", "Alice Example", node_name="alice-laptop", node_id="nALICE1CNTRL"),
    BOB: user("bob@example.com", "Bob Builder", node_name="bob-desktop", node_id="nBOB1CNTRL"),
    CI: tagged(["tag:ci"], node_name="ci-runner", node_id="nCI1TAGGD"),
    CAROL: user("carol@example.com", "Carol Ml", node_name="carol-gpu", node_id="nCAROL1CNTRL",
                groups=["group:ml"]),
    DAVE: user("dave@example.com", "Dave", node_name="dave-phone", node_id="nDAVE1CNTRL"),
    ERIN: user("erin@example.com", "Erin", node_name="erin-mac", node_id="nERIN1CNTRL",
               cap_map={"tailscale.com/cap/aperture": ERIN_CAPS,
                        "example.com/cap/aperture": [{"role": "admin"}]}),
    NOBODY: no_user_nor_tags(),
}

# provider -> models, in config order (the order /v1/models lists them in).
PROVIDERS = {
    "anthropic": ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7"],
    "openai": ["gpt-5.4", "gpt-5.4-mini"],
}
ALL_MODELS = [f"{p}/{m}" for p, ms in PROVIDERS.items() for m in ms]


def grant(src: list[str], *caps: dict) -> dict:
    return {"src": src, "app": {CAP: list(caps)}}


# The same access written twice: with `grants` and with the legacy `temp_grants`.
CURRENT_GRANTS = [
    grant(["*"], {"models": "anthropic/claude-haiku-4-5"}),  # everyone, but no role
    grant(["alice@example.com"], {"role": "user"}, {"models": "anthropic/claude-sonnet-*"},
          {"models": "openai/gpt-5.4-mini"}),
    grant(["bob@example.com"], {"role": "user"}, {"models": "openai/**"}),
    grant(["bob@example.com"], {"role": "admin"}),
    grant(["tag:ci"], {"role": "user"}, {"models": "openai/gpt-5.4"}),
    grant(["group:ml"], {"role": "user"}, {"models": "*/claude-opus-*"}),
]
LEGACY_GRANTS = [
    {"src": ["*"], "grants": [{"providers": [{"provider": "anthropic", "model": "claude-haiku-4-5"}]}]},
    {"src": ["Alice@Example.com"], "grants": [
        {"role": "user"},
        {"providers": [{"provider": "anthropic", "model": "claude-sonnet-*"},
                       {"provider": "openai", "model": "gpt-5.4-mini"}]}]},
    {"src": ["bob@example.com"], "grants": [{"role": "admin"}]},  # admin before user this time
    {"src": ["bob@example.com"], "grants": [{"role": "user"},
                                            {"providers": [{"provider": "openai", "model": "*"}]}]},
    {"src": ["tag:ci"], "grants": [{"role": "user"},
                                   {"providers": [{"provider": "openai", "model": "gpt-5.4"}]}]},
    {"src": ["group:ml"], "grants": [{"role": "user"},
                                     {"providers": [{"provider": "*", "model": "claude-opus-*"}]}]},
]

# caller -> (role, fully qualified models it may use)
ACCESS = {
    ALICE: ("user", {"anthropic/claude-sonnet-4-6", "anthropic/claude-haiku-4-5", "openai/gpt-5.4-mini"}),
    BOB: ("admin", {"anthropic/claude-haiku-4-5", "openai/gpt-5.4", "openai/gpt-5.4-mini"}),
    CI: ("user", {"anthropic/claude-haiku-4-5", "openai/gpt-5.4"}),
    CAROL: ("user", {"anthropic/claude-haiku-4-5", "anthropic/claude-opus-4-7"}),
    DAVE: (None, set()),
}
CALLER_IDS = {ALICE: "alice", BOB: "bob-admin", CI: "tag-ci", CAROL: "group-ml", DAVE: "no-role"}


def gateway_config(sim_url: str, *, legacy: bool = False) -> dict:
    doc: dict = {
        "providers": {
            "anthropic": {"baseurl": sim_url, "apikey": ANT_KEY, "authorization": "x-api-key",
                          "models": PROVIDERS["anthropic"], "compatibility": {"anthropic_messages": True}},
            "openai": {"baseurl": sim_url, "apikey": OAI_KEY, "models": PROVIDERS["openai"],
                       "compatibility": {"openai_chat": True}},
        },
    }
    doc["temp_grants" if legacy else "grants"] = LEGACY_GRANTS if legacy else CURRENT_GRANTS
    return doc


# --- a small HTTP client that binds its source address ------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection from `source` to the gateway."""

    def __init__(self, port: int, source: str = "127.0.0.1", host: str = "127.0.0.1") -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=15, source_address=(source, 0))

    def request(self, method: str, path: str, body=None, headers: list[tuple[str, str]] = ()) -> Reply:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.conn.putrequest(method, path, skip_accept_encoding=True)
        if data is not None:
            self.conn.putheader("Content-Type", "application/json")
            self.conn.putheader("Content-Length", str(len(data)))
        for name, value in headers:
            self.conn.putheader(name, value)
        self.conn.endheaders(data)
        resp = self.conn.getresponse()
        body_bytes = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body_bytes)

    @property
    def local_port(self) -> int:
        return self.conn.sock.getsockname()[1]

    def close(self) -> None:
        self.conn.close()


def call(port: int, method: str, path: str, body=None, *, source: str = "127.0.0.1",
         headers: list[tuple[str, str]] = (), host: str = "127.0.0.1") -> Reply:
    client = Client(port, source, host)
    try:
        return client.request(method, path, body, headers)
    finally:
        client.close()


def model_request(model: str, marker: str, api: str) -> tuple[str, dict]:
    """(path, body) of a small chat request in format `api`; `marker` goes into the prompt."""
    content = "grant probe " + marker
    if api == "anthropic":
        return "/v1/messages", {"model": model, "max_tokens": 16,
                                "messages": [{"role": "user", "content": content}]}
    return "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": content}]}


def ask(port: int, source: str, fqn: str, *, headers: list[tuple[str, str]] = (),
        bare: bool = True) -> tuple[Reply, str]:
    """Send one chat request for `fqn` (by its bare name unless bare=False); (reply, marker)."""
    provider, model = fqn.split("/", 1)
    marker = uuid.uuid4().hex
    path, body = model_request(model if bare else fqn, marker, provider)
    extra = [("anthropic-version", "2023-06-01")] if provider == "anthropic" else []
    return call(port, "POST", path, body, source=source, headers=extra + list(headers)), marker


class Upstream:
    """What reached the simulator since this object was made."""

    def __init__(self, simulator) -> None:
        self.seen = simulator.sim.seen
        self.last = self.seen[-1] if self.seen else None  # held: identity stays meaningful
        self.count = len(self.seen)

    def unchanged(self) -> bool:
        return (self.seen[-1] if self.seen else None) is self.last and len(self.seen) == self.count

    def with_marker(self, marker: str) -> list:
        return [s for s in list(self.seen) if marker.encode() in s.body]


def assert_error(reply: Reply, status: int, api: str, message: str, *, exact: bool = True) -> None:
    """`reply` is an error of `status` in the error shape of `api` carrying `message`."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers.get("content-type", "").startswith("application/json")
    doc = reply.json()
    if api == "anthropic":
        assert doc["type"] == "error" and set(doc) >= {"type", "error", "request_id"}
        err = doc["error"]
        assert set(err) == {"type", "message"}
    else:
        assert set(doc) == {"error"}
        err = doc["error"]
        assert set(err) >= {"message", "type", "param", "code"}
    if status == 403:
        assert err["type"] == "permission_error"
    if exact:
        assert err["message"] == message
    else:
        assert message in err["message"], err["message"]


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_dir():
    """A short directory for unix sockets (sun_path holds 107 bytes)."""
    path = tempfile.mkdtemp(prefix="ts-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tailscaled(short_dir):
    fake = FakeTailscaled(str(Path(short_dir) / "tailscaled.sock"), PEERS)
    with fake.running():
        yield fake


@contextlib.contextmanager
def running_gateway(tmp_path_factory, config, *args, **kw):
    gw = launch_gateway(tmp_path_factory.mktemp("gw"), config, *args, capture=False, **kw)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module", params=["grants", "temp_grants"])
def grants_gw(request, tmp_path_factory, simulator, tailscaled):
    """A gateway with tailscale identity, one per form of grants."""
    config = gateway_config(simulator.url, legacy=request.param == "temp_grants")
    with running_gateway(tmp_path_factory, config, "--tailscaled-socket", tailscaled.socket_path,
                         identity="tailscale") as gw:
        gw.extra["grants"] = request.param
        yield gw


@pytest.fixture(scope="module")
def ts_gw(tmp_path_factory, simulator, tailscaled):
    """A gateway with tailscale identity and the current form of grants."""
    with running_gateway(tmp_path_factory, gateway_config(simulator.url),
                         "--tailscaled-socket", tailscaled.socket_path, identity="tailscale") as gw:
        yield gw


# --- 1. tailscale identity ---------------------------------------------------------------

WHOAMI = {
    ALICE: {"login": "alice@example.com", "display_name": "Alice Example",
            "node": {"name": "alice-laptop", "id": "nALICE1CNTRL"}, "tags": [], "groups": [],
            "role": "user", "source": "tailscale"},
    BOB: {"login": "bob@example.com", "display_name": "Bob Builder",
          "node": {"name": "bob-desktop", "id": "nBOB1CNTRL"}, "tags": [], "groups": [],
          "role": "admin", "source": "tailscale"},
    CI: {"login": "", "display_name": "tag:ci", "node": {"name": "ci-runner", "id": "nCI1TAGGD"},
         "tags": ["tag:ci"], "groups": [], "role": "user", "source": "tailscale"},
    CAROL: {"login": "carol@example.com", "display_name": "Carol Ml",
            "node": {"name": "carol-gpu", "id": "nCAROL1CNTRL"}, "tags": [], "groups": ["group:ml"],
            "role": "user", "source": "tailscale"},
    DAVE: {"login": "dave@example.com", "display_name": "Dave",
           "node": {"name": "dave-phone", "id": "nDAVE1CNTRL"}, "tags": [], "groups": [],
           "role": None, "source": "tailscale"},
}
for _who in WHOAMI.values():
    _who["tailnet_grants"] = []

# Model globs in /api/whoami, per spelling of the grants: in grant order, the
# legacy `*` of a model read as `**`; none without a role.
WHOAMI_MODELS = {
    "grants": {
        ALICE: ["anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-*", "openai/gpt-5.4-mini"],
        BOB: ["anthropic/claude-haiku-4-5", "openai/**"],
        CI: ["anthropic/claude-haiku-4-5", "openai/gpt-5.4"],
        CAROL: ["anthropic/claude-haiku-4-5", "*/claude-opus-*"],
        DAVE: [],
    },
    "temp_grants": {
        ALICE: ["anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-**", "openai/gpt-5.4-mini"],
        BOB: ["anthropic/claude-haiku-4-5", "openai/**"],
        CI: ["anthropic/claude-haiku-4-5", "openai/gpt-5.4"],
        CAROL: ["anthropic/claude-haiku-4-5", "*/claude-opus-**"],
        DAVE: [],
    },
}


@pytest.mark.parametrize("source", list(WHOAMI), ids=CALLER_IDS.get)
def test_whoami_per_caller(grants_gw, tailscaled, source):
    client = Client(grants_gw.port, source)
    try:
        reply = client.request("GET", "/api/whoami")
        port = client.local_port
    finally:
        client.close()
    assert reply.status == 200, reply.body
    assert reply.json() == {**WHOAMI[source], "models": WHOAMI_MODELS[grants_gw.extra["grants"]][source]}
    # The gateway asked about this very connection (IP and port), as tailscaled expects.
    lookups = [r for r in tailscaled.requests
               if r["target"] == "/localapi/v0/whois?addr=" + urllib.parse.quote(f"{source}:{port}", safe="")]
    assert len(lookups) == 1
    assert lookups[0]["headers"]["host"] == "local-tailscaled.sock"
    assert "referer" not in lookups[0]["headers"] and "origin" not in lookups[0]["headers"]


def test_identity_is_resolved_once_per_connection(ts_gw, tailscaled):
    client = Client(ts_gw.port, ALICE)
    try:
        before = len(tailscaled.requests)
        for _ in range(3):
            assert client.request("GET", "/api/whoami").json()["login"] == "alice@example.com"
        path, body = model_request("claude-sonnet-4-6", "once", "anthropic")
        r = client.request("POST", path, body, [("anthropic-version", "2023-06-01")])
        assert r.status == 200, r.body
        assert len(tailscaled.requests) - before == 1
    finally:
        client.close()
    # A new connection is a new lookup.
    assert call(ts_gw.port, "GET", "/api/whoami", source=ALICE).status == 200
    assert len(tailscaled.requests) - before == 2


@pytest.mark.parametrize("path,api", [("/api/whoami", "openai"), ("/v1/models", "openai"),
                                      ("/api/providers", "openai")])
def test_unknown_peer_is_refused_on_management_endpoints(ts_gw, path, api):
    reply = call(ts_gw.port, "GET", path, source=UNKNOWN)
    assert_error(reply, 403, api, "not a tailnet peer")


@pytest.mark.parametrize("fqn", ["anthropic/claude-haiku-4-5", "openai/gpt-5.4"])
def test_unknown_peer_is_refused_in_callers_format(ts_gw, simulator, fqn):
    upstream = Upstream(simulator)
    reply, marker = ask(ts_gw.port, UNKNOWN, fqn)
    assert_error(reply, 403, fqn.split("/")[0], "not a tailnet peer")
    assert upstream.unchanged() and not upstream.with_marker(marker)


def test_localapi_unreachable_is_503_until_it_comes_back(gateway_factory, simulator, short_dir):
    sock = str(Path(short_dir) / "absent.sock")
    gw = gateway_factory(gateway_config(simulator.url), "--tailscaled-socket", sock,
                         identity="tailscale", capture=False)
    upstream = Upstream(simulator)
    reply = call(gw.port, "GET", "/api/whoami", source=ALICE)
    assert_error(reply, 503, "openai", f"tailscaled LocalAPI unreachable at {sock}", exact=False)
    reply, marker = ask(gw.port, ALICE, "anthropic/claude-sonnet-4-6")
    assert reply.status == 503, reply.body
    err = reply.json()["error"]
    assert reply.json()["type"] == "error" and err["type"] == "overloaded_error"
    assert "tailscaled LocalAPI unreachable" in err["message"] and sock in err["message"]
    reply, _ = ask(gw.port, ALICE, "openai/gpt-5.4-mini")
    assert reply.status == 503 and "tailscaled LocalAPI unreachable" in reply.json()["error"]["message"]
    assert upstream.unchanged() and not upstream.with_marker(marker)
    wait_for(lambda: "tailscaled LocalAPI unreachable" in gw.log())
    # An unreachable LocalAPI is not remembered: once tailscaled is there, callers get in.
    with FakeTailscaled(sock, PEERS).running():
        reply = call(gw.port, "GET", "/api/whoami", source=ALICE)
        assert reply.status == 200 and reply.json()["login"] == "alice@example.com"


def test_localapi_errors_other_than_no_match_are_503(ts_gw, tailscaled):
    tailscaled.mode = "status:500"
    try:
        reply = call(ts_gw.port, "GET", "/api/whoami", source=ALICE)
    finally:
        tailscaled.mode = "normal"
    assert_error(reply, 503, "openai", "tailscaled LocalAPI unreachable", exact=False)
    assert call(ts_gw.port, "GET", "/api/whoami", source=ALICE).status == 200


@pytest.mark.parametrize("mode,words", [("garbage", "malformed HTTP answer"),
                                        ("badjson", "malformed whois answer")])
def test_localapi_answering_garbage_is_503_naming_tailscaled(ts_gw, tailscaled, simulator,
                                                             mode, words):
    upstream = Upstream(simulator)
    tailscaled.mode = mode
    try:
        who = call(ts_gw.port, "GET", "/api/whoami", source=ALICE)
        reply, marker = ask(ts_gw.port, ALICE, "anthropic/claude-sonnet-4-6")
    finally:
        tailscaled.mode = "normal"
    assert_error(who, 503, "openai", "tailscaled LocalAPI unreachable", exact=False)
    assert words in who.json()["error"]["message"]
    assert reply.status == 503 and reply.json()["error"]["type"] == "overloaded_error"
    assert "tailscaled LocalAPI unreachable" in reply.json()["error"]["message"]
    assert upstream.unchanged() and not upstream.with_marker(marker)


@pytest.mark.parametrize("fqn", ["anthropic/claude-haiku-4-5", "openai/gpt-5.4"])
def test_a_node_without_user_or_tags_is_refused_saying_so(ts_gw, simulator, fqn):
    upstream = Upstream(simulator)
    assert_error(call(ts_gw.port, "GET", "/api/whoami", source=NOBODY), 403, "openai",
                 "tailnet peer has neither a user nor tags")
    reply, marker = ask(ts_gw.port, NOBODY, fqn)
    assert_error(reply, 403, fqn.split("/")[0], "tailnet peer has neither a user nor tags")
    assert upstream.unchanged() and not upstream.with_marker(marker)


# --- grants from the tailnet policy file (WhoIs CapMap) ---------------------------------------


def test_policy_file_grants_are_shown_and_used(ts_gw, simulator):
    who = call(ts_gw.port, "GET", "/api/whoami", source=ERIN)
    assert who.status == 200, who.body
    assert who.json() == {
        "login": "erin@example.com", "display_name": "Erin",
        "node": {"name": "erin-mac", "id": "nERIN1CNTRL"}, "tags": [], "groups": [],
        "role": "user", "models": ["anthropic/claude-haiku-4-5", "openai/gpt-5.4"],
        "tailnet_grants": ERIN_CAPS, "source": "tailscale"}
    # No config grant gives Erin a role: the policy file's does, and its model.
    reply, _ = ask(ts_gw.port, ERIN, "openai/gpt-5.4")
    assert reply.status == 200, reply.body
    reply, _ = ask(ts_gw.port, ERIN, "anthropic/claude-haiku-4-5")  # config: "*" without a role
    assert reply.status == 200, reply.body
    reply, marker = ask(ts_gw.port, ERIN, "openai/gpt-5.4-mini")
    assert_error(reply, 403, "openai", "access denied: model openai/gpt-5.4-mini not granted")


def test_the_grants_capability_name_is_configurable(gateway_factory, simulator, tailscaled):
    gw = gateway_factory(gateway_config(simulator.url), "--tailscaled-socket",
                         tailscaled.socket_path, "--grants-capability", "example.com/cap/aperture",
                         identity="tailscale", capture=False)
    who = call(gw.port, "GET", "/api/whoami", source=ERIN).json()
    assert who["role"] == "admin" and who["tailnet_grants"] == [{"role": "admin"}]
    assert who["models"] == ["anthropic/claude-haiku-4-5"]


# --- 2. grants -----------------------------------------------------------------------------


@pytest.mark.parametrize("fqn", ALL_MODELS)
@pytest.mark.parametrize("source", list(ACCESS), ids=CALLER_IDS.get)
def test_grant_decision(grants_gw, simulator, source, fqn):
    role, allowed = ACCESS[source]
    provider, model = fqn.split("/")
    upstream = Upstream(simulator)
    reply, marker = ask(grants_gw.port, source, fqn)
    if role is not None and fqn in allowed:
        assert reply.status == 200, reply.body
        [seen] = upstream.with_marker(marker)
        assert json.loads(seen.body)["model"] == model
        if provider == "anthropic":
            assert seen.headers["x-api-key"] == ANT_KEY
        else:
            assert seen.headers["authorization"] == "Bearer " + OAI_KEY
        return
    expected = ("access denied: no role granted" if role is None
                else f"access denied: model {fqn} not granted")
    assert_error(reply, 403, provider, expected)
    assert upstream.unchanged() and not upstream.with_marker(marker)


@pytest.mark.parametrize("source", [ALICE, CAROL], ids=CALLER_IDS.get)
def test_grants_apply_to_fully_qualified_names(grants_gw, simulator, source):
    for fqn in ("anthropic/claude-sonnet-4-6", "anthropic/claude-opus-4-7"):
        upstream = Upstream(simulator)
        reply, marker = ask(grants_gw.port, source, fqn, bare=False)
        if fqn in ACCESS[source][1]:
            assert reply.status == 200, reply.body
            assert json.loads(upstream.with_marker(marker)[0].body)["model"] == fqn.split("/")[1]
        else:
            assert_error(reply, 403, "anthropic", f"access denied: model {fqn} not granted")
            assert upstream.unchanged()


@pytest.mark.parametrize("source", list(ACCESS), ids=CALLER_IDS.get)
def test_models_and_providers_list_what_the_caller_may_use(grants_gw, source):
    role, allowed = ACCESS[source]
    visible = [fqn for fqn in ALL_MODELS if role is not None and fqn in allowed]

    reply = call(grants_gw.port, "GET", "/v1/models", source=source)
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["object"] == "list"
    assert [(m["owned_by"], m["id"]) for m in doc["data"]] == [tuple(f.split("/")) for f in visible]
    for m in doc["data"]:
        assert m["object"] == "model"
        assert m["metadata"]["provider"]["id"] == m["owned_by"]

    reply = call(grants_gw.port, "GET", "/api/providers", source=source)
    assert reply.status == 200, reply.body
    listed = {p["id"]: p["models"] for p in reply.json()}
    expected: dict[str, list[str]] = {}
    for fqn in visible:
        p, m = fqn.split("/")
        expected.setdefault(p, []).append(m)
    assert listed == expected
    for p in reply.json():
        assert set(p) >= {"id", "name", "description", "models", "compatibility"}
        assert all(isinstance(v, bool) for v in p["compatibility"].values())
    assert ANT_KEY not in reply.body.decode() and OAI_KEY not in reply.body.decode()


def test_everyone_grant_with_role_covers_tagged_nodes_and_unknown_logins(
        gateway_factory, simulator, tailscaled):
    config = gateway_config(simulator.url)
    config["grants"] = [grant(["*"], {"role": "user"}, {"models": "openai/gpt-5.4*"})]
    gw = gateway_factory(config, "--tailscaled-socket", tailscaled.socket_path,
                         identity="tailscale", capture=False)
    for source in (ALICE, CI, DAVE):
        assert call(gw.port, "GET", "/api/whoami", source=source).json()["role"] == "user"
        reply, _ = ask(gw.port, source, "openai/gpt-5.4-mini")
        assert reply.status == 200, reply.body
        reply, _ = ask(gw.port, source, "anthropic/claude-haiku-4-5")
        assert_error(reply, 403, "anthropic", "access denied: model anthropic/claude-haiku-4-5 not granted")
    # A peer that is not on the tailnet is not part of "everyone".
    assert_error(call(gw.port, "GET", "/v1/models", source=UNKNOWN), 403, "openai", "not a tailnet peer")


def test_sdk_clients_bound_to_a_source_address(ts_gw, simulator):
    """The official SDKs, each on an http client whose transport binds the caller's address."""
    with anthropic.Anthropic(base_url=ts_gw.url, api_key="placeholder", max_retries=0,
                             http_client=httpx2.Client(transport=httpx2.HTTPTransport(
                                 local_address=ALICE))) as claude:
        msg = claude.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                                     messages=[{"role": "user", "content": "hello from alice"}])
        assert msg.content[0].text
        assert simulator.sim.seen[-1].headers["x-api-key"] == ANT_KEY
        upstream = Upstream(simulator)
        with pytest.raises(anthropic.PermissionDeniedError) as exc:
            claude.messages.create(model="claude-opus-4-7", max_tokens=16,
                                   messages=[{"role": "user", "content": "x"}])
        assert exc.value.body["error"] == {
            "type": "permission_error",
            "message": "access denied: model anthropic/claude-opus-4-7 not granted"}
        assert upstream.unchanged()

    with openai.OpenAI(base_url=ts_gw.url + "/v1", api_key="placeholder", max_retries=0,
                       http_client=httpx2.Client(transport=httpx2.HTTPTransport(
                           local_address=CI))) as gpt:
        assert [m.id for m in gpt.models.list()] == ["claude-haiku-4-5", "gpt-5.4"]
        out = gpt.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "ci"}])
        assert out.choices[0].message.content
        upstream = Upstream(simulator)
        with pytest.raises(openai.PermissionDeniedError) as exc2:
            gpt.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "x"}])
        assert exc2.value.body["message"] == "access denied: model openai/gpt-5.4-mini not granted"
        assert upstream.unchanged()


# --- 3. identity headers -------------------------------------------------------------------

SPOOF = [("Tailscale-User-Login", "bob@example.com"), ("Tailscale-User-Name", "Bob Builder"),
         ("Tailscale-User-Profile-Pic", "https://example.com/bob.png"),
         ("Tailscale-Headers-Info", "https://tailscale.com/s/serve-headers"),
         ("Tailscale-App-Capabilities", json.dumps({CAP: [{"role": "admin"}]}))]


def no_identity_headers(seen) -> bool:
    return not [name for name in seen.headers if name.lower().startswith("tailscale-")]


def test_spoofed_identity_headers_change_nothing_in_tailscale_mode(ts_gw, simulator):
    reply = call(ts_gw.port, "GET", "/api/whoami", source=ALICE, headers=SPOOF)
    assert reply.json() == {**WHOAMI[ALICE], "models": WHOAMI_MODELS["grants"][ALICE]}
    # bob may use gpt-5.4, alice may not: the headers do not make alice bob.
    upstream = Upstream(simulator)
    reply, _ = ask(ts_gw.port, ALICE, "openai/gpt-5.4", headers=SPOOF)
    assert_error(reply, 403, "openai", "access denied: model openai/gpt-5.4 not granted")
    assert upstream.unchanged()
    # An allowed request goes through, without the headers.
    reply, marker = ask(ts_gw.port, ALICE, "anthropic/claude-sonnet-4-6", headers=SPOOF)
    assert reply.status == 200, reply.body
    [seen] = upstream.with_marker(marker)
    assert no_identity_headers(seen), seen.headers
    # A peer off the tailnet stays off it.
    assert_error(call(ts_gw.port, "GET", "/api/whoami", source=UNKNOWN, headers=SPOOF),
                 403, "openai", "not a tailnet peer")


def test_spoofed_identity_headers_change_nothing_in_dev_mode(gateway_factory, simulator):
    gw = gateway_factory(gateway_config(simulator.url), identity="dev:alice@example.com", capture=False)
    reply = call(gw.port, "GET", "/api/whoami", headers=SPOOF)
    assert reply.status == 200
    who = reply.json()
    assert (who["login"], who["source"], who["role"]) == ("alice@example.com", "dev", "user")
    assert "not for production" in gw.log()
    upstream = Upstream(simulator)
    reply, _ = ask(gw.port, "127.0.0.1", "openai/gpt-5.4", headers=SPOOF)
    assert_error(reply, 403, "openai", "access denied: model openai/gpt-5.4 not granted")
    reply, marker = ask(gw.port, "127.0.0.1", "openai/gpt-5.4-mini", headers=SPOOF)
    assert reply.status == 200, reply.body
    [seen] = upstream.with_marker(marker)
    assert no_identity_headers(seen), seen.headers


@pytest.fixture(scope="module")
def headers_gw(tmp_path_factory, simulator):
    with running_gateway(tmp_path_factory, gateway_config(simulator.url), identity="serve-headers") as gw:
        yield gw


def test_serve_headers_are_trusted_from_loopback(headers_gw, simulator):
    reply = call(headers_gw.port, "GET", "/api/whoami",
                 headers=[("Tailscale-User-Login", "bob@example.com"), ("Tailscale-User-Name", "Bob B")])
    assert reply.status == 200
    assert reply.json() == {"login": "bob@example.com", "display_name": "Bob B",
                            "node": {"name": "", "id": ""}, "tags": [], "groups": [],
                            "role": "admin", "models": ["anthropic/claude-haiku-4-5", "openai/**"],
                            "tailnet_grants": [], "source": "serve-headers"}
    upstream = Upstream(simulator)
    login = [("Tailscale-User-Login", "alice@example.com"), ("Tailscale-User-Name", "Alice"),
             ("Tailscale-User-Profile-Pic", "https://example.com/a.png")]
    reply, marker = ask(headers_gw.port, "127.0.0.1", "openai/gpt-5.4-mini", headers=login)
    assert reply.status == 200, reply.body
    [seen] = upstream.with_marker(marker)
    assert no_identity_headers(seen), seen.headers
    reply, marker = ask(headers_gw.port, "127.0.0.1", "openai/gpt-5.4", headers=login)
    assert_error(reply, 403, "openai", "access denied: model openai/gpt-5.4 not granted")
    assert not upstream.with_marker(marker)


def test_serve_headers_rfc2047_display_name(headers_gw):
    reply = call(headers_gw.port, "GET", "/api/whoami",
                 headers=[("Tailscale-User-Login", "rene@example.com"),
                          ("Tailscale-User-Name", "=?utf-8?q?Ren=C3=A9_Dupont-Bj=C3=B6rk?=")])
    assert reply.status == 200, reply.body
    who = reply.json()
    assert (who["login"], who["display_name"]) == ("rene@example.com", "René Dupont-Björk")
    assert who["role"] is None  # matched only by the role-less "*" grant


def test_serve_headers_identity_is_per_request(headers_gw):
    client = Client(headers_gw.port)
    try:
        for login in ("alice@example.com", "bob@example.com", "alice@example.com"):
            reply = client.request("GET", "/api/whoami", headers=[("Tailscale-User-Login", login)])
            assert reply.json()["login"] == login
        assert_error(client.request("GET", "/api/whoami"), 403, "openai", "no identity headers",
                     exact=False)
        # Two different logins, or a Funnel request: serve never sends those for a tailnet user.
        two = [("Tailscale-User-Login", "alice@example.com"), ("Tailscale-User-Login", "bob@example.com")]
        assert_error(client.request("GET", "/api/whoami", headers=two), 403, "openai",
                     "conflicting Tailscale-User-Login headers")
        funnel = [("Tailscale-User-Login", "bob@example.com"), ("Tailscale-Funnel-Request", "?1")]
        assert client.request("GET", "/api/whoami", headers=funnel).status == 403
    finally:
        client.close()


def test_serve_headers_missing_is_refused_in_callers_format(headers_gw, simulator):
    upstream = Upstream(simulator)
    reply, marker = ask(headers_gw.port, "127.0.0.1", "anthropic/claude-haiku-4-5")
    assert_error(reply, 403, "anthropic", "no identity headers", exact=False)
    assert upstream.unchanged() and not upstream.with_marker(marker)


def non_loopback_address() -> str | None:
    """An IPv4 address of this host that is not loopback, if there is one."""
    with contextlib.suppress(OSError):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.123", 9))  # no packet is sent; picks the outgoing address
            addr = s.getsockname()[0]
            if not addr.startswith("127."):
                return addr
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            if not info[4][0].startswith("127."):
                return info[4][0]
    return None


def test_serve_headers_ignored_from_non_loopback_peer(tmp_path, simulator, monkeypatch):
    addr = non_loopback_address()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    port = conftest.free_port()
    monkeypatch.setattr(conftest, "free_port", lambda: port)  # launch_gateway waits on this port
    gw = launch_gateway(tmp_path, gateway_config(simulator.url), "--listen", f"0.0.0.0:{port}",
                        identity="serve-headers", capture=False)
    try:
        login = [("Tailscale-User-Login", "bob@example.com")]
        assert call(port, "GET", "/api/whoami", headers=login).json()["login"] == "bob@example.com"
        reply = call(port, "GET", "/api/whoami", source=addr, host=addr, headers=login)
        assert_error(reply, 403, "openai", "only trusted from loopback", exact=False)
        upstream = Upstream(simulator)
        path, body = model_request("gpt-5.4", uuid.uuid4().hex, "openai")
        reply = call(port, "POST", path, body, source=addr, host=addr, headers=login)
        assert_error(reply, 403, "openai", "only trusted from loopback", exact=False)
        assert upstream.unchanged()
    finally:
        gw.stop()
