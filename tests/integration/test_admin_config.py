"""Admin configuration through a running gateway: GET/PUT /api/config, reloads
of the file on disk, and provider keys kept out of every answer and log line.

Identities come from `--identity serve-headers` (the test is on loopback, so
`Tailscale-User-Login` is believed): alice and bob are admins, everyone else
is a user. The provider simulator runs in this process, so a test sees which
key reached the upstream.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import wait_for

CAP = "tailscale.com/cap/aperture"
ANT_KEY = "sk-ant-api03-admin-suite-0123456789abcdefABCDEF"
OAI_KEY = "sk-proj-admin-suite-fedcba9876543210ZYXWVU"
NEW_KEY = "sk-ant-api03-brand-new-key-5555666677778888"
KEYS = (ANT_KEY, OAI_KEY, NEW_KEY)
MASK = "********"
ADMINS = ["alice@example.com", "bob@example.com"]


def grant(src: list[str], *caps: dict) -> dict:
    return {"src": src, "app": {CAP: list(caps)}}


def admin_config(sim_url: str) -> dict:
    return {
        "providers": {
            "anthropic": {"baseurl": sim_url, "apikey": ANT_KEY, "authorization": "x-api-key",
                          "models": ["claude-sonnet-4-6", "claude-haiku-4-5"],
                          "compatibility": {"anthropic_messages": True}},
            # the object form of the seed documents: the key sits in authorization.value
            "openai": {"baseurl": sim_url, "authorization": {"type": "bearer", "value": OAI_KEY},
                       "models": ["gpt-5.4", "gpt-5.4-mini"], "compatibility": {"openai_chat": True}},
        },
        "grants": [
            grant(list(ADMINS), {"role": "admin"}),
            grant(["*"], {"role": "user"}, {"models": "**"}),
        ],
    }


# --- client helpers ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return self.json()["error"]["message"]


def call(port: int, method: str, path: str, body=None, *, login: str | None = "alice@example.com",
         headers: list[tuple[str, str]] = ()) -> Reply:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if login is not None:
            conn.putheader("Tailscale-User-Login", login)
        for name, value in headers:
            conn.putheader(name, value)
        if data is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read())
    finally:
        conn.close()


def get_config(gw, login: str = "alice@example.com") -> dict:
    reply = call(gw.port, "GET", "/api/config", login=login)
    assert reply.status == 200, reply.body
    return reply.json()


def put_config(gw, text: str, hash_: str, login: str = "alice@example.com") -> Reply:
    return call(gw.port, "PUT", "/api/config", {"config": text, "hash": hash_}, login=login)


def chat(gw, model: str, login: str = "carol@example.com") -> tuple[Reply, str]:
    """One small request for `model` in the format of its provider; (reply, marker)."""
    marker = uuid.uuid4().hex
    if model.startswith("claude"):
        body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": marker}]}
        return call(gw.port, "POST", "/v1/messages", body, login=login,
                    headers=[("anthropic-version", "2023-06-01")]), marker
    body = {"model": model, "messages": [{"role": "user", "content": marker}]}
    return call(gw.port, "POST", "/v1/chat/completions", body, login=login), marker


def seen_with(simulator, marker: str):
    found = [s for s in list(simulator.sim.seen) if marker.encode() in s.body]
    assert len(found) == 1, "expected one upstream request carrying the marker"
    return found[0]


def model_works(gw, model: str) -> bool:
    return chat(gw, model)[0].status == 200


def replace_file(path: Path, text: str) -> None:
    """Replace a file the way an editor does (new inode, rename into place)."""
    tmp = path.with_name(path.name + ".edit")
    tmp.write_text(text)
    os.replace(tmp, path)


def assert_no_keys(text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for key in KEYS:
        assert key not in text
        assert key[:20] not in text  # not even a recognisable piece of it


def with_model(masked_text: str, provider: str, model: str) -> str:
    doc = json.loads(masked_text)
    doc["providers"][provider]["models"].append(model)
    return json.dumps(doc, indent=2)


@pytest.fixture
def admin_gw(gateway_factory, simulator):
    return gateway_factory(admin_config(simulator.url), identity="serve-headers", capture=False)


# --- GET -------------------------------------------------------------------------------------


def test_get_config_as_admin_masks_keys(admin_gw):
    file_text = admin_gw.config_path.read_text()
    reply = call(admin_gw.port, "GET", "/api/config")
    assert reply.status == 200, reply.body
    assert_no_keys(reply.body)
    doc = reply.json()
    assert set(doc) >= {"config", "hash"}
    assert isinstance(doc["hash"], str) and doc["hash"]
    assert doc.get("exists", True) is True
    shown = json.loads(doc["config"])
    assert shown["providers"]["anthropic"]["apikey"] == MASK
    assert shown["providers"]["openai"]["authorization"] == {"type": "bearer", "value": MASK}
    # Everything but the keys is the file as written.
    original = json.loads(file_text)
    original["providers"]["anthropic"]["apikey"] = MASK
    original["providers"]["openai"]["authorization"]["value"] = MASK
    assert shown == original
    assert get_config(admin_gw, "bob@example.com")["hash"] == doc["hash"]


def hujson_config(sim_url: str) -> str:
    """The admin config as a person writes it: comments, trailing commas, an old key in a comment."""
    doc = admin_config(sim_url)
    return """{
  // Providers. The previous key was %(old)s (rotated).
  "providers": {
    "anthropic": {
      "baseurl": %(url)s,
      "apikey": %(ant)s, // from the console
      "authorization": "x-api-key",
      "models": ["claude-sonnet-4-6", "claude-haiku-4-5",],
      "compatibility": {"anthropic_messages": true},
    },
    "openai": {
      "baseurl": %(url)s,
      /* object form */ "authorization": {"type": "bearer", "value": %(oai)s},
      "models": ["gpt-5.4", "gpt-5.4-mini"],
    },
  },
  "grants": %(grants)s,
}
""" % {"old": OAI_KEY, "url": json.dumps(sim_url), "ant": json.dumps(ANT_KEY),
       "oai": json.dumps(OAI_KEY), "grants": json.dumps(doc["grants"])}


def test_get_and_put_keep_hujson_layout_and_mask_every_key(gateway_factory, simulator):
    gw = gateway_factory(hujson_config(simulator.url), identity="serve-headers", capture=False)
    reply = call(gw.port, "GET", "/api/config")
    assert reply.status == 200, reply.body
    assert_no_keys(reply.body)
    got = reply.json()
    text = got["config"]
    assert "// from the console" in text and "/* object form */" in text
    assert '"apikey": "********", // from the console' in text
    assert "The previous key was ********" in text  # a key in a comment is a key too
    # Saved back with one model more: layout kept, masks back to the keys they stand for.
    edited = text.replace('"gpt-5.4-mini"]', '"gpt-5.4-mini", "gpt-6"]')
    assert edited != text
    reply = put_config(gw, edited, got["hash"])
    assert reply.status == 200, reply.body
    assert_no_keys(reply.body)
    on_disk = gw.config_path.read_text()
    assert '"apikey": %s, // from the console' % json.dumps(ANT_KEY) in on_disk
    assert '"value": %s}' % json.dumps(OAI_KEY) in on_disk
    reply, marker = chat(gw, "gpt-6")
    assert reply.status == 200, reply.body
    assert seen_with(simulator, marker).headers["authorization"] == "Bearer " + OAI_KEY
    assert_no_keys(gw.log())


@pytest.mark.parametrize("login", ["carol@example.com", None], ids=["user", "no-identity"])
def test_config_endpoints_refuse_non_admins(admin_gw, login):
    file_text = admin_gw.config_path.read_text()
    good = get_config(admin_gw)
    reply = call(admin_gw.port, "GET", "/api/config", login=login)
    assert reply.status == 403
    assert_no_keys(reply.body)
    assert "providers" not in reply.body.decode()
    assert reply.json()["error"]["type"] == "permission_error"
    if login is not None:
        assert reply.message == "access denied: admin role required"
    # A PUT with the right hash changes nothing either.
    reply = put_config(admin_gw, with_model(good["config"], "openai", "gpt-6"), good["hash"], login=login)
    assert reply.status == 403
    assert_no_keys(reply.body)
    assert admin_gw.config_path.read_text() == file_text
    assert not Path(str(admin_gw.config_path) + ".prev").exists()
    assert get_config(admin_gw)["hash"] == good["hash"]


# --- PUT ------------------------------------------------------------------------------------


def test_put_replaces_config_file_and_applies_at_once(admin_gw, simulator):
    path = admin_gw.config_path
    before_text = path.read_text()
    assert chat(admin_gw, "claude-opus-4-7")[0].status == 404  # not configured yet

    got = get_config(admin_gw)
    reply = put_config(admin_gw, with_model(got["config"], "anthropic", "claude-opus-4-7"), got["hash"])
    assert reply.status == 200, reply.body
    assert_no_keys(reply.body)
    new = reply.json()
    assert new["hash"] != got["hash"]
    assert json.loads(new["config"])["providers"]["anthropic"]["models"][-1] == "claude-opus-4-7"

    # The file on disk: replaced, with the real keys where the masks were; the old one beside it.
    on_disk = json.loads(path.read_text())
    assert on_disk["providers"]["anthropic"]["models"][-1] == "claude-opus-4-7"
    assert on_disk["providers"]["anthropic"]["apikey"] == ANT_KEY
    assert on_disk["providers"]["openai"]["authorization"]["value"] == OAI_KEY
    assert Path(str(path) + ".prev").read_text() == before_text
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith("." + path.name)]

    # The next request already runs on the new configuration, with the kept keys.
    reply, marker = chat(admin_gw, "claude-opus-4-7")
    assert reply.status == 200, reply.body
    assert seen_with(simulator, marker).headers["x-api-key"] == ANT_KEY
    reply, marker = chat(admin_gw, "gpt-5.4")
    assert reply.status == 200, reply.body
    assert seen_with(simulator, marker).headers["authorization"] == "Bearer " + OAI_KEY
    assert get_config(admin_gw)["hash"] == new["hash"]
    assert_no_keys(admin_gw.log())


def test_put_with_a_new_key_uses_it(admin_gw, simulator):
    got = get_config(admin_gw)
    doc = json.loads(got["config"])
    doc["providers"]["anthropic"]["apikey"] = NEW_KEY
    reply = put_config(admin_gw, json.dumps(doc, indent=2), got["hash"])
    assert reply.status == 200, reply.body
    assert_no_keys(reply.body)
    reply, marker = chat(admin_gw, "claude-haiku-4-5")
    assert reply.status == 200
    assert seen_with(simulator, marker).headers["x-api-key"] == NEW_KEY
    assert_no_keys(admin_gw.log())


def check_config_lines(tmp_path: Path, text: str) -> list[str]:
    """The problem lines `aperture check-config` prints for `text`."""
    path = tmp_path / "candidate.json"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "aperture", "check-config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    return [line for line in out.stderr.splitlines() if line.strip()]


def invalid_text(masked_text: str, *, grants: bool) -> str:
    """An invalid variant of the config: provider problems, plus grant problems if `grants`."""
    doc = json.loads(masked_text)
    doc["providers"]["anthropic"]["authorization"] = "basic"
    doc["providers"]["openai"]["models"] = []
    doc["providers"]["anthropic"]["apikey"] = NEW_KEY  # a new key in an invalid config
    if grants:
        doc["grants"].append({"src": "alice@example.com", "app": {CAP: [{"role": "owner"}]}})
    return json.dumps(doc, indent=2)


def test_put_invalid_config_is_400_with_problem_lines(admin_gw):
    path = admin_gw.config_path
    before_text = path.read_text()
    got = get_config(admin_gw)
    reply = put_config(admin_gw, invalid_text(got["config"], grants=True), got["hash"])
    assert reply.status == 400, reply.body
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert_no_keys(reply.body)
    assert reply.message.splitlines() == [
        "providers.anthropic.authorization: must be one of bearer, x-api-key, x-goog-api-key",
        "providers.openai.models: must list at least one model",
        "grants[2].src: must be a list of sources, not a string",
        'grants[2].app["tailscale.com/cap/aperture"][0].role: must be "admin" or "user" (got a string)',
    ]
    # Nothing changed.
    assert path.read_text() == before_text
    assert not Path(str(path) + ".prev").exists()
    assert get_config(admin_gw)["hash"] == got["hash"]
    assert_no_keys(admin_gw.log())


@pytest.mark.parametrize("grants", [False, True], ids=["provider-problems", "provider-and-grant-problems"])
def test_put_problems_are_those_of_check_config(admin_gw, tmp_path, grants):
    """The 400 of a PUT lists exactly what `aperture check-config` prints for the same text."""
    got = get_config(admin_gw)
    text = invalid_text(got["config"], grants=grants)
    reply = put_config(admin_gw, text, got["hash"])
    assert reply.status == 400, reply.body
    assert reply.message.splitlines() == check_config_lines(tmp_path, text)


@pytest.mark.parametrize("case", ["syntax", "not-json-body", "no-hash", "mask-without-key"])
def test_put_malformed_is_400_and_changes_nothing(admin_gw, simulator, case):
    path = admin_gw.config_path
    before_text = path.read_text()
    got = get_config(admin_gw)
    if case == "syntax":
        reply = put_config(admin_gw, got["config"][:-5], got["hash"])
    elif case == "not-json-body":
        reply = call(admin_gw.port, "PUT", "/api/config", b"{config: nope")
    elif case == "no-hash":
        reply = call(admin_gw.port, "PUT", "/api/config", {"config": got["config"]})
    else:  # a new provider whose key is the mask: there is no key it could stand for
        doc = json.loads(got["config"])
        doc["providers"]["extra"] = {"baseurl": simulator.url, "apikey": MASK, "models": ["m-1"]}
        reply = put_config(admin_gw, json.dumps(doc), got["hash"])
    assert reply.status == 400, reply.body
    assert reply.message
    if case == "mask-without-key":
        assert reply.message.startswith("providers.extra")
    assert_no_keys(reply.body)
    assert path.read_text() == before_text
    assert get_config(admin_gw)["hash"] == got["hash"]


def test_put_with_stale_hash_is_409(admin_gw):
    path = admin_gw.config_path
    got = get_config(admin_gw)
    reply = put_config(admin_gw, with_model(got["config"], "openai", "gpt-6"), "0" * 64)
    assert reply.status == 409, reply.body
    assert "hash" in reply.message
    first = put_config(admin_gw, with_model(got["config"], "openai", "gpt-6"), got["hash"])
    assert first.status == 200
    after_first = path.read_text()
    # The hash read before that change is stale now.
    reply = put_config(admin_gw, with_model(got["config"], "openai", "gpt-7"), got["hash"],
                       login="bob@example.com")
    assert reply.status == 409, reply.body
    assert_no_keys(reply.body)
    assert path.read_text() == after_first
    assert model_works(admin_gw, "gpt-6") and chat(admin_gw, "gpt-7")[0].status == 404


def test_two_admins_racing_with_one_hash(admin_gw):
    path = admin_gw.config_path
    for round_ in range(3):
        got = get_config(admin_gw)
        texts = {login: with_model(got["config"], "openai", f"race-{round_}-{login[0]}") for login in ADMINS}
        barrier = threading.Barrier(len(ADMINS))
        results: dict[str, Reply] = {}

        def save(login: str) -> None:
            barrier.wait(5)
            results[login] = put_config(admin_gw, texts[login], got["hash"], login=login)

        threads = [threading.Thread(target=save, args=(login,)) for login in ADMINS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r.status for r in results.values())
        assert statuses == [200, 409], {k: (r.status, r.body) for k, r in results.items()}
        [winner] = [login for login, r in results.items() if r.status == 200]
        [loser] = [login for login in ADMINS if login != winner]
        models = json.loads(path.read_text())["providers"]["openai"]["models"]
        assert f"race-{round_}-{winner[0]}" in models and f"race-{round_}-{loser[0]}" not in models
        assert get_config(admin_gw)["hash"] == results[winner].json()["hash"]
        assert model_works(admin_gw, f"race-{round_}-{winner[0]}")


def test_lockout_protection(admin_gw):
    path = admin_gw.config_path
    before_text = path.read_text()
    got = get_config(admin_gw)
    doc = json.loads(got["config"])
    doc["grants"][0]["src"] = ["bob@example.com"]  # alice would lose admin by her own save
    text = json.dumps(doc, indent=2)
    reply = put_config(admin_gw, text, got["hash"])
    assert reply.status == 403, reply.body
    assert reply.json()["error"]["type"] == "permission_error"
    assert "admin" in reply.message and "alice@example.com" in reply.message
    assert path.read_text() == before_text
    assert not Path(str(path) + ".prev").exists()
    assert get_config(admin_gw)["hash"] == got["hash"]

    # Grants only add: a user grant for alice does not protect her admin either.
    doc["grants"].append(grant(["alice@example.com"], {"role": "user"}))
    assert put_config(admin_gw, json.dumps(doc), got["hash"]).status == 403

    # The same text saved by bob keeps bob admin: that is allowed, and alice is out.
    reply = put_config(admin_gw, text, got["hash"], login="bob@example.com")
    assert reply.status == 200, reply.body
    assert call(admin_gw.port, "GET", "/api/config").status == 403
    assert get_config(admin_gw, "bob@example.com")["hash"] == reply.json()["hash"]


def test_put_on_embedded_config_is_refused(gateway_factory):
    gw = gateway_factory(None, identity="dev:admin@example.com", capture=False)
    got = get_config(gw, login=None)
    reply = put_config(gw, got["config"], got["hash"], login=None)
    assert reply.status == 400
    assert "embedded" in reply.message


# --- the file on disk ---------------------------------------------------------------------


def test_edit_of_file_on_disk_reloads(admin_gw):
    path = admin_gw.config_path
    old_hash = get_config(admin_gw)["hash"]
    doc = json.loads(path.read_text())
    doc["providers"]["openai"]["models"].append("gpt-edited")
    replace_file(path, json.dumps(doc, indent=2))
    wait_for(lambda: model_works(admin_gw, "gpt-edited"))
    assert get_config(admin_gw)["hash"] != old_hash
    assert "reloaded" in admin_gw.log()
    assert_no_keys(admin_gw.log())


def test_sighup_reloads(admin_gw):
    """An edit the file watch cannot see (same inode, size and mtime) is picked up on SIGHUP."""
    path = admin_gw.config_path
    st = os.stat(path)
    text = path.read_text()
    assert '"gpt-5.4-mini"' in text
    edited = text.replace('"gpt-5.4-mini"', '"gpt-5.4-nano"')
    assert len(edited) == len(text)
    with open(path, "r+") as f:  # in place: the inode stays
        f.write(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = os.stat(path)
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    admin_gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: model_works(admin_gw, "gpt-5.4-nano"))
    assert chat(admin_gw, "gpt-5.4-mini")[0].status == 404
    assert admin_gw.proc.poll() is None


def test_broken_file_on_disk_keeps_running_config(admin_gw, simulator):
    path = admin_gw.config_path
    good_text = path.read_text()
    good_hash = get_config(admin_gw)["hash"]

    def log_count(needle: str) -> int:
        return admin_gw.log().count(needle)

    keeping = "keeping the running configuration"
    # 1. Not even HuJSON.
    replace_file(path, good_text[: len(good_text) // 2])
    wait_for(lambda: log_count(keeping) >= 1)
    reply, marker = chat(admin_gw, "claude-sonnet-4-6")
    assert reply.status == 200
    assert seen_with(simulator, marker).headers["x-api-key"] == ANT_KEY
    assert get_config(admin_gw)["hash"] == good_hash

    # 2. Valid JSON with problems, a key pasted in the wrong place among them.
    doc = json.loads(good_text)
    doc["providers"]["anthropic"]["authorization"] = NEW_KEY
    doc["providers"]["openai"]["baseurl"] = "ftp://" + OAI_KEY
    replace_file(path, json.dumps(doc, indent=2))
    wait_for(lambda: log_count(keeping) >= 2)
    log = admin_gw.log()
    assert "providers.anthropic.authorization" in log and "providers.openai.baseurl" in log
    assert str(path) in log
    assert model_works(admin_gw, "gpt-5.4")
    assert get_config(admin_gw)["hash"] == good_hash

    # 3. Repaired (with a change): reloaded.
    doc = json.loads(good_text)
    doc["providers"]["openai"]["models"].append("gpt-repaired")
    replace_file(path, json.dumps(doc, indent=2))
    wait_for(lambda: model_works(admin_gw, "gpt-repaired"))
    assert admin_gw.proc.poll() is None
    assert_no_keys(admin_gw.log())


def test_provider_keys_never_logged(gateway_factory, simulator, tmp_path):
    """Every path that handles keys, at debug level: none of them writes a key to the log."""
    gw = gateway_factory(admin_config(simulator.url), "--log-level", "debug",
                         identity="serve-headers", capture=False)
    got = get_config(gw)
    put = put_config(gw, with_model(got["config"], "anthropic", "claude-opus-4-7"), got["hash"])
    assert put.status == 200
    doc = json.loads(put.json()["config"])
    doc["providers"]["anthropic"]["apikey"] = NEW_KEY
    doc["providers"]["openai"]["models"] = NEW_KEY  # invalid, and a key in the wrong place
    assert put_config(gw, json.dumps(doc), put.json()["hash"]).status == 400
    assert put_config(gw, json.dumps(doc), "stale").status == 409
    doc["grants"] = [grant(["bob@example.com"], {"role": "admin"})]
    doc["providers"]["openai"]["models"] = ["gpt-5.4"]
    assert put_config(gw, json.dumps(doc), put.json()["hash"]).status == 403  # lockout
    for model in ("claude-opus-4-7", "gpt-5.4", "claude-nope"):
        chat(gw, model)
    chat(gw, "claude-haiku-4-5", login=None)  # refused: no identity
    broken = json.loads(gw.config_path.read_text())
    broken["providers"]["anthropic"]["authorization"] = {"type": ANT_KEY, "value": NEW_KEY}
    replace_file(gw.config_path, json.dumps(broken))
    wait_for(lambda: "keeping the running configuration" in gw.log())
    assert model_works(gw, "claude-opus-4-7")
    gw.stop()
    log = gw.log()
    assert "config: replaced by alice@example.com" in log
    assert_no_keys(log)
