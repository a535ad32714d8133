"""The gateway application that the server runs in each worker.

It owns what one worker shares between its exchanges: the current
configuration (with its router and policy, swapped as one tuple so in-flight
requests finish on the configuration they started with), the upstream pool,
the record sink and the identity source. `handle` dispatches one request: the
health check, the management endpoints, or an API exchange.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Callable

import orjson

from aperture import formats, mgmt
from aperture.configstore import ConfigStore
from aperture.errors import GatewayError, MethodNotAllowed, NotFound, PayloadTooLarge
from aperture.exchange import Exchange
from aperture.ids import new_id
from aperture.routing import Router
from aperture.upstream.pool import Pool

log = logging.getLogger("aperture.gateway")

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]

_MANAGEMENT = {
    ("GET", "/v1/models"): "models",
    ("GET", "/api/providers"): "providers",
    ("GET", "/api/whoami"): "whoami",
    ("GET", "/api/config"): "get_config",
    ("PUT", "/api/config"): "put_config",
}


@dataclass(frozen=True, slots=True)
class Settings:
    max_body_bytes: int = 32 * 1024 * 1024
    capture_body_bytes: int = 8 * 1024 * 1024
    connect_timeout: float = 10.0
    first_byte_timeout: float = 600.0
    idle_timeout: float = 300.0


class Gateway:
    def __init__(self, store: ConfigStore, settings: Settings, *, sink, identity_source) -> None:
        self.settings = settings
        self.sink = sink
        self.identity_source = identity_source
        self.store = store
        config, policy = store.current
        self._snapshot = (config, Router(config), policy)
        self.pool: Pool | None = None
        self.closers: list[Callable[[], object]] = []
        self._tasks: list[asyncio.Task] = []

    def current(self):
        """(config, router, policy) as one consistent snapshot: an exchange takes
        it once, so it finishes on the configuration it started with."""
        snapshot = self._snapshot
        config, policy = self.store.current
        if snapshot[0] is not config:
            snapshot = self._snapshot = (config, Router(config), policy)
        return snapshot

    # -- server hooks ----------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.pool = Pool(connect_timeout=self.settings.connect_timeout)
        if self.store.path is not None:
            self._tasks.append(loop.create_task(self.store.watch()))
            loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _reload(self) -> None:
        asyncio.get_running_loop().run_in_executor(None, self.store.reload)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pool is not None:
            self.pool.close()
        self.sink.close()
        for closer in self.closers:
            closer()

    def on_connection(self, conn) -> None:
        pass

    async def identify(self, req):
        """The caller's identity: resolved once per connection (per request for
        sources that read it from request headers)."""
        source = self.identity_source
        conn = req.conn
        if source.per_request:
            return await source.resolve(conn.peer, req.headers)
        identity = conn.identity
        if identity is None:
            identity = conn.identity = await source.resolve(conn.peer, req.headers)
        return identity

    # -- dispatch ----------------------------------------------------------------

    async def handle(self, req, resp) -> None:
        fmt = formats.match(req.method, req.path)
        if fmt is not None:
            await Exchange(self, req, resp, fmt).run()
            return
        if req.path == "/healthz" and req.method in ("GET", "HEAD"):
            resp.send(200, _TEXT, b"ok\n")
            return
        endpoint = _MANAGEMENT.get((req.method, req.path))
        if endpoint is not None:
            await self._management(req, resp, endpoint)
            return
        owner = formats.known_path(req.path)
        if owner is not None:
            self._error(resp, owner, MethodNotAllowed("%s is not allowed on %s; use POST"
                                                      % (req.method, req.path)))
            return
        self._error(resp, formats.DEFAULT_FORMAT,
                    NotFound("no route for %s %s" % (req.method, req.path)))

    async def _management(self, req, resp, endpoint: str) -> None:
        """The JSON endpoints for clients and admins (not captured)."""
        try:
            identity = await self.identify(req)
            config, _, policy = self.current()
            if endpoint == "models":
                status, body = mgmt.models(identity, config, policy)
            elif endpoint == "providers":
                status, body = mgmt.providers(identity, config, policy)
            elif endpoint == "whoami":
                status, body = mgmt.whoami(identity, policy)
            elif endpoint == "get_config":
                status, body = mgmt.get_config(identity, self.store)
            else:  # put_config: validation, fsync and rename off the event loop
                data = await self._read_body(req)
                status, body = await asyncio.get_running_loop().run_in_executor(
                    None, mgmt.put_config, identity, self.store, data)
        except GatewayError as exc:
            self._error(resp, formats.DEFAULT_FORMAT, exc)
            return
        resp.send(status, _JSON, orjson.dumps(body))

    async def _read_body(self, req) -> bytes:
        limit = self.settings.max_body_bytes
        req.send_continue()
        parts, size = [], 0
        while chunk := await req.body.read():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge("request body exceeds the limit of %d bytes" % limit)
            parts.append(chunk)
        return b"".join(parts)

    def _error(self, resp, fmt, error: GatewayError) -> None:
        body, headers = fmt.error_body(error, new_id())
        resp.send(error.status, headers, body)
