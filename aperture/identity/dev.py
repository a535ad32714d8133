"""A fixed development identity: every caller is the same LOGIN (`--identity dev:LOGIN`).

Nothing is checked about the peer, so anyone who can reach the port acts as
LOGIN. Creating the source logs a warning saying so; the embedded default
configuration uses it so that aperture runs without a tailnet.
"""

from __future__ import annotations

import logging

from aperture.identity import Identity

__all__ = ["DevSource"]

log = logging.getLogger("aperture.identity")


class DevSource:
    """Every peer is `Identity(login=LOGIN, ..., source="dev")`."""

    per_request = False
    __slots__ = ("identity",)

    def __init__(self, login: str) -> None:
        login = login.strip()
        if not login:
            raise ValueError("dev identity needs a login (dev:LOGIN)")
        self.identity = Identity(login=login, display_name=login, node_name="dev", source="dev")
        log.warning(
            "identity: every caller is %r (development identity dev:%s, not for production; "
            "use --identity tailscale on a tailnet)",
            login,
            login,
        )

    async def resolve(self, peer: tuple, headers: list[tuple[bytes, bytes]]) -> Identity:
        return self.identity
