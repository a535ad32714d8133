"""The WhoIs identity source against the LocalAPI stand-in (tests/fakes/tailscaled.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile

import pytest

from aperture.errors import Forbidden, Unavailable
from aperture.identity import Identity
from aperture.identity.whois import WhoisSource, identity_from_whois, whois_addr
from tests.fakes.tailscaled import FakeTailscaled, tagged, user

PEERS = {
    "127.0.0.2": user("alice@example.com", "Alice Example", node_name="alice-laptop", node_id="nALICE"),
    "127.0.0.3": user("bob@example.com", "Bob", node_name="bob-desktop", groups=["group:ml-team", "eng@example.com"]),
    "127.0.0.4": tagged(["tag:ci-runner", "tag:prod"], node_name="ci-1", node_id="nCI1"),
    "100.64.0.10": user("carol@example.com", "Carol", node_name="carol-pc"),
    "fd7a:115c:a1e0::10": user("dave@example.com", "Dave", node_name="dave-pc"),
    "127.0.0.9:4242": user("proxied@example.com", "Proxied"),
}


@pytest.fixture
def sock_dir():
    # A short path: unix socket paths are limited to ~108 bytes.
    with tempfile.TemporaryDirectory(prefix="ts-") as d:
        yield d


@pytest.fixture
def fake(sock_dir):
    f = FakeTailscaled(os.path.join(sock_dir, "tailscaled.sock"), PEERS)
    with f.running():
        yield f


def run(coro):
    return asyncio.run(coro)


# --- the pure mapping ---------------------------------------------------------------


def test_identity_from_whois_user():
    ident = identity_from_whois(user("alice@example.com", "Alice Example", node_name="alice-laptop", node_id="nA1"))
    assert ident == Identity(
        login="alice@example.com",
        display_name="Alice Example",
        node_name="alice-laptop",
        node_id="nA1",
        tags=(),
        groups=(),
        source="tailscale",
    )


def test_identity_from_whois_node_name_from_fqdn_when_no_computed_name():
    doc = user("alice@example.com", node_name="box", computed_name=False)
    assert identity_from_whois(doc).node_name == "box"


def test_identity_from_whois_groups():
    doc = user("bob@example.com", groups=["group:eng", "sales@example.com"])
    assert identity_from_whois(doc).groups == ("group:eng", "sales@example.com")


def test_identity_from_whois_tagged_node_has_no_user():
    ident = identity_from_whois(tagged(["tag:ci"], node_name="runner", node_id="nT"))
    assert ident.login == ""
    assert ident.tags == ("tag:ci",)
    assert ident.is_tagged and ident.principal == "tag:ci"
    assert ident.node_name == "runner" and ident.node_id == "nT"


def test_identity_from_whois_tags_win_over_a_login():
    doc = user("alice@example.com")
    doc["Node"]["Tags"] = ["tag:server"]
    ident = identity_from_whois(doc)
    assert ident.login == "" and ident.tags == ("tag:server",)


@pytest.mark.parametrize(
    "doc",
    [[], {"Node": {}}, {"UserProfile": {}}, {"Node": {"Tags": "tag:x"}, "UserProfile": {}},
     {"Node": {}, "UserProfile": {"LoginName": 7}}],
)
def test_identity_from_whois_malformed(doc):
    with pytest.raises(ValueError):
        identity_from_whois(doc)


def test_identity_from_whois_no_user_no_tags_is_refused():
    with pytest.raises(Forbidden):
        identity_from_whois({"Node": {"Name": "x."}, "UserProfile": {"LoginName": ""}})


@pytest.mark.parametrize(
    "host,port,addr,loopback",
    [
        ("100.64.0.1", 5000, "100.64.0.1:5000", False),
        ("::ffff:100.64.0.1", 5000, "100.64.0.1:5000", False),
        ("fd7a:115c:a1e0::1", 443, "[fd7a:115c:a1e0::1]:443", False),
        ("fe80::1%eth0", 1, "[fe80::1]:1", False),
        ("127.0.0.2", 9, "127.0.0.2:9", True),
        ("::1", 9, "[::1]:9", True),
    ],
)
def test_whois_addr(host, port, addr, loopback):
    assert whois_addr(host, port) == (addr, loopback)


# --- against the stand-in ------------------------------------------------------------


def test_resolves_users_tagged_nodes_and_ipv6(fake):
    src = WhoisSource(fake.socket_path)

    async def go():
        a = await src.resolve(("127.0.0.2", 50000), [])
        b = await src.resolve(("127.0.0.3", 50001), [])
        t = await src.resolve(("127.0.0.4", 50002), [])
        c = await src.resolve(("100.64.0.10", 50003), [])
        d = await src.resolve(("fd7a:115c:a1e0::10", 50004, 0, 0), [])
        return a, b, t, c, d

    a, b, t, c, d = run(go())
    assert (a.login, a.display_name, a.node_name, a.node_id, a.source) == (
        "alice@example.com", "Alice Example", "alice-laptop", "nALICE", "tailscale"
    )
    assert b.groups == ("group:ml-team", "eng@example.com")
    assert t.login == "" and t.tags == ("tag:ci-runner", "tag:prod") and t.node_id == "nCI1"
    assert c.login == "carol@example.com"
    assert d.login == "dave@example.com"
    assert src.per_request is False


def test_sends_localapi_host_and_no_referer_or_origin(fake):
    src = WhoisSource(fake.socket_path)
    run(src.resolve(("100.64.0.10", 41000), []))
    req = fake.requests[-1]
    assert req["headers"]["host"] == "local-tailscaled.sock"
    assert "referer" not in req["headers"] and "origin" not in req["headers"]
    assert req["target"] == "/localapi/v0/whois?addr=100.64.0.10%3A41000"


def test_unknown_peer_is_not_a_tailnet_peer(fake):
    src = WhoisSource(fake.socket_path)
    with pytest.raises(Forbidden) as e:
        run(src.resolve(("100.99.99.99", 1234), []))
    assert e.value.message == "not a tailnet peer"
    assert e.value.status == 403


def test_cache_per_ip_skips_the_localapi(fake):
    src = WhoisSource(fake.socket_path)

    async def go():
        for port in range(40000, 40010):
            assert (await src.resolve(("100.64.0.10", port), [])).login == "carol@example.com"

    run(go())
    assert src.lookups == 1
    assert len(fake.requests) == 1


def test_cache_expires(fake):
    src = WhoisSource(fake.socket_path, ttl=0.0)

    async def go():
        await src.resolve(("100.64.0.10", 1), [])
        await src.resolve(("100.64.0.10", 2), [])

    run(go())
    assert src.lookups == 2


def test_cache_is_bounded(fake):
    fake.peers.update({f"100.64.1.{i}": user(f"u{i}@example.com") for i in range(10)})
    src = WhoisSource(fake.socket_path, cache_size=3)

    async def go():
        for i in range(10):
            await src.resolve((f"100.64.1.{i}", 1), [])
        assert len(src._cache) == 3
        await src.resolve(("100.64.1.9", 2), [])  # most recent: still cached
        n = src.lookups
        await src.resolve(("100.64.1.0", 2), [])  # evicted: asked again
        return n

    n = run(go())
    assert n == 10 and src.lookups == 11


def test_not_a_peer_is_cached_briefly(fake):
    src = WhoisSource(fake.socket_path)

    async def go():
        for port in (1, 2, 3):
            with pytest.raises(Forbidden):
                await src.resolve(("100.99.0.1", port), [])

    run(go())
    assert src.lookups == 1


def test_loopback_peers_are_resolved_by_ip_and_port(fake):
    """tailscaled's userspace proxy resolves loopback connections per port."""
    src = WhoisSource(fake.socket_path)

    async def go():
        a = await src.resolve(("127.0.0.9", 4242), [])
        with pytest.raises(Forbidden):
            await src.resolve(("127.0.0.9", 4243), [])
        await src.resolve(("127.0.0.2", 1), [])
        await src.resolve(("127.0.0.2", 1), [])
        return a

    assert run(go()).login == "proxied@example.com"
    assert src.lookups == 4  # loopback answers are not cached


def test_concurrent_lookups_share_one_call(fake):
    fake.delay = 0.2
    src = WhoisSource(fake.socket_path)

    async def go():
        return await asyncio.gather(*(src.resolve(("100.64.0.10", 30000 + i), []) for i in range(20)))

    results = run(go())
    assert {r.login for r in results} == {"carol@example.com"}
    assert src.lookups == 1
    assert len(fake.requests) == 1


def test_cancelled_waiter_does_not_cancel_the_shared_lookup(fake):
    fake.delay = 0.2
    src = WhoisSource(fake.socket_path)

    async def go():
        first = asyncio.ensure_future(src.resolve(("100.64.0.10", 1), []))
        second = asyncio.ensure_future(src.resolve(("100.64.0.10", 2), []))
        await asyncio.sleep(0.05)
        first.cancel()
        return await second

    assert run(go()).login == "carol@example.com"


# --- tailscaled unreachable or odd -------------------------------------------------


def test_socket_missing_is_unavailable(sock_dir, caplog):
    path = os.path.join(sock_dir, "nothing.sock")
    src = WhoisSource(path)
    with caplog.at_level(logging.ERROR, logger="aperture.identity"):
        with pytest.raises(Unavailable) as e:
            run(src.resolve(("100.64.0.10", 1), []))
    assert e.value.status == 503
    assert e.value.message.startswith(f"tailscaled LocalAPI unreachable at {path}: ")
    assert any(path in r.getMessage() for r in caplog.records)


def test_unavailable_is_not_cached_and_log_is_rate_limited(sock_dir, caplog):
    path = os.path.join(sock_dir, "nothing.sock")
    src = WhoisSource(path)

    async def go():
        for port in range(5):
            with pytest.raises(Unavailable):
                await src.resolve(("100.64.0.10", port), [])

    with caplog.at_level(logging.ERROR, logger="aperture.identity"):
        run(go())
    assert src.lookups == 5
    assert len([r for r in caplog.records if r.name == "aperture.identity"]) == 1


def test_connection_refused_is_unavailable(sock_dir):
    path = os.path.join(sock_dir, "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)  # bound but not listening: connect() is refused
    try:
        with pytest.raises(Unavailable) as e:
            run(WhoisSource(path).resolve(("100.64.0.10", 1), []))
        assert "refused" in e.value.message
    finally:
        s.close()


def test_timeout_is_unavailable(fake):
    fake.mode = "hang"
    src = WhoisSource(fake.socket_path, timeout=0.2)
    with pytest.raises(Unavailable) as e:
        run(src.resolve(("100.64.0.10", 1), []))
    assert "no answer within 0.2s" in e.value.message


@pytest.mark.parametrize("mode,words", [("garbage", "malformed HTTP"), ("badjson", "malformed whois"),
                                        ("status:403", "HTTP 403 whois access denied")])
def test_garbled_answers_are_unavailable(fake, mode, words):
    fake.mode = mode
    with pytest.raises(Unavailable) as e:
        run(WhoisSource(fake.socket_path).resolve(("100.64.0.10", 1), []))
    assert words in e.value.message


# --- the stand-in itself behaves like tailscaled ----------------------------------


def test_fake_refuses_bad_host_and_referer(fake):
    assert fake.answer("GET", "/localapi/v0/whois?addr=127.0.0.2:1", {"host": "evil"})[0] == 403
    assert fake.answer("GET", "/localapi/v0/whois?addr=127.0.0.2:1",
                       {"host": "local-tailscaled.sock", "referer": "x"})[0] == 403
    status, _, body = fake.answer("GET", "/localapi/v0/whois?addr=10.0.0.1:1", {"host": ""})
    assert (status, body) == (404, b"no match for IP:port\n")
    assert fake.answer("GET", "/localapi/v0/whois", {})[0] == 400
    status, ctype, body = fake.answer("GET", "/localapi/v0/whois?addr=127.0.0.2:1", {})
    assert status == 200 and ctype == "application/json" and body.startswith(b'{\n\t"Node"')
