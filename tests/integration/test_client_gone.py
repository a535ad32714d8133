"""A client that goes away, at every point of an exchange, by FIN or by RST.

nginx's rule (a client close while a response is pending aborts the upstream
request) is aperture's: within a second of the client's close the provider's
connection is closed (never reused), and the exchange is recorded as
`client_disconnected` with what was counted so far. Each test watches the one
simulator connection that serves its request.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from .conftest import launch_gateway, provider_config, serve_simulator, wait_for
from .test_capture import LOGIN, new_user, request_bytes, wait_records

CLOSES = ["fin", "rst"]


@pytest.fixture(scope="module")
def sim(loop_thread):
    with serve_simulator(loop_thread) as sim:
        yield sim


@pytest.fixture(scope="module")
def gw(tmp_path_factory, sim):
    gateway = launch_gateway(tmp_path_factory.mktemp("gone"), provider_config(sim.url),
                             identity="serve-headers")
    yield gateway
    gateway.stop()


def busy_upstream(sim):
    """The simulator's connection that is serving a request (there is one)."""
    busy = [c for c in sim.state.connections if c.busy]
    return busy[0] if len(busy) == 1 else None


def go_away(s: socket.socket, how: str) -> float:
    if how == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    else:
        s.shutdown(socket.SHUT_WR)  # FIN; the socket stays open to see aperture close
    return time.monotonic()


def closed_within(conn, since: float, limit: float = 1.0) -> float:
    wait_for(lambda: conn._lost, timeout=limit + 1)
    took = time.monotonic() - since
    assert took <= limit, "the upstream connection closed %.2fs after the client" % took
    return took


def check_record(gw, user: str, *, stream: bool) -> dict:
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "client_disconnected" and row["error"] == "client disconnected"
    assert row["stream"] is stream
    return row


def body(stream: bool, **extra) -> bytes:
    return json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 400, "stream": stream,
                       "messages": [{"role": "user", "content": "hello"}], **extra}).encode()


@pytest.mark.parametrize("how", CLOSES)
def test_while_sending_the_body(gw, sim, how):
    user = new_user("upload-" + how)
    payload = body(False, padding="x" * 200_000)
    head_and_start = request_bytes("/v1/messages", payload, {LOGIN: user})[:4096]
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(head_and_start)  # the model is known: the request is on its way upstream
        conn = wait_for(lambda: busy_upstream(sim))
        closed_within(conn, go_away(s, how))
    check_record(gw, user, stream=False)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("how", CLOSES)
def test_while_waiting_for_the_response_head(gw, sim, how, stream):
    user = new_user("head-" + how)
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(request_bytes("/v1/messages", body(stream), {LOGIN: user, "x-sim-latency": "30"}))
        conn = wait_for(lambda: busy_upstream(sim))
        closed_within(conn, go_away(s, how))
    check_record(gw, user, stream=False)  # no response head: not known as a stream


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("how", CLOSES)
def test_during_a_silent_stretch(gw, sim, how, stream):
    """The provider sent the head and a first part, then nothing (a long thinking pause)."""
    user = new_user("silent-" + how)
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(request_bytes("/v1/messages", body(stream), {LOGIN: user, "x-sim-error": "stall"}))
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        conn = wait_for(lambda: busy_upstream(sim))
        closed_within(conn, go_away(s, how))
    row = check_record(gw, user, stream=stream)
    if stream:
        assert row["input_tokens"] > 0  # message_start was counted before the client left


@pytest.mark.parametrize("how", CLOSES)
def test_mid_stream(gw, sim, how):
    user = new_user("mid-" + how)
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(request_bytes("/v1/messages", body(True), {
            LOGIN: user, "x-sim-tokens": "300", "x-sim-token-rate": "50"}))
        got = b""
        while got.count(b"content_block_delta") < 5:
            got += s.recv(65536)
        conn = wait_for(lambda: busy_upstream(sim))
        closed_within(conn, go_away(s, how))
    row = check_record(gw, user, stream=True)
    assert row["input_tokens"] > 0
