"""Capacity of one worker, through a real gateway: 10,000 idle keep-alive
client connections and 2,000 open streams, with the memory each costs
measured (the worker's RSS) and bounded, and every stream captured.

The figures are printed (`pytest -s`) and quoted in the README. Bounds: 16
KiB per idle connection (DESIGN.md's budget), 64 KiB per open stream (the
streaming load profile's).
"""

from __future__ import annotations

import asyncio
import json
import resource
import selectors
import socket
import time

import psutil
import pytest

from .conftest import launch_gateway, provider_config, start_handler_server, wait_for
from .test_capture import read_records, read_response
from .test_relay import SSE_EVENTS

IDLE = 10_000
STREAMS = 2_000
#: descriptors this process and the gateway need: 10,000 client connections
#: and a few hundred for the rest
NEEDED = IDLE + 500


@pytest.fixture(scope="module", autouse=True)
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < NEEDED:
        pytest.fail("the capacity tests need %d open files; the hard limit is %d"
                    % (NEEDED, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss(gw) -> int:
    return psutil.Process(gw.proc.pid).memory_info().rss


def settle(gw, seconds: float = 0.5) -> int:
    """The worker's RSS once it has stopped changing for a moment."""
    last = rss(gw)
    for _ in range(20):
        time.sleep(seconds)
        now = rss(gw)
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: ai\r\n\r\n"


def warm_rss(gw, connections: int) -> int:
    """The worker's RSS, settled, after `connections` warm-up connections
    were answered and closed (buffers, caches and allocator arenas in use)."""
    warm = [socket.create_connection(("127.0.0.1", gw.port), 10) for _ in range(connections)]
    exchange_on_all(warm, HEALTH, b"ok\n")
    for s in warm:
        s.close()
    return settle(gw)


def exchange_on_all(socks: list[socket.socket], request: bytes, until: bytes) -> None:
    """Send `request` on every socket, then read on each until `until` is in."""
    for s in socks:
        s.sendall(request)
    pending = {s: b"" for s in socks}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                s = key.fileobj
                data = s.recv(65536)
                assert data, "the gateway closed a connection"
                pending[s] += data
                if until in pending[s]:
                    del pending[s]
                    sel.unregister(s)
    assert not pending, "%d connections got no answer" % len(pending)


def test_ten_thousand_idle_keepalive_connections(tmp_path, simulator):
    # One descriptor per connection: these connections stay idle.
    gw = launch_gateway(tmp_path, provider_config(simulator.url), "--max-connections", str(IDLE + 10))
    socks: list[socket.socket] = []
    try:
        before = warm_rss(gw, 200)
        for _ in range(IDLE):
            s = socket.create_connection(("127.0.0.1", gw.port), 10)
            socks.append(s)
        exchange_on_all(socks, HEALTH, b"ok\n")  # each one answered, then idle
        after = settle(gw)
        per_conn = (after - before) / IDLE
        print("\n%d idle keep-alive connections: %.1f KiB each (RSS %.1f -> %.1f MiB)"
              % (IDLE, per_conn / 1024, before / 2**20, after / 2**20))
        assert per_conn < 16 * 1024
        # Every one of them is still usable, and the gateway answers others.
        exchange_on_all(socks[:: IDLE // 100], HEALTH, b"ok\n")
        with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: ai\r\nConnection: close\r\n\r\n")
            assert read_response(s).status == 200
    finally:
        for s in socks:
            s.close()
        assert gw.proc.poll() is None, gw.log()
        gw.stop()
    assert "Traceback" not in gw.log()


class HeldStreams:
    """An upstream that opens every stream with its first event and holds the
    rest until released."""

    def __init__(self) -> None:
        self.release: asyncio.Event | None = None
        self.open = 0

    async def handle(self, req, resp):
        while await req.body.read():
            pass
        resp.start(200, [(b"content-type", b"text/event-stream")], None)
        resp.write(SSE_EVENTS[0])
        self.open += 1
        await self.release.wait()
        resp.write(b"".join(SSE_EVENTS[1:]))
        resp.end()


def held_config(port: int) -> dict:
    return {"providers": {"up": {"baseurl": "http://127.0.0.1:%d" % port, "apikey": "sk-up",
                                 "authorization": "x-api-key", "models": ["claude-sonnet-4-6"],
                                 "compatibility": {"anthropic_messages": True}}},
            "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [
                {"role": "user"}, {"models": "**"}]}}]}


_BODY = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 10, "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM_REQUEST = (b"POST /v1/messages HTTP/1.1\r\nHost: ai\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(_BODY) + _BODY)


def test_two_thousand_open_streams(tmp_path, loop_thread):
    held = HeldStreams()

    async def make_event():
        return asyncio.Event()

    held.release = loop_thread.run(make_event())
    server, port = start_handler_server(loop_thread, held.handle)
    gw = launch_gateway(tmp_path, held_config(port))
    socks: list[socket.socket] = []
    try:
        before = warm_rss(gw, 50)
        for _ in range(STREAMS):
            socks.append(socket.create_connection(("127.0.0.1", gw.port), 10))
        exchange_on_all(socks, STREAM_REQUEST, b"message_start")  # every stream open, held
        assert held.open == STREAMS
        after = settle(gw)
        per_stream = (after - before) / STREAMS
        print("\n%d open streams: %.1f KiB each (RSS %.1f -> %.1f MiB)"
              % (STREAMS, per_stream / 1024, before / 2**20, after / 2**20))
        assert per_stream < 64 * 1024
        loop_thread.loop.call_soon_threadsafe(held.release.set)
        exchange_on_all(socks, b"", b"0\r\n\r\n")  # every stream ends
    finally:
        for s in socks:
            s.close()
        loop_thread.loop.call_soon_threadsafe(held.release.set)
        loop_thread.loop.call_soon_threadsafe(server.close)
        assert gw.proc.poll() is None, gw.log()
        assert gw.stop() == 0
    rows = read_records(gw.data_dir)
    assert len(rows) == STREAMS
    assert {r["state"] for r in rows} == {"complete"}
    assert sum(r["output_tokens"] for r in rows) == 61 * STREAMS
    assert "Traceback" not in gw.log()
