"""`--listen tailnet[:PORT]`: listen only where tailnet connections arrive.

Theory of operation
-------------------
Aperture takes its callers' identity from the tailnet, so it should accept
connections only from the tailnet. Where those arrive depends on how
tailscaled runs, which its LocalAPI says: `GET /localapi/v0/status` answers
the node's Tailscale addresses (`TailscaleIPs`, also `Self.TailscaleIPs`) and
whether it uses a kernel TUN device (`TUN`).

* Kernel networking (`TUN` true): the addresses sit on the tailscale0
  interface; aperture binds each of them, PORT on every one, and nothing else.
  A connection to another address of the machine finds no listener.
* Userspace networking (`TUN` false, `tailscaled --tun=userspace-networking`):
  no interface carries the addresses. tailscaled accepts tailnet connections
  itself and opens a connection to 127.0.0.1:PORT for each of them, so
  aperture binds 127.0.0.1:PORT and the log says so. Local programs can reach
  that port too; they are not tailnet peers, and WhoIs refuses them (403).

The addresses are followed: every `interval` seconds the status is read again,
new addresses are bound and vanished ones closed (their open connections
live on). Until tailscaled answers with at least one address, nothing is
bound and the log says why, at most once per `interval` for the same reason.
When tailscaled stops answering later, the listeners stay as they are.

`TailnetListener` does no HTTP; it owns the listening sockets and calls
`open(sock)` / `close(handle)` given by the server (aperture.ingress.server).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any, Awaitable, Callable

import h11
import orjson

log = logging.getLogger("aperture.server")

__all__ = ["TailnetListener", "parse_tailnet_listen", "listen_addresses", "DEFAULT_PORT"]

DEFAULT_PORT = 80
STATUS_TARGET = "/localapi/v0/status"


def parse_tailnet_listen(listen: str) -> int | None:
    """The port of `tailnet` / `tailnet:PORT` (80 when none), or None when
    `listen` is not a tailnet spec. A bad port raises ValueError."""
    name, sep, port = listen.strip().partition(":")
    if name != "tailnet":
        return None
    if not sep:
        return DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("tailnet listen address must be tailnet or tailnet:PORT "
                         "(PORT from 1 to 65535), got %r" % listen)
    return int(port)


def listen_addresses(status: Any) -> tuple[tuple[str, ...], bool]:
    """(addresses to bind, userspace networking) from a LocalAPI status answer.

    Raises ValueError when the answer does not have the expected shape.
    """
    if not isinstance(status, dict):
        raise ValueError("status answer is not a JSON object")
    ips = status.get("TailscaleIPs")
    if ips is None and isinstance(status.get("Self"), dict):
        ips = status["Self"].get("TailscaleIPs")
    if ips is None:
        ips = []
    if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
        raise ValueError("TailscaleIPs is not a list of addresses")
    addresses = []
    for text in ips:
        try:
            addresses.append(ipaddress.ip_address(text).compressed)
        except ValueError:
            raise ValueError("TailscaleIPs holds %r, not an IP address" % text) from None
    tun = status.get("TUN", True)
    if not isinstance(tun, bool):
        raise ValueError("TUN is not true or false")
    if not addresses:
        return (), not tun
    if not tun:
        return ("127.0.0.1",), True
    return tuple(addresses), False


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class TailnetListener:
    """Binds PORT on the node's Tailscale addresses and follows them."""

    def __init__(self, socket_path: str, port: int, *, reuse_port: bool = False,
                 interval: float = 5.0, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.port = port
        self.reuse_port = reuse_port
        self.interval = interval
        self.timeout = timeout
        self._open: Callable[[socket.socket], Awaitable[Any]] | None = None
        self._close: Callable[[Any], None] | None = None
        self._bound: dict[str, Any] = {}  # host -> the server's handle
        self._task: asyncio.Task | None = None
        self._last_problem = ""
        self._userspace: bool | None = None

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(self._bound)

    async def start(self, open_: Callable[[socket.socket], Awaitable[Any]],
                    close: Callable[[Any], None]) -> None:
        """Bind what the status says now (when it answers) and keep following it."""
        self._open, self._close = open_, close
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for handle in self._bound.values():
            self._close(handle)
        self._bound.clear()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round must not end the following
                log.exception("tailnet listener: reading tailscaled's status failed")

    async def _status(self) -> Any:
        from aperture.identity.whois import localapi_get

        async with asyncio.timeout(self.timeout):
            status, body = await localapi_get(self.socket_path, STATUS_TARGET)
        if status != 200:
            raise ValueError("HTTP %d" % status)
        return orjson.loads(body)

    def _problem(self, text: str) -> None:
        if text != self._last_problem:
            log.warning("tailnet listener: %s", text)
            self._last_problem = text

    async def refresh(self) -> None:
        """Read the status once and bind or close listeners to match it."""
        try:
            hosts, userspace = listen_addresses(await self._status())
        except (OSError, TimeoutError, h11.ProtocolError, ValueError) as e:
            reason = str(e) or e.__class__.__name__
            kept = "keeping %s" % ", ".join(self._bound) if self._bound else "not listening yet"
            self._problem("tailscaled LocalAPI at %s gives no status (%s); %s"
                          % (self.socket_path, reason, kept))
            return
        if not hosts:
            self._problem("tailscaled at %s reports no Tailscale address (not logged in or "
                          "stopped?); %s" % (self.socket_path,
                                             "closing the listeners" if self._bound
                                             else "not listening yet"))
        elif self._last_problem:
            log.info("tailnet listener: tailscaled answers again")
            self._last_problem = ""
        if hosts and userspace != self._userspace:
            if userspace:
                log.info("tailnet listener: tailscaled uses userspace networking and forwards "
                         "tailnet connections to 127.0.0.1:%d; listening there (local programs "
                         "reach it too and are refused as not tailnet peers)", self.port)
            else:
                log.info("tailnet listener: tailscaled uses kernel networking; listening on its "
                         "Tailscale addresses only")
            self._userspace = userspace
        for host in [h for h in self._bound if h not in hosts]:
            log.info("tailnet listener: %s is no longer an address of this node; closing it", host)
            self._close(self._bound.pop(host))
        for host in hosts:
            if host in self._bound:
                continue
            try:
                sock = _bind(host, self.port, self.reuse_port)
            except OSError as e:
                self._problem("cannot listen on %s port %d: %s" % (host, self.port,
                                                                  e.strerror or e))
                continue
            self._bound[host] = await self._open(sock)
