"""Identity on a real tailnet: headscale, three tailscaled nodes and `aperture serve --identity tailscale`.

The tailnet (tests/tailnet/tailnet.py) comes up once for this module, in a
private network namespace when the machine permits one: headscale with a
policy file, a gateway node tagged `tag:aperture`, Alice's laptop (a user's
node) and a CI runner (tagged `tag:ci`). The provider simulator and aperture run
on the gateway node; aperture listens with `--listen tailnet` and asks the
gateway's tailscaled who each connection is. Every request goes from a client
node through its tailscaled's SOCKS5 proxy, over WireGuard via the embedded
DERP, to the gateway's tailnet address.

The policy file grants Alice, on the gateway, a model that the aperture
config does not (under `example.com/cap/aperture`: headscale refuses
capability names in the tailscale.com domain, so aperture runs with
`--grants-capability example.com/cap/aperture`).

The first run builds tailscaled, tailscale and headscale (tests/tailnet/binaries.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aperture.capture.query import CaptureReader, Filter
from tests.tailnet.binaries import ensure_binaries
from tests.tailnet.netns import open_network
from tests.tailnet.tailnet import Client, Tailnet, TailnetError

pytestmark = [pytest.mark.tailnet, pytest.mark.timeout(1800)]

CAP = "example.com/cap/aperture"
KERNEL = "aperture-kernel"
KERNEL_PORT = 8080
ALICE = "alice@example.com"
ANTHROPIC_HEADERS = [("anthropic-version", "2023-06-01"), ("x-api-key", "client-key")]

POLICY = {
    "tagOwners": {"tag:aperture": [ALICE], "tag:ci": [ALICE]},
    "grants": [
        # The network: every node may reach every other.
        {"src": ["*"], "dst": ["*"], "ip": ["*"]},
        # Aperture on the gateway: Alice may use a model the config does not grant her.
        {"src": [ALICE], "dst": ["tag:aperture"],
         "app": {CAP: [{"role": "user"}, {"models": "openai/gpt-5.4-mini"}]}},
    ],
}


def aperture_config(sim_url: str) -> dict:
    return {
        "providers": {
            "anthropic": {"baseurl": sim_url, "apikey": "sk-ant-provider",
                          "authorization": "x-api-key",
                          "models": ["claude-sonnet-4-6", "claude-haiku-4-5"],
                          "compatibility": {"anthropic_messages": True}},
            "openai": {"baseurl": sim_url, "apikey": "sk-openai-provider",
                       "models": ["gpt-5.4", "gpt-5.4-mini"],
                       "compatibility": {"openai_chat": True}},
        },
        "grants": [
            {"src": [ALICE], "app": {"tailscale.com/cap/aperture": [
                {"role": "user"}, {"models": "anthropic/claude-haiku-4-5"}]}},
            {"src": ["tag:ci"], "app": {"tailscale.com/cap/aperture": [
                {"role": "user"}, {"models": "anthropic/**"}, {"read_metrics": True}]}},
        ],
    }


class Setup:
    """The running tailnet and aperture on its gateway node."""

    def __init__(self, net: Tailnet, where: str, port: int, data_dir: Path) -> None:
        self.net = net
        self.where = where
        self.port = port
        self.data_dir = data_dir
        self.gateway = net.nodes["aperture"]
        self.alice = net.nodes["alice-laptop"]
        self.ci = net.nodes["ci-runner"]
        self.kernel = None  # the gateway with kernel networking, when the machine allows one

    def via(self, node) -> Client:
        return self.net.via(node, self.gateway.ipv4, self.port)

    def local(self) -> Client:
        return self.net.local(self.port)


def _wait_log(net: Tailnet, name: str, text: str, proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in net.log(name):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TailnetError("%s: %r not in its log (exit %s):\n%s"
                               % (name, text, proc.poll(), net.log(name)[-4000:]))
        time.sleep(0.05)


def healthy(setup: Setup, node, gateway=None, port: int | None = None) -> bool:
    with setup.net.via(node, (gateway or setup.gateway).ipv4, port or setup.port) as c:
        return c.request("GET", "/healthz").status == 200


@pytest.fixture(scope="module")
def tailnet(request):
    failed_before = request.session.testsfailed
    binaries = ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="tn-", dir="/tmp"))  # unix socket paths stay short
    network, where = open_network(workdir)
    net = Tailnet(network, workdir, binaries, POLICY)
    try:
        started = time.monotonic()
        net.start_headscale()
        uid = net.create_user("alice", ALICE, "Alice Example")
        keys = {"aperture": net.preauth_key(tags=["tag:aperture"]),
                "alice-laptop": net.preauth_key(user=uid),
                "ci-runner": net.preauth_key(tags=["tag:ci"])}
        nodes = [net.start_node(name) for name in keys]
        # A second gateway with kernel networking (a TUN device): only as root
        # in a namespace of our own, where its routes touch nothing else.
        kernel = network.isolated and os.geteuid() == 0 and os.path.exists("/dev/net/tun")
        if kernel:
            keys[KERNEL] = net.preauth_key(tags=["tag:aperture"])
            nodes.append(net.start_node(KERNEL, tun="ts-kernel"))
        net.join(keys)
        for node in nodes:
            net.wait_running(node, peers=len(nodes) - 1)

        sim_port = net.net.port()
        sim = net.spawn("simulator", [sys.executable, "-m", "aperture", "simulate",
                                      "--listen", "127.0.0.1:%d" % sim_port])
        net._wait(lambda: net._port_open(sim_port), "the simulator", sim, "simulator")
        config = workdir / "aperture.json"
        config.write_text(json.dumps(aperture_config("http://127.0.0.1:%d" % sim_port)))
        # In the namespace aperture takes the default port, 80; on the shared
        # loopback a free one.
        port = 80 if network.isolated else net.net.port()
        listen = "tailnet" if port == 80 else "tailnet:%d" % port
        data_dir = workdir / "data"
        gw = net.spawn("aperture", [
            sys.executable, "-m", "aperture", "serve", "--listen", listen,
            "--identity", "tailscale", "--tailscaled-socket", net.nodes["aperture"].socket,
            "--grants-capability", CAP, "--config", config, "--data-dir", data_dir,
            "--log-level", "info"], cwd=Path(__file__).resolve().parents[2])
        _wait_log(net, "aperture", "listening on http://127.0.0.1:%d" % port, gw)
        setup = Setup(net, where, port, data_dir)
        if kernel:
            node = net.nodes[KERNEL]
            kgw = net.spawn(KERNEL, [
                sys.executable, "-m", "aperture", "serve", "--listen", "tailnet:%d" % KERNEL_PORT,
                "--identity", "tailscale", "--tailscaled-socket", node.socket,
                "--grants-capability", CAP, "--config", config, "--no-capture",
                "--log-level", "info"], cwd=Path(__file__).resolve().parents[2])
            _wait_log(net, KERNEL, "listening on http://[%s]:%d" % (node.ipv6, KERNEL_PORT), kgw)
            _wait_log(net, KERNEL, "listening on http://%s:%d" % (node.ipv4, KERNEL_PORT), kgw)
            setup.kernel = node
        # Up is not yet reachable: the first packets wait for the nodes' DERP
        # connections and WireGuard handshakes.
        for node in (setup.alice, setup.ci):
            net._wait(lambda node=node: healthy(setup, node), "%s to reach aperture over the "
                      "tailnet" % node.name, gw, "aperture")
        if kernel:
            net._wait(lambda: healthy(setup, setup.alice, setup.kernel, KERNEL_PORT),
                      "alice-laptop to reach the kernel gateway", kgw, KERNEL)
        setup.startup_seconds = time.monotonic() - started
        yield setup
    finally:
        net.close()
        # The logs of every process stay for a failed run, and the run says where.
        if request.session.testsfailed == failed_before and not net.leftovers():
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("tailnet logs kept in %s" % workdir)


# --- identity through each node --------------------------------------------------------


def test_whoami_of_a_users_node(tailnet):
    with tailnet.via(tailnet.alice) as c:
        reply = c.request("GET", "/api/whoami")
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "login": ALICE, "display_name": "Alice Example",
        "node": {"name": "alice-laptop", "id": tailnet.alice.stable_id},
        "tags": [], "groups": [], "role": "user",
        # The config's grant, then the one from the tailnet policy file.
        "models": ["anthropic/claude-haiku-4-5", "openai/gpt-5.4-mini"],
        "tailnet_grants": [{"role": "user"}, {"models": "openai/gpt-5.4-mini"}],
        "source": "tailscale"}


def test_the_gateways_ipv6_tailnet_address_answers_too(tailnet):
    with tailnet.net.via(tailnet.alice, tailnet.gateway.ipv6, tailnet.port) as c:
        reply = c.request("GET", "/api/whoami")
    assert reply.status == 200, reply.body
    assert reply.json()["login"] == ALICE and reply.json()["node"]["name"] == "alice-laptop"


def test_a_tagged_node_is_identified_by_its_tags(tailnet):
    with tailnet.via(tailnet.ci) as c:
        reply = c.request("GET", "/api/whoami")
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "login": "", "display_name": "tag:ci",
        "node": {"name": "ci-runner", "id": tailnet.ci.stable_id},
        "tags": ["tag:ci"], "groups": [], "role": "user", "models": ["anthropic/**"],
        "tailnet_grants": [], "source": "tailscale"}


def anthropic(model: str, marker: str) -> tuple[str, dict]:
    return "/v1/messages", {"model": model, "max_tokens": 16,
                            "messages": [{"role": "user", "content": marker}]}


def openai(model: str, marker: str) -> tuple[str, dict]:
    return "/v1/chat/completions", {"model": model,
                                    "messages": [{"role": "user", "content": marker}]}


def ask(client: Client, api: str, model: str, marker: str):
    path, body = (anthropic if api == "anthropic" else openai)(model, marker)
    headers = ANTHROPIC_HEADERS if api == "anthropic" else [("authorization", "Bearer client")]
    return client.request("POST", path, body, headers)


@pytest.mark.parametrize("node,api,model", [
    ("alice", "anthropic", "claude-haiku-4-5"),  # config grant
    ("alice", "openai", "gpt-5.4-mini"),  # tailnet policy file grant only
    ("ci", "anthropic", "claude-sonnet-4-6"),  # config grant to tag:ci
])
def test_a_granted_model_answers(tailnet, node, api, model):
    with tailnet.via(getattr(tailnet, node)) as c:
        reply = ask(c, api, model, "granted-%s-%s" % (node, model))
    assert reply.status == 200, reply.body
    doc = reply.json()
    if api == "anthropic":
        assert doc["type"] == "message" and doc["model"] == model
        assert doc["content"][0]["type"] == "text"
    else:
        assert doc["object"] == "chat.completion" and doc["model"] == model
        assert doc["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize("node,api,model", [
    ("alice", "anthropic", "claude-sonnet-4-6"),
    ("alice", "openai", "gpt-5.4"),
    ("ci", "openai", "gpt-5.4-mini"),  # granted to Alice by the policy file, not to tag:ci
])
def test_an_ungranted_model_is_refused_in_the_callers_format(tailnet, node, api, model):
    with tailnet.via(getattr(tailnet, node)) as c:
        reply = ask(c, api, model, "refused-%s-%s" % (node, model))
    assert reply.status == 403, reply.body
    doc = reply.json()
    message = "access denied: model %s/%s not granted" % (api, model)
    if api == "anthropic":
        assert doc["type"] == "error"
        assert doc["error"] == {"type": "permission_error", "message": message}
    else:
        assert doc == {"error": {"message": message, "type": "permission_error", "param": None,
                                 "code": None}}


@pytest.mark.parametrize("what", ["whoami", "anthropic", "openai"])
def test_a_local_connection_not_through_the_tailnet_is_refused(tailnet, what):
    with tailnet.local() as c:
        if what == "whoami":
            reply = c.request("GET", "/api/whoami")
        else:
            reply = ask(c, what, "claude-haiku-4-5" if what == "anthropic" else "gpt-5.4-mini",
                        "local-%s" % what)
    assert reply.status == 403, reply.body
    doc = reply.json()
    if what == "anthropic":
        assert doc.pop("request_id")
        assert doc == {"type": "error", "error": {"type": "permission_error",
                                                  "message": "not a tailnet peer"}}
    else:
        assert doc == {"error": {"message": "not a tailnet peer", "type": "permission_error",
                                 "param": None, "code": None}}


def records(data_dir: Path, **filt) -> list[dict]:
    with CaptureReader(str(data_dir)) as reader:
        return reader.records(Filter(**filt), limit=None)


def wait_records(data_dir: Path, predicate, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in records(data_dir) if predicate(r)]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_the_capture_records_the_tailnet_login_and_node(tailnet):
    with tailnet.via(tailnet.alice) as c:
        assert ask(c, "anthropic", "claude-haiku-4-5", "capture-alice").status == 200
        assert ask(c, "anthropic", "claude-sonnet-4-6", "capture-alice-refused").status == 403
    with tailnet.via(tailnet.ci) as c:
        assert ask(c, "anthropic", "claude-haiku-4-5", "capture-ci").status == 200
    alice = wait_records(tailnet.data_dir, lambda r: r["user"] == ALICE and r["status"] == 200)
    ci = wait_records(tailnet.data_dir, lambda r: r["user"] == "tag:ci" and r["status"] == 200)
    assert alice and ci
    assert {r["node"] for r in alice} == {"alice-laptop"}
    assert {r["node"] for r in ci} == {"ci-runner"}
    assert all(r["tags"] == ["tag:ci"] for r in ci) and all(r["tags"] == [] for r in alice)
    refused = wait_records(tailnet.data_dir, lambda r: r["status"] == 403 and r["user"] == ALICE)
    assert refused and all(r["node"] == "alice-laptop" for r in refused)


def lookups(client: Client) -> dict[str, float]:
    reply = client.request("GET", "/metrics")
    assert reply.status == 200, reply.body
    for family in text_string_to_metric_families(reply.body.decode()):
        if family.name == "aperture_identity_lookups":
            return {s.labels["result"]: s.value for s in family.samples
                    if s.name.endswith("_total")}
    raise AssertionError("no aperture_identity_lookups in /metrics")


def test_whois_is_asked_once_per_connection(tailnet):
    with tailnet.via(tailnet.ci) as metrics:
        before = lookups(metrics)
        with tailnet.via(tailnet.alice) as c:
            assert c.request("GET", "/api/whoami").json()["login"] == ALICE
            assert ask(c, "anthropic", "claude-haiku-4-5", "once-1").status == 200
            assert ask(c, "openai", "gpt-5.4", "once-2").status == 403
            assert c.request("GET", "/api/whoami").status == 200
        after_one = lookups(metrics)
        for i in range(2):
            with tailnet.via(tailnet.alice) as c:
                assert c.request("GET", "/api/whoami").status == 200
        after_three = lookups(metrics)
        with tailnet.local() as c:
            assert c.request("GET", "/api/whoami").status == 403
        after_local = lookups(metrics)
    assert after_one["found"] - before["found"] == 1  # four requests, one connection
    assert after_three["found"] - after_one["found"] == 2
    assert after_local["not_a_peer"] - after_three["not_a_peer"] == 1
    assert after_local["unavailable"] == before["unavailable"] == 0


# --- a gateway with kernel networking ----------------------------------------------------------


@pytest.fixture
def kernel(tailnet):
    if tailnet.kernel is None:
        pytest.skip("kernel networking needs root in a private network namespace and "
                    "/dev/net/tun (%s)" % tailnet.where)
    return tailnet.kernel


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_kernel_networking_listens_on_the_tailscale_addresses(tailnet, kernel, family):
    with tailnet.net.via(tailnet.alice, getattr(kernel, family), KERNEL_PORT) as c:
        reply = c.request("GET", "/api/whoami")
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert (doc["login"], doc["node"]["id"]) == (ALICE, tailnet.alice.stable_id)
    # The policy file's grant names tag:aperture, so this gateway gets it too.
    assert doc["tailnet_grants"] == [{"role": "user"}, {"models": "openai/gpt-5.4-mini"}]
    log = tailnet.net.log(KERNEL)
    assert "tailscaled uses kernel networking; listening on its Tailscale addresses only" in log


def test_kernel_networking_leaves_loopback_unbound(tailnet, kernel):
    with pytest.raises(ConnectionRefusedError):
        tailnet.net.net.connect("127.0.0.1", KERNEL_PORT, timeout=5)


def test_listening_on_the_tailnet_is_logged(tailnet):
    log = tailnet.net.log("aperture")
    assert "tailscaled uses userspace networking and forwards tailnet connections to " \
           "127.0.0.1:%d; listening there" % tailnet.port in log


def test_tear_down_leaves_nothing_running(tailnet):
    """Last: stop everything by PID and look for anything left (the fixture's own
    tear-down then has nothing to do)."""
    print("tailnet %s, up in %.1f s" % (tailnet.where, tailnet.startup_seconds))
    tailnet.net.close()
    deadline = time.monotonic() + 10
    while tailnet.net.leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tailnet.net.leftovers() == []
