"""The gateway application that the server runs in each worker.

It owns what one worker shares between its exchanges: the current
configuration (with its router, policy, provider credentials and prices,
swapped as one `Snapshot` so in-flight requests finish on the configuration
they started with), the upstream pool, the record sink (behind the observers
that price and count each record: aperture.metrics), the identity source and
the map of stored responses. `handle` dispatches one request through the route
table: the API formats' paths (every method: the format answers a wrong one),
the health check, the management endpoints, the dashboard and its data
(aperture.ui) and /metrics. Requests from browsers pass the guard first
(aperture.ui.guard: Host and Origin checks).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from dataclasses import dataclass
from typing import Callable

import orjson

from aperture import formats, metrics, mgmt, pricing
from aperture.configstore import ConfigStore
from aperture.errors import GatewayError, NotFound, PayloadTooLarge
from aperture.exchange import Exchange
from aperture.ids import new_id
from aperture.responses import StoredResponses
from aperture.routing import Router
from aperture.upstream.auth import CommandKey, credential_for
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


class RouteTable:
    """(method, exact or prefix path) -> handler. An exact path wins over a
    prefix; among prefixes the longest wins. Method "*" takes every method."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Callable] = {}
        self._prefixes: list[tuple[str, str, Callable]] = []

    def add(self, method: str, path: str, handler: Callable, *, prefix: bool = False) -> None:
        if prefix:
            self._prefixes.append((path, method, handler))
            self._prefixes.sort(key=lambda entry: -len(entry[0]))
        else:
            self._exact[(method, path)] = handler

    def find(self, method: str, path: str) -> Callable | None:
        exact = self._exact
        handler = exact.get(("*", path)) or exact.get((method, path))
        if handler is not None:
            return handler
        for prefix, m, handler in self._prefixes:
            if path.startswith(prefix) and (m == "*" or m == method):
                return handler
        return None


class Snapshot:
    """What a request needs from the configuration, built once per version."""

    __slots__ = ("config", "router", "policy", "credentials", "prices")

    def __init__(self, config, policy, credentials: dict) -> None:
        self.config = config
        self.router = Router(config)
        self.policy = policy
        #: provider id -> credential strategy (aperture.upstream.auth)
        self.credentials = credentials
        self.prices = pricing.book_for(config)


@dataclass(frozen=True, slots=True)
class Settings:
    max_body_bytes: int = 32 * 1024 * 1024
    capture_body_bytes: int = 8 * 1024 * 1024
    connect_timeout: float = 10.0
    first_byte_timeout: float = 600.0
    idle_timeout: float = 300.0
    #: the capture store the dashboard reads (None: capture is off)
    data_dir: str | None = None
    #: where the workers' metrics sockets live (None: this worker alone)
    metrics_dir: str | None = None
    #: host names the dashboard answers to (empty: the defaults, see aperture.ui.guard)
    ui_hosts: tuple[str, ...] = ()
    listen_host: str = ""


class Gateway:
    def __init__(self, store: ConfigStore, settings: Settings, *, sink, identity_source) -> None:
        self.settings = settings
        #: how much of each body an exchange keeps for its record (none when
        #: the sink keeps no bodies: capture off)
        self.body_bytes = settings.capture_body_bytes if getattr(sink, "keeps_bodies", True) else 0
        #: whether a record must be made before its response's last byte goes
        #: out (a store: no client holds an answer the capture misses), or
        #: may follow it (a sink that only logs)
        self.record_first = getattr(sink, "stores", True)
        self.metrics = metrics.Metrics(settings.metrics_dir)
        self.sink = metrics.ObservingSink(sink, self)
        self.identity_source = identity_source
        self.store = store
        self._commands: dict[tuple, CommandKey] = {}  # kept across reloads: tokens live on
        self._snapshot = self._build(*store.current)
        self.pool: Pool | None = None
        self.closers: list[Callable[[], object]] = []
        self._tasks: list[asyncio.Task] = []
        lookup = getattr(sink, "response_owner", None)
        self.responses = StoredResponses(lookup)
        self.routes = RouteTable()
        for fmt in formats.FORMATS:
            handler = functools.partial(self._exchange, fmt)
            for path, prefix in fmt.paths:
                self.routes.add("*", path, handler, prefix=prefix)
        self.routes.add("GET", "/healthz", self._health)
        self.routes.add("HEAD", "/healthz", self._health)
        for (method, path), endpoint in _MANAGEMENT.items():
            self.routes.add(method, path, functools.partial(self._management, endpoint=endpoint))
        self.routes.add("GET", "/bedrock/inference-profiles", self._bedrock_profiles)
        from aperture import ui

        self.ui = ui.install(self)

    def _build(self, config, policy) -> Snapshot:
        credentials = {}
        commands = {}
        for provider in config.providers.values():
            if provider.apikey_command is not None:
                key = (provider.id, provider.apikey_command, provider.apikey_refresh,
                       provider.authorization)
                command = self._commands.get(key) or credential_for(provider)
                commands[key] = credentials[provider.id] = command
            else:
                credentials[provider.id] = credential_for(provider)
        self._commands = commands
        return Snapshot(config, policy, credentials)

    def current(self) -> Snapshot:
        """The configuration as one consistent snapshot: an exchange takes it
        once, so it finishes on the configuration it started with."""
        snapshot = self._snapshot
        config, policy = self.store.current
        if snapshot.config is not config:
            snapshot = self._snapshot = self._build(config, policy)
            self._start_commands()
        return snapshot

    def _start_commands(self) -> None:
        """Fetch command-made keys now rather than at their first request."""
        for command in self._commands.values():
            if command.header is None:
                command.start()

    # -- server hooks ----------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.pool = Pool(connect_timeout=self.settings.connect_timeout)
        self._start_commands()
        if self.store.path is not None:
            self._tasks.append(loop.create_task(self.store.watch()))
            loop.add_signal_handler(signal.SIGHUP, self._reload)
        await self.metrics.start(self)

    def _reload(self) -> None:
        asyncio.get_running_loop().run_in_executor(None, self.store.reload)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pool is not None:
            self.pool.close()
        self.sink.close()
        self.metrics.close()
        self.ui.close()
        for closer in self.closers:
            closer()

    def on_connection(self, conn) -> None:
        if self.metrics.connections is None:
            state = conn.state
            self.metrics.connections = state.connections  # counted when scraped
            # Client and provider connections share the worker's descriptors.
            pool = self.pool
            state.other_fds = lambda: pool.open
            budget = state.fd_budget
            if budget is not None:
                pool.fd_room = lambda: len(state.connections) + pool.open < budget

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
        handler = self.routes.find(req.method, req.path)
        if handler is None:
            await self._unrouted(req, resp)
            return
        refusal = self.ui.guard.check(req, handler)
        if refusal is not None:
            await self.ui.refuse(req, resp, handler, refusal)
            return
        await handler(req, resp)

    async def _exchange(self, fmt, req, resp) -> None:
        exchange = Exchange(self, req, resp, fmt)
        live = self.metrics.live  # in flight, for /metrics
        live.add(exchange)
        try:
            await exchange.run()
        finally:
            live.discard(exchange)

    def refuse_bad_request(self, req, resp, error: GatewayError):
        """The server's hook for a request head that broke the HTTP rules
        after its path was read (aperture.ingress.protocol): on an API path,
        answered in that path's format and captured as refused (a coroutine
        to run); elsewhere None, and the server answers in plain text."""
        handler = self.routes.find(req.method, req.path)
        if isinstance(handler, functools.partial) and handler.func == self._exchange:
            fmt = handler.args[0]  # an API format's own path
        elif req.path.startswith(("/v1", "/bedrock")):  # also /v1beta, /v1beta1
            fmt = formats.format_for_path(req.path, req.headers)
        else:
            return None  # the dashboard, /healthz, /metrics, /api: plain text
        return Exchange(self, req, resp, fmt).refuse(error, unrouted=False)

    async def _unrouted(self, req, resp) -> None:
        """A path no route serves (nor any method of it): 404 in the format
        the path suggests, logged, counted and captured as refused."""
        fmt = formats.format_for_path(req.path, req.headers)
        exchange = Exchange(self, req, resp, fmt)
        await exchange.refuse(NotFound("no route for %s %s" % (req.method, req.path)))

    async def _health(self, req, resp) -> None:
        resp.send(200, _TEXT, b"ok\n")

    async def _management(self, req, resp, endpoint: str) -> None:
        """The JSON endpoints for clients and admins (not captured)."""
        try:
            identity = await self.identify(req)
            snapshot = self.current()
            config, policy = snapshot.config, snapshot.policy
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

    async def _bedrock_profiles(self, req, resp) -> None:
        """Bedrock's ListInferenceProfiles, for Claude Code in Bedrock mode
        (aperture.mgmt.bedrock_inference_profiles); errors in Bedrock's shape."""
        try:
            identity = await self.identify(req)
            snapshot = self.current()
            status, body = mgmt.bedrock_inference_profiles(identity, snapshot.config,
                                                           snapshot.policy, req.query)
        except GatewayError as exc:
            self._error(resp, formats.BY_NAME["bedrock"], exc)
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
