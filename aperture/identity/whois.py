"""Identity from tailscaled's LocalAPI WhoIs (`--identity tailscale`).

Theory of operation (wire-formats.md §7.1, §7.2)
------------------------------------------------
tailscaled answers `GET /localapi/v0/whois?addr=IP:PORT` on its unix socket
with the node and user profile behind a tailnet address: plain HTTP/1.1,
`Host: local-tailscaled.sock`, and no `Referer` or `Origin` (tailscaled
refuses those as a CSRF guard). One short-lived connection per lookup, spoken
with h11; the whole lookup has a short deadline.

* 200: the JSON (`Node`, `UserProfile`, Go field names) becomes an Identity
  (`identity_from_whois`). A tagged node (non-empty `Node.Tags`, or the
  control plane's `tagged-devices` profile) has no user: login "" and its tags.
  A node with neither a user nor tags is refused (Forbidden, saying so).
  `CapMap` holds what the tailnet policy file grants the peer on this node
  (grants with this node in `dst` and an `app` capability). The list under
  the aperture capability (`tailscale.com/cap/aperture` by default; another
  name with `--grants-capability`, since a control server such as headscale
  may refuse names in the tailscale.com domain) becomes the identity's
  `tailnet_grants`, added to the config's grants by the policy.
* 404 ("no match for IP:port"): the peer is not on the tailnet -> Forbidden.
* Anything else (socket missing, refused, timeout, another status, a
  garbled answer) -> Unavailable naming the socket and the reason, and one
  error log line, rate-limited so a dead tailscaled does not flood the log.

Lookups run once per client connection. Results are cached per peer IP (LRU,
TTL) and concurrent lookups of one key share a single LocalAPI call. A "not a
tailnet peer" answer is cached briefly so an unknown peer cannot make the
gateway hammer tailscaled; an Unavailable is never cached.

Loopback peers are the exception to caching per IP: in userspace-networking
mode tailscaled proxies inbound tailnet connections from loopback and resolves
them by IP *and port*, so their key is (IP, port) and they are not cached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import urllib.parse
from collections import OrderedDict
from typing import Any

import h11
import orjson

from aperture.errors import Forbidden, Unavailable
from aperture.identity import Identity
from aperture.policy import APERTURE_CAP

__all__ = ["WhoisSource", "identity_from_whois", "whois_addr", "localapi_get", "LOCALAPI_HOST",
           "NO_USER_NOR_TAGS"]

log = logging.getLogger("aperture.identity")

LOCALAPI_HOST = "local-tailscaled.sock"
NOT_A_PEER = "not a tailnet peer"
NO_USER_NOR_TAGS = "tailnet peer has neither a user nor tags"
_MAX_BODY = 1 << 20
_LOG_INTERVAL = 30.0  # seconds between two "unreachable" log lines
LOOKUP_RESULTS = ("found", "not_a_peer", "refused", "unavailable")


# --- protocol logic without I/O ---------------------------------------------------


def whois_addr(host: str, port: int) -> tuple[str, bool]:
    """(`addr` parameter for WhoIs, is loopback) for a peer socket address.

    IPv4-mapped IPv6 addresses are unmapped and zone ids dropped, as tailscaled
    itself does; IPv6 gets brackets: `[fd7a:115c:a1e0::1]:443`.
    """
    text = str(host).split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return f"{text}:{port}", False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        return f"[{ip.compressed}]:{port}", ip.is_loopback
    return f"{ip.compressed}:{port}", ip.is_loopback


def _str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} is not a list of strings")
    return tuple(value)


def _capabilities(doc: dict, capability: str) -> tuple[str, ...]:
    """The values under `capability` in the answer's CapMap, each as compact
    JSON text with sorted keys (one spelling for one grant)."""
    cap_map = doc.get("CapMap")
    if cap_map is None:
        return ()
    if not isinstance(cap_map, dict):
        raise ValueError("CapMap is not an object")
    values = cap_map.get(capability)
    if values is None:
        return ()
    if not isinstance(values, list):
        raise ValueError(f"CapMap[{capability!r}] is not a list")
    return tuple(orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode() for v in values)


def identity_from_whois(doc: Any, capability: str = APERTURE_CAP) -> Identity:
    """Map a WhoIs JSON document to an Identity; `capability` names the CapMap
    entry that carries grants from the tailnet policy file.

    Raises ValueError when the document does not have the expected shape and
    Forbidden for a peer that has neither a user nor tags.
    """
    if not isinstance(doc, dict):
        raise ValueError("whois answer is not a JSON object")
    node = doc.get("Node")
    profile = doc.get("UserProfile")
    if not isinstance(node, dict) or not isinstance(profile, dict):
        raise ValueError("whois answer lacks Node or UserProfile")
    tags = _strings(node.get("Tags"), "Node.Tags")
    login = _str(profile.get("LoginName"), "UserProfile.LoginName")
    display = _str(profile.get("DisplayName"), "UserProfile.DisplayName")
    groups = _strings(profile.get("Groups"), "UserProfile.Groups")
    node_name = _str(node.get("ComputedName"), "Node.ComputedName")
    if not node_name:
        node_name = _str(node.get("Name"), "Node.Name").split(".", 1)[0]
    node_id = _str(node.get("StableID"), "Node.StableID")
    grants = _capabilities(doc, capability)
    if tags or login == "tagged-devices":
        # A tagged node has no user: it is known by its tags (pgproxy does the same).
        return Identity(
            login="",
            display_name=",".join(tags) or node_name,
            node_name=node_name,
            node_id=node_id,
            tags=tags,
            groups=(),
            source="tailscale",
            tailnet_grants=grants,
        )
    if not login:
        raise Forbidden(NO_USER_NOR_TAGS)
    return Identity(
        login=login,
        display_name=display or login,
        node_name=node_name,
        node_id=node_id,
        tags=(),
        groups=groups,
        source="tailscale",
        tailnet_grants=grants,
    )


def _printable(data: bytes, limit: int = 120) -> str:
    text = data.decode("utf-8", "replace").strip().splitlines()
    first = text[0] if text else ""
    first = "".join(c if c.isprintable() else "?" for c in first)
    return first[:limit]


# --- the LocalAPI ----------------------------------------------------------------


async def localapi_get(socket_path: str, target: str) -> tuple[int, bytes]:
    """One GET of the LocalAPI over a fresh unix-socket connection: (status, body).

    Raises OSError (socket missing, refused, ...) and h11.ProtocolError (not
    HTTP, cut short, larger than 1 MiB); the caller sets the deadline.
    """
    conn = h11.Connection(h11.CLIENT)
    request = conn.send(
        h11.Request(
            method="GET",
            target=target,
            headers=[
                ("Host", LOCALAPI_HOST),
                ("Accept", "application/json"),
                ("Connection", "close"),
            ],
        )
    ) + (conn.send(h11.EndOfMessage()) or b"")
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(request)
        await writer.drain()
        status = 0
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    raise h11.RemoteProtocolError("answer larger than 1 MiB")
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("connection closed before the answer ended")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


# --- the source -------------------------------------------------------------------


class WhoisSource:
    """Identity source asking tailscaled's LocalAPI; resolves once per connection."""

    per_request = False

    def __init__(
        self,
        socket_path: str,
        *,
        timeout: float = 2.0,
        cache_size: int = 4096,
        ttl: float = 60.0,
        negative_ttl: float = 5.0,
        capability: str = APERTURE_CAP,
    ) -> None:
        self.socket_path = socket_path
        self.capability = capability
        self.timeout = timeout
        self.cache_size = cache_size
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        # key -> (expires at, Identity or the Forbidden to raise)
        self._cache: OrderedDict[Any, tuple[float, Identity | Forbidden]] = OrderedDict()
        self._inflight: dict[Any, asyncio.Future[Identity]] = {}
        self._last_log = -_LOG_INTERVAL
        self._suppressed = 0
        self.lookups = 0  # LocalAPI calls made
        # ... by outcome ("found", "not_a_peer", "refused", "unavailable"):
        # /metrics counts them as aperture_identity_lookups.
        self.lookup_results: dict[str, int] = dict.fromkeys(LOOKUP_RESULTS, 0)

    async def resolve(self, peer: tuple, headers: list[tuple[bytes, bytes]]) -> Identity:
        host, port = peer[0], int(peer[1])
        addr, loopback = whois_addr(host, port)
        key = addr if loopback else addr.rsplit(":", 1)[0]
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > now:
                self._cache.move_to_end(key)
                found = hit[1]
                if isinstance(found, Forbidden):
                    raise Forbidden(found.message)
                return found
            del self._cache[key]
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._lookup(addr))
            self._inflight[key] = fut
            fut.add_done_callback(lambda f, key=key, loopback=loopback: self._done(key, loopback, f))
        # shield: a caller that goes away does not cancel the lookup others wait on.
        return await asyncio.shield(fut)

    def _done(self, key: Any, loopback: bool, fut: asyncio.Future[Identity]) -> None:
        self._inflight.pop(key, None)
        if fut.cancelled():
            return
        err = fut.exception()
        if loopback:
            return
        now = time.monotonic()
        if err is None:
            self._store(key, now + self.ttl, fut.result())
        elif isinstance(err, Forbidden):
            self._store(key, now + self.negative_ttl, err)

    def _store(self, key: Any, expires: float, value: Identity | Forbidden) -> None:
        cache = self._cache
        cache[key] = (expires, value)
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    async def _lookup(self, addr: str) -> Identity:
        self.lookups += 1
        results = self.lookup_results
        try:
            identity = await self._ask(addr)
        except Forbidden as e:
            results["not_a_peer" if e.message == NOT_A_PEER else "refused"] += 1
            raise
        except Unavailable:
            results["unavailable"] += 1
            raise
        results["found"] += 1
        return identity

    async def _ask(self, addr: str) -> Identity:
        try:
            async with asyncio.timeout(self.timeout):
                status, body = await self._get(addr)
        except TimeoutError:
            raise self._unavailable(f"no answer within {self.timeout:g}s") from None
        except FileNotFoundError:
            raise self._unavailable("socket not found (is tailscaled running?)") from None
        except ConnectionRefusedError:
            raise self._unavailable("connection refused (is tailscaled running?)") from None
        except PermissionError:
            raise self._unavailable("permission denied on the socket") from None
        except h11.ProtocolError as e:
            raise self._unavailable(f"malformed HTTP answer ({e})") from None
        except OSError as e:
            raise self._unavailable(e.strerror or e.__class__.__name__) from None
        if status == 404:
            raise Forbidden(NOT_A_PEER)
        if status != 200:
            raise self._unavailable(f"HTTP {status} {_printable(body)}".rstrip())
        try:
            return identity_from_whois(orjson.loads(body), self.capability)
        except (orjson.JSONDecodeError, ValueError) as e:
            raise self._unavailable(f"malformed whois answer: {e}") from None

    async def _get(self, addr: str) -> tuple[int, bytes]:
        target = "/localapi/v0/whois?addr=" + urllib.parse.quote(addr, safe="")
        return await localapi_get(self.socket_path, target)

    def _unavailable(self, reason: str) -> Unavailable:
        message = f"tailscaled LocalAPI unreachable at {self.socket_path}: {reason}"
        now = time.monotonic()
        if now - self._last_log >= _LOG_INTERVAL:
            extra = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
            log.error("identity: %s%s", message, extra)
            self._last_log = now
            self._suppressed = 0
        else:
            self._suppressed += 1
        return Unavailable(message)
