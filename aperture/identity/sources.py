"""The identity sources behind `aperture serve --identity`, and how to choose one.

* `tailscale`: ask tailscaled's LocalAPI who the peer address belongs to
  (`aperture.identity.whois`). Resolved once per TCP connection.
* `serve-headers`: behind `tailscale serve`, read the identity headers it sets,
  trusted only on loopback connections (`aperture.identity.serve_headers`).
  Resolved per request, since each request carries its own headers.
* `dev:LOGIN`: everyone is LOGIN (`aperture.identity.dev`); development only.

Whatever the source, the identity headers a client sends are never forwarded
upstream (`IDENTITY_HEADERS`).
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from aperture.identity import Identity

__all__ = [
    "IDENTITY_HEADERS",
    "DEFAULT_TAILSCALED_SOCKET",
    "IdentitySource",
    "make_source",
    "default_spec",
    "is_identity_header",
]

DEFAULT_TAILSCALED_SOCKET = "/var/run/tailscale/tailscaled.sock"

# Header names (lowercase) that speak for the caller's identity. `tailscale
# serve` sets and strips them; a client may forge them, so they never go upstream.
IDENTITY_HEADERS: frozenset[bytes] = frozenset(
    {
        b"tailscale-user-login",
        b"tailscale-user-name",
        b"tailscale-user-profile-pic",
        b"tailscale-headers-info",
        b"tailscale-funnel-request",
        b"tailscale-app-capabilities",
    }
)


def is_identity_header(name: bytes) -> bool:
    """Whether a header (any case) is one of IDENTITY_HEADERS."""
    return name.lower() in IDENTITY_HEADERS


@runtime_checkable
class IdentitySource(Protocol):
    """Where identities come from.

    `per_request` False: the caller resolves once per TCP connection and reuses
    the result for every request on it; True: once per request (the identity
    travels in the request headers).
    """

    per_request: bool

    async def resolve(self, peer: tuple, headers: list[tuple[bytes, bytes]]) -> Identity:
        """The identity of `peer` (host, port, ...) sending `headers`.

        Raises aperture.errors.Forbidden when the peer has no identity here
        (not a tailnet peer, no identity headers) and aperture.errors.Unavailable
        when the source itself cannot be asked (tailscaled unreachable).
        """
        ...


SPECS_TEXT = '"tailscale", "serve-headers" or "dev:LOGIN"'


def make_source(spec: str, *, tailscaled_socket: str = DEFAULT_TAILSCALED_SOCKET,
                grants_capability: str | None = None) -> IdentitySource:
    """Build the source named by `spec`; a bad spec raises ValueError saying why.

    `grants_capability` (tailscale only) names the WhoIs CapMap entry that
    carries grants from the tailnet policy file; None: tailscale.com/cap/aperture."""
    if not isinstance(spec, str):
        raise ValueError(f"identity source must be {SPECS_TEXT}")
    name = spec.strip()
    if name == "tailscale":
        from aperture.identity.whois import WhoisSource

        if grants_capability is None:
            return WhoisSource(tailscaled_socket)
        capability = grants_capability.strip()
        if not capability or any(c.isspace() for c in capability):
            raise ValueError(f"grants capability must be a capability name such as "
                             f"example.com/cap/aperture, got {grants_capability!r}")
        return WhoisSource(tailscaled_socket, capability=capability)
    if name == "serve-headers":
        from aperture.identity.serve_headers import ServeHeadersSource

        return ServeHeadersSource()
    if name == "dev" or name.startswith("dev:"):
        login = name[4:].strip()
        if not login:
            raise ValueError('identity "dev" needs a login: use dev:LOGIN, e.g. dev:alice@example.com')
        from aperture.identity.dev import DevSource

        return DevSource(login)
    raise ValueError(f"unknown identity source {spec!r}: use {SPECS_TEXT}")


def default_spec(tailscaled_socket: str = DEFAULT_TAILSCALED_SOCKET) -> str | None:
    """"tailscale" when a tailscaled socket exists at the path, else None (the
    caller picks the fallback, e.g. the embedded default's dev identity)."""
    try:
        return "tailscale" if os.path.exists(tailscaled_socket) else None
    except (OSError, ValueError):
        return None
