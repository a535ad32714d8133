"""Keep-alive connections to providers, pooled per origin.

An exchange `acquire`s a connection for its origin (scheme, host, port): the
most recently used idle one that is still open, or a new one (TLS with the
system's CA store for https). After the response it either `release`s it
(kept only when `reusable`: the response ended cleanly with nothing after it,
and the upstream allows another request; the connection is then `reset` for
the next one) or `discard`s it (errors, client gone, cut streams: such a
connection is never reused). An idle connection that receives anything
closes itself (connection.py), so `acquire` passes over it.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections import deque

from aperture.errors import BadGateway, GatewayError, GatewayTimeout
from aperture.upstream.connection import UpstreamConnection
from aperture.upstream.reader import ResponseReader


def _no_descriptor(host: str, port: int) -> GatewayError:
    return GatewayError("no file descriptor left for a connection to upstream %s:%d "
                        "(the open-files limit, ulimit -n)" % (host, port), status=503)


class Pool:
    def __init__(self, *, connect_timeout: float = 10.0, max_idle_per_origin: int = 128,
                 idle_ttl: float = 60.0, reader=ResponseReader) -> None:
        self.connect_timeout = connect_timeout
        self.reader = reader  # the response reader's class (reader.py chooses it)
        self.max_idle = max_idle_per_origin
        self.idle_ttl = idle_ttl
        self._idle: dict[tuple[str, str, int], deque[UpstreamConnection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        #: connections open (idle or in use): each holds a file descriptor
        self.open = 0
        #: whether a descriptor may be taken for one more (set by the gateway
        #: from the worker's budget; None: always)
        self.fd_room = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # system CA store
        return self._ssl

    async def acquire(self, scheme: str, host: str, port: int) -> UpstreamConnection:
        origin = (scheme, host, port)
        idle = self._idle.get(origin)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()  # most recently used first: the warmest
                if conn.closed or now - conn.idle_since > self.idle_ttl:
                    conn.close()
                    continue
                conn.reused = True
                return conn
        return await self._connect(origin)

    async def _connect(self, origin: tuple[str, str, int]) -> UpstreamConnection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        if self.fd_room is not None and not self.fd_room():
            raise _no_descriptor(host, port)
        kwargs = {}
        if scheme == "https":
            kwargs = {"ssl": self._ssl_context(), "server_hostname": host}
        self.open += 1  # counted from the start: connects run side by side
        made = False
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: UpstreamConnection(origin, loop, self.reader), host, port, **kwargs),
                self.connect_timeout)
        except asyncio.TimeoutError:
            raise GatewayTimeout("timed out connecting to upstream %s:%d" % (host, port)) from None
        except ssl.SSLError as exc:
            raise BadGateway("TLS handshake with upstream %s:%d failed: %s" % (host, port, exc.reason)) from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            if scheme != "https":
                raise BadGateway("cannot connect to upstream %s:%d: %s"
                                 % (host, port, exc.strerror or exc.__class__.__name__)) from None
            # A refused TCP connect is ConnectionRefusedError: this one was
            # accepted, then closed during the handshake.
            raise BadGateway("TLS handshake with upstream %s:%d failed: the upstream closed "
                             "the connection" % (host, port)) from None
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise _no_descriptor(host, port) from None
            reason = exc.strerror or exc.__class__.__name__
            raise BadGateway("cannot connect to upstream %s:%d: %s" % (host, port, reason)) from None
        else:
            made = True
        finally:
            if not made:
                self.open -= 1
        conn.on_lost = self._lost
        return conn

    def _lost(self, conn: UpstreamConnection) -> None:
        self.open -= 1

    def release(self, conn: UpstreamConnection) -> None:
        if self._closed or not conn.reusable:
            conn.close()
            return
        conn.reset()
        idle = self._idle.setdefault(conn.origin, deque())
        if len(idle) >= self.max_idle:
            idle.popleft().close()
        conn.idle_since = asyncio.get_running_loop().time()
        idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        conn.abort()

    def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

