"""Graceful stop: SIGTERM with a live stream, an abandoned one and an idle
connection. The live stream finishes, the process exits 0 as soon as it has
(not at the drain timeout), no new connection is accepted meanwhile, and every
exchange is in the store."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

from aperture.capture.query import CaptureReader

from .conftest import launch_gateway, provider_config, wait_for
from .test_capture import LOGIN, new_user, read_response, request_bytes


def stream_body() -> bytes:
    return json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 400, "stream": True,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()


def test_sigterm_waits_for_live_streams_only(tmp_path, simulator):
    gw = launch_gateway(tmp_path, provider_config(simulator.url), "--drain-timeout", "30",
                        identity="serve-headers")
    live_user, gone_user = new_user("live"), new_user("gone")
    live = {}

    def consume():
        with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
            s.sendall(request_bytes("/v1/messages", stream_body(), {
                LOGIN: live_user, "x-sim-tokens": "40", "x-sim-token-rate": "20"}))
            live["response"] = read_response(s)
            live["ended"] = time.monotonic()

    reader = threading.Thread(target=consume)
    reader.start()
    idle = socket.create_connection(("127.0.0.1", gw.port), 10)
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(request_bytes("/v1/messages", stream_body(), {LOGIN: gone_user, "x-sim-error": "stall"}))
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        s.shutdown(socket.SHUT_WR)  # this client has gone; its stream is abandoned
    time.sleep(0.3)  # the live stream is under way (about two seconds long)

    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        socket.create_connection(("127.0.0.1", gw.port), 1).close()
        accepted = True
    except OSError:
        accepted = False
    assert not accepted  # no new connection once stopping
    assert idle.recv(1) == b""  # the idle keep-alive connection was closed
    idle.close()
    assert gw.proc.wait(15) == 0
    exited = time.monotonic()
    reader.join(5)
    resp = live["response"]
    assert resp.status == 200 and resp.complete
    assert resp.body.count(b"event: content_block_delta") == 40
    assert exited - live["ended"] < 2  # as soon as the live stream was done, not at 30 s

    with CaptureReader(str(gw.data_dir)) as r:
        rows = {row["user"]: row for row in r.records(limit=None)}
    assert rows[live_user]["state"] == "complete"
    assert rows[gone_user]["state"] == "client_disconnected"
