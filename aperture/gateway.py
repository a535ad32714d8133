"""The gateway application that the server runs in each worker.

It owns what one worker shares between its exchanges: the current
configuration (with its router and policy, swapped as one tuple so in-flight
requests finish on the configuration they started with), the upstream pool,
the record sink and the identity source. `handle` dispatches one request: the
health check, the management endpoints, or an API exchange.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import orjson

from aperture import formats
from aperture.config import Config
from aperture.errors import GatewayError, MethodNotAllowed, NotFound
from aperture.exchange import Exchange
from aperture.routing import Router
from aperture.upstream.pool import Pool

log = logging.getLogger("aperture.gateway")

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class Settings:
    max_body_bytes: int = 32 * 1024 * 1024
    capture_body_bytes: int = 8 * 1024 * 1024
    connect_timeout: float = 10.0
    first_byte_timeout: float = 600.0
    idle_timeout: float = 300.0


class Gateway:
    def __init__(self, config: Config, settings: Settings, *, sink, identity_source,
                 policy_factory: Callable[[Config], object] | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.identity_source = identity_source
        self._policy_factory = policy_factory
        self._current = self._compile(config)
        self.pool: Pool | None = None
        self.closers: list[Callable[[], object]] = []

    def _compile(self, config: Config):
        policy = self._policy_factory(config) if self._policy_factory else None
        return config, Router(config), policy

    def current(self):
        """(config, router, policy) as one consistent snapshot."""
        return self._current

    def replace_config(self, config: Config) -> None:
        self._current = self._compile(config)

    # -- server hooks ----------------------------------------------------------

    async def start(self) -> None:
        self.pool = Pool(connect_timeout=self.settings.connect_timeout)

    async def close(self) -> None:
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
        owner = formats.known_path(req.path)
        if owner is not None:
            self._error(resp, owner, MethodNotAllowed("%s is not allowed on %s; use POST"
                                                      % (req.method, req.path)))
            return
        self._error(resp, formats.DEFAULT_FORMAT,
                    NotFound("no route for %s %s" % (req.method, req.path)))

    def _error(self, resp, fmt, error: GatewayError) -> None:
        from aperture.ids import new_id

        body, headers = fmt.error_body(error, new_id())
        resp.send(error.status, headers, body)
