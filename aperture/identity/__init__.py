"""Who is calling: the identity of the peer behind a client connection.

Identity is resolved once per TCP connection (DESIGN.md, step 2) by one of the
sources in this package and then attached to every exchange on that connection.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller as the gateway sees it.

    `login` is the user's login name, or "" for a tagged node (which is identified
    by its `tags` and has no user). `node_name` and `node_id` name the device.
    `tailnet_grants` are the capability objects the tailnet policy file grants
    this caller on the gateway (WhoIs `CapMap`, aperture.identity.whois), each
    as compact JSON text so that an identity stays hashable; the policy adds
    them to the config's grants (aperture.policy).
    """

    login: str
    display_name: str = ""
    node_name: str = ""
    node_id: str = ""
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    source: str = "dev"  # "tailscale" | "serve-headers" | "dev"
    tailnet_grants: tuple[str, ...] = ()

    @property
    def is_tagged(self) -> bool:
        return bool(self.tags)

    @property
    def principal(self) -> str:
        """The name records are attributed to: the login, or the tags of a tagged node."""
        return self.login or ",".join(self.tags)
