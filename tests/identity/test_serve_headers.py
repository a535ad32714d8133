"""Identity from `tailscale serve` headers: RFC 2047 and loopback-only trust."""

from __future__ import annotations

import asyncio

import pytest

from aperture.errors import Forbidden
from aperture.identity.serve_headers import ServeHeadersSource, decode_header_value, is_loopback


def resolve(peer, headers):
    return asyncio.run(ServeHeadersSource().resolve(peer, headers))


@pytest.mark.parametrize(
    "raw,text",
    [
        (b"alice@example.com", "alice@example.com"),
        (b"Alice Example", "Alice Example"),
        # Go's mime.QEncoding, as tailscale serve writes non-ASCII values
        (b"=?utf-8?q?J=C3=B6rg_M=C3=BCller?=", "Jörg Müller"),
        (b"=?UTF-8?Q?=E5=BC=A0=E4=BC=9F?=", "张伟"),
        (b"=?utf-8?b?SsO2cmc=?=", "Jörg"),
        (b"=?utf-8?q?Ren=C3=A9e?= =?utf-8?q?_O=27Brien?=", "Renée O'Brien"),
        (b"  spaced  ", "spaced"),
    ],
)
def test_decode_header_value(raw, text):
    assert decode_header_value(raw) == text


@pytest.mark.parametrize(
    "host,expected",
    [("127.0.0.1", True), ("127.0.0.2", True), ("127.255.0.9", True), ("::1", True),
     ("::ffff:127.0.0.1", True), ("100.64.0.1", False), ("192.168.1.5", False),
     ("fd7a:115c:a1e0::1", False), ("::ffff:10.0.0.1", False), ("localhost", False), ("", False)],
)
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


def test_loopback_with_headers_gives_identity():
    ident = resolve(
        ("127.0.0.1", 50000),
        [(b"Tailscale-User-Login", b"alice@example.com"), (b"Tailscale-User-Name", b"=?utf-8?q?Al=C3=AFce?="),
         (b"Tailscale-User-Profile-Pic", b"https://x/p.png")],
    )
    assert ident.login == "alice@example.com"
    assert ident.display_name == "Alïce"
    assert ident.source == "serve-headers"
    assert ident.tags == () and ident.node_name == ""


def test_header_names_any_case_and_ipv6_loopback():
    ident = resolve(("::1", 1, 0, 0), [(b"tailscale-user-login", b"bob@example.com")])
    assert ident.login == "bob@example.com" and ident.display_name == "bob@example.com"


def test_encoded_login():
    ident = resolve(("127.0.0.1", 1), [(b"Tailscale-User-Login", b"=?utf-8?q?j=C3=B6rg@example.com?=")])
    assert ident.login == "jörg@example.com"


@pytest.mark.parametrize("peer", [("100.64.0.7", 1), ("192.168.0.2", 9), ("fd7a:115c:a1e0::7", 1, 0, 0),
                                  ("::ffff:100.64.0.7", 1)])
def test_spoofed_headers_from_non_loopback_are_ignored_and_refused(peer):
    with pytest.raises(Forbidden) as e:
        resolve(peer, [(b"Tailscale-User-Login", b"admin@example.com"), (b"Tailscale-User-Name", b"Admin")])
    assert "only trusted from loopback" in e.value.message
    assert "admin@example.com" not in e.value.message
    assert e.value.status == 403


def test_loopback_without_headers_is_refused():
    with pytest.raises(Forbidden) as e:
        resolve(("127.0.0.1", 1), [(b"Host", b"ai")])
    assert e.value.message.startswith("no identity headers")


def test_empty_login_is_refused():
    with pytest.raises(Forbidden):
        resolve(("127.0.0.1", 1), [(b"Tailscale-User-Login", b"")])


def test_conflicting_login_headers_are_refused():
    with pytest.raises(Forbidden) as e:
        resolve(("127.0.0.1", 1), [(b"Tailscale-User-Login", b"a@x"), (b"tailscale-user-login", b"b@x")])
    assert "conflicting" in e.value.message


def test_funnel_requests_are_refused():
    with pytest.raises(Forbidden):
        resolve(("127.0.0.1", 1), [(b"Tailscale-Funnel-Request", b"?1"), (b"Tailscale-User-Login", b"a@x")])


def test_malformed_values_are_refused():
    with pytest.raises(Forbidden):
        resolve(("127.0.0.1", 1), [(b"Tailscale-User-Login", b"\xff\xfe")])


def test_per_request():
    assert ServeHeadersSource.per_request is True
