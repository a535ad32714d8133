"""Limits on clients, through a real gateway: the connection limit and the
open-files limit (503s and a log line, never a crash), slow clients (408)."""

from __future__ import annotations

import socket
import time

import asyncio

from .conftest import launch_gateway, provider_config, raw_request, start_handler_server
from .test_capacity import HEALTH, STREAM_REQUEST, HeldStreams, exchange_on_all, held_config
from .test_capture import read_response


def test_the_open_files_limit_caps_connections_with_503s(tmp_path, simulator):
    # 200 descriptors: (200 - 64) = 136 client connections at most, one each.
    gw = launch_gateway(tmp_path, provider_config(simulator.url), "--max-connections", "500",
                        capture=False, open_files=200)
    try:
        assert ("the open-files limit (ulimit -n 200) allows 136 client connections per worker, "
                "fewer than --max-connections 500") in gw.log()
        held = [socket.create_connection(("127.0.0.1", gw.port), 5) for _ in range(136)]
        # wait until the worker has accepted them all
        time.sleep(0.3)
        refused = [socket.create_connection(("127.0.0.1", gw.port), 5) for _ in range(5)]
        for s in refused:
            resp = read_response(s)
            assert resp.status == 503 and resp.body == b"too many connections\n"
            s.close()
        assert "new connections are answered 503 (1 so far)" in gw.log()
        for s in held:
            s.close()
        time.sleep(0.3)
        answer = raw_request(gw.port, b"GET /healthz HTTP/1.1\r\nHost: ai\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")  # room again, and still alive
        assert gw.proc.poll() is None and "Traceback" not in gw.log()
    finally:
        gw.stop()


def test_by_default_each_connection_is_given_two_descriptors(tmp_path, simulator):
    # 200 descriptors: (200 - 64) // 2 = 68 client connections.
    gw = launch_gateway(tmp_path, provider_config(simulator.url), capture=False, open_files=200)
    try:
        held = [socket.create_connection(("127.0.0.1", gw.port), 5) for _ in range(68)]
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", gw.port), 5) as s:
            resp = read_response(s)
            assert resp.status == 503 and resp.body == b"too many connections\n"
        for s in held:
            s.close()
    finally:
        gw.stop()


def test_streams_past_the_descriptors_left_are_answered_503(tmp_path, loop_thread):
    """An explicit --max-connections past two descriptors per connection: the
    exchanges that find no descriptor for their provider connection get a
    503 naming the open-files limit, the others stream, nothing crashes."""
    held = HeldStreams()

    async def make_event():
        return asyncio.Event()

    held.release = loop_thread.run(make_event())
    server, port = start_handler_server(loop_thread, held.handle)
    gw = launch_gateway(tmp_path, held_config(port), "--max-connections", "130", capture=False,
                        open_files=200)
    socks = []
    try:
        assert ("--max-connections 130 with the open-files limit (ulimit -n 200): when more than "
                "6 exchanges reach providers at once, the rest are answered 503") in gw.log()
        socks = [socket.create_connection(("127.0.0.1", gw.port), 5) for _ in range(130)]
        exchange_on_all(socks, HEALTH, b"ok\n")  # all 130 accepted
        for s in socks:
            s.sendall(STREAM_REQUEST)
        heads = [read_head(s) for s in socks]
        statuses = [int(h.split(b" ", 2)[1]) for h in heads]
        # 200 - 64 descriptors for connections, 130 of them clients': 6 streams
        assert statuses.count(200) == held.open == 6
        refused = [h for h, st in zip(heads, statuses) if st != 200]
        assert len(refused) == 124
        for h in refused:
            assert h.startswith(b"HTTP/1.1 503 ") and b"no file descriptor left" in h
        loop_thread.loop.call_soon_threadsafe(held.release.set)
        assert gw.proc.poll() is None and "Traceback" not in gw.log()
    finally:
        for s in socks:
            s.close()
        loop_thread.loop.call_soon_threadsafe(held.release.set)
        loop_thread.loop.call_soon_threadsafe(server.close)
        gw.stop()


def read_head(s: socket.socket) -> bytes:
    """The response head and what arrived with it (an error's whole body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "closed before the head"
        data += chunk
    time.sleep(0.01)
    s.setblocking(False)
    try:
        data += s.recv(65536)
    except BlockingIOError:
        pass
    s.setblocking(True)
    return data


def test_a_slow_request_head_gets_a_408(tmp_path, simulator):
    gw = launch_gateway(tmp_path, provider_config(simulator.url), "--header-timeout", "0.5",
                        capture=False)
    try:
        with socket.create_connection(("127.0.0.1", gw.port), 5) as s:
            started = time.monotonic()
            s.sendall(b"POST /v1/messages HTTP/1.1\r\n")
            time.sleep(0.25)
            s.sendall(b"X")  # bytes keep coming, one at a time: the head never completes
            resp = read_response(s)
            assert resp.status == 408 and b"request head not received within 0.5s" in resp.body
            assert 0.5 <= time.monotonic() - started < 2
    finally:
        gw.stop()
