"""Real processes over real sockets: the provider simulator runs in a thread of
the test process (so tests can look at what reached it), the gateway runs as
`aperture serve` in a subprocess, and clients are the official SDKs or raw
sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop

from aperture.ingress.protocol import HttpConnection, ServerState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on port %d" % port)


class LoopThread:
    """An event loop in a daemon thread, for in-process test servers."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.servers: list[tuple[asyncio.AbstractServer, ServerState]] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def shutdown():
            for server, state in self.servers:
                server.close()
                for conn in list(state.connections):
                    conn.transport.abort()
            await asyncio.sleep(0.05)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="session")
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.stop()


@dataclass
class SimHandle:
    sim: object
    port: int
    state: ServerState | None = None  # its connections, for tests that count them

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def open_connections(self) -> int:
        return len(self.state.connections)


def start_handler_server(loop_thread: LoopThread, handler, *, with_state: bool = False):
    """A server for `handler` in the loop thread: (server, port), or with
    `with_state` (server, port, its ServerState)."""
    async def start():
        state = ServerState(handler)
        server = await asyncio.get_running_loop().create_server(
            lambda: HttpConnection(state), "127.0.0.1", 0)
        loop_thread.servers.append((server, state))
        return server, server.sockets[0].getsockname()[1], state

    server, port, state = loop_thread.run(start())
    return (server, port, state) if with_state else (server, port)


@contextlib.contextmanager
def serve_simulator(loop_thread: LoopThread, **settings):
    """A simulator of its own (SimSettings `settings`) while the block runs."""
    from aperture.sim.server import SimSettings, Simulator

    sim = Simulator(SimSettings(**settings))
    server, port, state = start_handler_server(loop_thread, sim.handle, with_state=True)
    try:
        yield SimHandle(sim, port, state)
    finally:
        loop_thread.loop.call_soon_threadsafe(server.close)


@pytest.fixture(scope="session")
def simulator(loop_thread):
    with serve_simulator(loop_thread) as sim:
        yield sim


#: SDK clients made by a test, closed when it ends (a dropped client may
#: close its connection pool under calls still in flight)
_kept_clients: list = []


def keep(client):
    _kept_clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_kept_clients():
    yield
    while _kept_clients:
        _kept_clients.pop().close()


def provider_config(sim_url: str, **extra) -> dict:
    providers = {
        "anthropic": {"baseurl": sim_url, "apikey": "sk-ant-provider", "authorization": "x-api-key",
                      "models": ["claude-sonnet-4-6", "claude-haiku-4-5"],
                      "compatibility": {"anthropic_messages": True}},
        "openai": {"baseurl": sim_url, "apikey": "sk-openai-provider",
                   "models": ["gpt-5.4", "gpt-5.4-mini"],
                   "compatibility": {"openai_chat": True}},
    }
    providers.update(extra.pop("providers", {}))
    doc = {"providers": providers,
           "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [
               {"role": "admin"}, {"models": "**"}]}}]}
    doc.update(extra)
    return doc


@dataclass
class GatewayProcess:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    config_path: Path | None
    log_path: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def launch_gateway(tmp_path: Path, config: dict | str | None, *args: str,
                   identity: str | None = "dev:alice@example.com", capture: bool = True,
                   env: dict | None = None, open_files: int | None = None) -> GatewayProcess:
    """`aperture serve` in a subprocess; `open_files` sets its RLIMIT_NOFILE."""
    port = free_port()
    data_dir = tmp_path / "data"
    config_path = None
    cmd = [sys.executable, "-m", "aperture", "serve", "--listen", "127.0.0.1:%d" % port,
           "--log-level", "info"]
    if config is not None:
        config_path = tmp_path / "aperture.json"
        config_path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
        cmd += ["--config", str(config_path)]
    if identity is not None:
        cmd += ["--identity", identity]
    cmd += ["--data-dir", str(data_dir)] if capture else ["--no-capture"]
    cmd += list(args)
    log_path = tmp_path / ("gateway-%d.log" % port)
    with open(log_path, "wb") as log:
        limit = None if open_files is None else (
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log,
                                env={**os.environ, **(env or {})}, cwd=tmp_path, preexec_fn=limit)
    gw = GatewayProcess(proc, port, data_dir, config_path, log_path)
    try:
        wait_port(port, proc)
    except RuntimeError:
        raise RuntimeError("gateway did not start:\n" + gw.log()) from None
    return gw


@pytest.fixture
def gateway_factory(tmp_path):
    started: list[GatewayProcess] = []

    def start(config, *args, **kw) -> GatewayProcess:
        gw = launch_gateway(tmp_path, config, *args, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(gateway_factory, simulator):
    """aperture in front of the simulator, capture on, dev identity alice."""
    return gateway_factory(provider_config(simulator.url))


@dataclass
class Reply:
    """An HTTP answer as the test clients read it: headers lowercased."""
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def raw_request(port: int, data: bytes, *, read_until_close: bool = True, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(data)
        if not read_until_close:
            return s.recv(65536)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """(body, complete) of a chunked HTTP/1.1 body, however much of it arrived."""
    body = b""
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return body, False
        size = int(line, 16)
        if size == 0:
            return body, True
        if len(rest) < size + 2:
            return body + rest[:size], False
        body += rest[:size]
        data = rest[size + 2:]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll `predicate` until it returns something true (which is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1fs" % timeout)
        time.sleep(interval)
