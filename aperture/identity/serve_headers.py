"""Identity from the headers `tailscale serve` adds (`--identity serve-headers`).

Theory of operation (wire-formats.md §7.3)
------------------------------------------
Behind `tailscale serve`, every request reaches the gateway from loopback, and
serve has already deleted any `Tailscale-User-*` headers the client sent and
set its own from WhoIs: `Tailscale-User-Login` (login name) and
`Tailscale-User-Name` (display name), non-ASCII values RFC 2047 Q-encoded.
So the headers can be believed exactly when the connection comes from
loopback, where only serve (or another local process) can connect.

* Peer not on loopback (127.0.0.0/8, ::1, or their IPv4-mapped form): the
  headers are ignored and the caller refused, since anybody could have
  written them.
* Loopback, no login header: refused. serve sets none for tagged nodes,
  Funnel traffic and peers it cannot identify.
* Two different login headers: refused; serve never sends two.

The identity is read per request (`per_request = True`): one connection from
serve carries requests of many users.
"""

from __future__ import annotations

import email.errors
import email.header
import functools
import ipaddress

from aperture.errors import Forbidden
from aperture.identity import Identity

__all__ = ["ServeHeadersSource", "decode_header_value", "is_loopback"]

_LOGIN = b"tailscale-user-login"
_NAME = b"tailscale-user-name"
_FUNNEL = b"tailscale-funnel-request"

NOT_LOOPBACK = "identity headers are only trusted from loopback connections (tailscale serve); this connection is not from loopback"
NO_HEADERS = "no identity headers (tailscale serve sends none for tagged devices, Funnel and unknown peers)"


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (IPv4-mapped IPv6 included)."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def decode_header_value(raw: bytes) -> str:
    """A header value as text, RFC 2047 encoded words decoded.

    Raises ValueError for values that cannot be decoded.
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = raw.decode("utf-8")  # raises ValueError for bad bytes
    text = text.strip()
    if "=?" not in text:
        return text
    parts = email.header.decode_header(text)
    return str(email.header.make_header(parts)).strip()


@functools.lru_cache(maxsize=1024)
def _identity(login_raw: bytes, name_raw: bytes) -> Identity:
    try:
        login = decode_header_value(login_raw)
        name = decode_header_value(name_raw) if name_raw else ""
    except (ValueError, LookupError, email.errors.HeaderParseError):
        raise Forbidden("malformed identity header Tailscale-User-Login or Tailscale-User-Name") from None
    if not login:
        raise Forbidden(NO_HEADERS)
    return Identity(login=login, display_name=name or login, source="serve-headers")


class ServeHeadersSource:
    """Identity from `Tailscale-User-Login` / `Tailscale-User-Name`, loopback only."""

    per_request = True
    __slots__ = ()

    async def resolve(self, peer: tuple, headers: list[tuple[bytes, bytes]]) -> Identity:
        if not is_loopback(str(peer[0])):
            raise Forbidden(NOT_LOOPBACK)
        login: bytes | None = None
        name = b""
        for key, value in headers:
            key = key.lower()
            if key == _LOGIN:
                if login is not None and value != login:
                    raise Forbidden("conflicting Tailscale-User-Login headers")
                login = value
            elif key == _NAME:
                name = value
            elif key == _FUNNEL:
                raise Forbidden("Funnel requests carry no tailnet identity")
        if login is None:
            raise Forbidden(NO_HEADERS)
        return _identity(login, name)
