"""Limits on clients, through a real gateway: the connection limit and the
open-files limit (503s and a log line, never a crash), slow clients (408)."""

from __future__ import annotations

import socket
import time

from .conftest import launch_gateway, provider_config, raw_request
from .test_capture import read_response


def test_the_open_files_limit_caps_connections_with_503s(tmp_path, simulator):
    # 200 descriptors: (200 - 64) // 2 = 68 client connections.
    gw = launch_gateway(tmp_path, provider_config(simulator.url), "--max-connections", "500",
                        capture=False, open_files=200)
    try:
        assert ("the open-files limit (ulimit -n 200) allows 68 client connections per worker, "
                "fewer than --max-connections 500") in gw.log()
        held = [socket.create_connection(("127.0.0.1", gw.port), 5) for _ in range(68)]
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
