"""Listening, worker processes, signals and graceful drain.

`serve()` runs one worker in this process, or N worker processes that each bind
the same address with SO_REUSEPORT (the kernel spreads connections between
them; nothing on the request path is shared between processes).

`listen` is HOST:PORT, or `tailnet[:PORT]`: then each worker binds the node's
Tailscale addresses read from tailscaled's LocalAPI and follows them
(aperture.ingress.tailnet).

On SIGTERM or SIGINT a worker stops accepting, closes its idle keep-alive
connections, lets in-flight exchanges finish (their responses end with
`connection: close`) for up to `drain_timeout` seconds, aborts whatever is
left, closes the application and exits 0. The parent forwards the signal to
its workers and exits 0 when they have.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
from typing import Awaitable, Callable, Protocol

import uvloop

from aperture.ingress.protocol import HttpConnection, ServerState
from aperture.ingress.tailnet import TailnetListener, parse_tailnet_listen

log = logging.getLogger("aperture.server")


class App(Protocol):
    """What the server runs: built inside each worker, after its loop exists."""

    async def handle(self, request, response) -> None: ...
    def on_connection(self, conn: HttpConnection) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...


AppFactory = Callable[[], Awaitable[App]]


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("listen address must be HOST:PORT, got %r" % listen)
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class SocketListener:
    """One socket bound before the worker starts (HOST:PORT)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._handle = None
        self._close = None

    async def start(self, open_, close) -> None:
        self._close = close
        self._handle = await open_(self.sock)

    def close(self) -> None:
        if self._handle is not None:
            self._close(self._handle)
            self._handle = None


#: the connection limit when the open-files limit is unlimited
DEFAULT_MAX_CONNECTIONS = 65536
#: file descriptors kept for what is not a client connection (the listening
#: socket, the capture store and journal, logs, connections to providers are
#: counted apart)
_RESERVED_FDS = 64


def fit_open_files(max_connections: int | None) -> int:
    """The connection limit: `max_connections`, or when it is None, what the
    open-files limit allows. The soft limit is raised to the hard one first.
    By default each client connection is given two descriptors, as each may
    hold a connection to a provider too. An explicit limit may go past that,
    up to one descriptor per connection (idle keep-alive connections hold
    one): a warning then says how many exchanges can reach a provider at
    once; past them a request is answered 503. Past one per connection the
    limit is lowered, with a warning."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
    room = max(1, (soft - _RESERVED_FDS) // 2)
    if max_connections is None:
        return room
    most = max(1, soft - _RESERVED_FDS)
    if most < max_connections:
        log.warning("the open-files limit (ulimit -n %d) allows %d client connections per worker, "
                    "fewer than --max-connections %d: past %d new connections are answered 503",
                    soft, most, max_connections, most)
        return most
    if room < max_connections:
        log.warning("--max-connections %d with the open-files limit (ulimit -n %d): when more "
                    "than %d exchanges reach providers at once, the rest are answered 503",
                    max_connections, soft, soft - _RESERVED_FDS - max_connections)
    return max_connections


def descriptor_budget() -> int | None:
    """Descriptors this worker may hold in client and provider connections
    together (None: unlimited). The reserve keeps room for the rest, and for
    accepting a connection only to answer it 503: a worker that ran out would
    have its pending connections reset at accept."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else max(2, soft - _RESERVED_FDS)


async def _serve_worker(app_factory: AppFactory, listener, *, drain_timeout: float,
                        max_head_bytes: int, keepalive_timeout: float, header_timeout: float,
                        body_timeout: float, max_connections: int,
                        ready: Callable[[tuple], None] | None) -> None:
    loop = asyncio.get_running_loop()
    app = await app_factory()
    await app.start()
    # What lives as long as the worker (modules, configuration, route tables)
    # is moved out of the cyclic collector's sight, and young collections run
    # less often: what a request allocates is freed by reference counting,
    # so frequent collections would only walk live objects again (about 3 %
    # of a worker's CPU at full load, measured).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    state = ServerState(app.handle, max_head_bytes=max_head_bytes,
                        keepalive_timeout=keepalive_timeout, header_timeout=header_timeout,
                        body_timeout=body_timeout, max_connections=max_connections,
                        on_connection=app.on_connection)
    state.refuse_bad_request = getattr(app, "refuse_bad_request", None)
    state.fd_budget = descriptor_budget()

    async def open_server(sock: socket.socket):
        # create_server listens again: with its default backlog of 100, a busy
        # worker would drop connections at the door.
        server = await loop.create_server(lambda: HttpConnection(state), sock=sock, backlog=4096)
        if ready is not None:
            ready(sock.getsockname())
        return server

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await listener.start(open_server, lambda server: server.close())
    await stop.wait()

    # Drain: stop accepting, close idle connections, let in-flight ones finish.
    listener.close()
    state.draining = True
    for conn in list(state.connections):
        conn.shutdown()
    deadline = loop.time() + drain_timeout
    while state.connections and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for conn in list(state.connections):
        if conn.transport is not None:
            conn.transport.abort()
    await app.close()


def run_worker(app_factory: AppFactory, listener, *, drain_timeout: float = 30.0,
               max_head_bytes: int = 64 * 1024, keepalive_timeout: float = 75.0,
               header_timeout: float = 30.0, body_timeout: float = 60.0,
               max_connections: int = 16384,
               ready: Callable[[tuple], None] | None = None) -> None:
    if isinstance(listener, socket.socket):
        listener = SocketListener(listener)
    uvloop.run(_serve_worker(app_factory, listener, drain_timeout=drain_timeout,
                             max_head_bytes=max_head_bytes, keepalive_timeout=keepalive_timeout,
                             header_timeout=header_timeout, body_timeout=body_timeout,
                             max_connections=max_connections, ready=ready))


def _announce(addr: tuple) -> None:
    host, port = addr[0], addr[1]
    if ":" in host:
        host = "[%s]" % host
    print("aperture: worker %d listening on http://%s:%d" % (os.getpid(), host, port),
          file=sys.stderr, flush=True)


def serve(app_factory: AppFactory, listen: str, *, workers: int = 1, drain_timeout: float = 30.0,
          max_head_bytes: int = 64 * 1024, keepalive_timeout: float = 75.0,
          header_timeout: float = 30.0, body_timeout: float = 60.0,
          max_connections: int | None = None,
          tailscaled_socket: str | None = None, tailnet_poll: float = 5.0) -> int:
    tailnet_port = parse_tailnet_listen(listen)
    options = dict(drain_timeout=drain_timeout, max_head_bytes=max_head_bytes,
                   keepalive_timeout=keepalive_timeout, header_timeout=header_timeout,
                   body_timeout=body_timeout, max_connections=fit_open_files(max_connections),
                   ready=_announce)
    if tailnet_port is not None:
        if tailscaled_socket is None:
            raise ValueError("listening on the tailnet needs tailscaled's socket")
        if workers <= 1:
            run_worker(app_factory, TailnetListener(tailscaled_socket, tailnet_port,
                                                    interval=tailnet_poll), **options)
            return 0
        return _run_workers(app_factory, workers,
                            lambda: TailnetListener(tailscaled_socket, tailnet_port,
                                                    reuse_port=True, interval=tailnet_poll),
                            options)
    host, port = parse_listen(listen)
    if workers <= 1:
        sock = bind_socket(host, port, reuse_port=False)
        run_worker(app_factory, sock, **options)
        return 0

    # Several workers: each binds the same port with SO_REUSEPORT. A probe
    # socket, bound first, fixes the port when 0 was asked for.
    probe = bind_socket(host, port, reuse_port=True)
    port = probe.getsockname()[1]
    try:
        return _run_workers(app_factory, workers,
                            lambda: bind_socket(host, port, reuse_port=True), options,
                            after_start=probe.close)
    finally:
        probe.close()


def _run_workers(app_factory: AppFactory, workers: int, make_listener: Callable, options: dict,
                 after_start: Callable[[], None] | None = None) -> int:
    """Fork the workers, each listening on what `make_listener()` gives it."""
    ctx = multiprocessing.get_context("fork")
    procs = []
    for _ in range(workers):
        proc = ctx.Process(target=_worker_main, args=(app_factory, make_listener, options),
                           daemon=False)
        proc.start()
        procs.append(proc)
    if after_start is not None:
        after_start()

    def forward(signum, _frame):
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for proc in procs:
        proc.join()
        if proc.exitcode not in (0, -signal.SIGTERM):
            status = 1
    return status


def _worker_main(app_factory: AppFactory, make_listener: Callable, options: dict) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM instead
    run_worker(app_factory, make_listener(), **options)
