"""Upstream faults, one scripted raw-socket upstream per case, each case run on
both response readers (llhttp and the h11 twin).

Every fault ends one way: a 502 or 504 in the caller's format while no byte
of the response has reached the client, or a cut (the client connection
closed before the response is complete) once some has. The record says so
(`upstream_error` for an error answer, `incomplete` for a cut,
`client_disconnected` when the client left first), the fault is over within
its timeout, and the connection that carried it is never used again: the next
request on the same provider opens a fresh connection (the upstream counts its
accepts and the requests each connection carried).
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from .conftest import launch_gateway
from .raw_upstream import OK_BODY, Conn, RawUpstream, reset
from .test_capture import LOGIN, new_user, read_response, request_bytes, wait_records

TIMEOUT = 1.0  # --first-byte-timeout and --idle-timeout of the gateway under test
SLACK = 2.0  # what "within its timeout" allows on a shared test machine

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
EVENT = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
         b'"type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],'
         b'"usage":{"input_tokens":25,"output_tokens":1}}}\n\n')
DELTA = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
         b'"delta":{"type":"text_delta","text":"more "}}\n\n')


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture(params=["llhttp", "h11"])
def reader_env(request):
    return {"APERTURE_PURE": "1" if request.param == "h11" else "0"}


@pytest.fixture
def faulty(tmp_path, reader_env):
    """start(scripts, scheme="http") -> (upstream, gateway): the first
    connections are served by `scripts`, later ones answer a small 200."""
    started = []

    def start(*scripts, scheme: str = "http"):
        up = RawUpstream(scripts)
        config = {"providers": {"up": {
            "baseurl": "%s://127.0.0.1:%d" % (scheme, up.port), "apikey": "sk-up",
            "authorization": "x-api-key", "models": ["claude-sonnet-4-6"],
            "compatibility": {"anthropic_messages": True}}},
            "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [
                {"role": "user"}, {"models": "**"}]}}]}
        gw = launch_gateway(tmp_path, config, "--first-byte-timeout", str(TIMEOUT),
                            "--idle-timeout", str(TIMEOUT), identity="serve-headers",
                            env=reader_env)
        started.append((up, gw))
        return up, gw

    yield start
    for up, gw in started:
        gw.stop()
        up.close()
        assert not up.errors, up.errors
        assert "Traceback" not in gw.log(), gw.log()


def ask(gw, user: str, *, stream: bool = False):
    """One request; (response as the client got it, seconds it took)."""
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.port), 15) as s:
        s.sendall(request_bytes("/v1/messages", body, {LOGIN: user}))
        resp = read_response(s)
        closed = s.recv(1) == b""  # the gateway closed the connection (Connection: close)
    assert closed
    return resp, time.monotonic() - t0


def record(gw, user: str) -> dict:
    [row] = wait_records(gw.data_dir, 1, user=user)
    return row


def assert_error_answer(resp, status: int, text: str) -> None:
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.complete
    err = resp.json()
    assert err["type"] == "error", err
    assert text in err["error"]["message"], err


def assert_fresh_connection_next(up: RawUpstream, gw) -> None:
    """The next request on the provider opens a new connection and succeeds;
    the faulty connection carried one request only."""
    user = new_user("next")
    resp, _ = ask(gw, user)
    assert resp.status == 200 and resp.body == OK_BODY
    assert up.accepts == 2
    assert up.requests_per_connection() == [1, 1]
    assert record(gw, user)["state"] == "complete"


def assert_gateway_closed(conn: Conn, within: float = SLACK) -> None:
    """The gateway closed the faulty connection (it is not kept for reuse)."""
    assert conn.closed_by_peer.wait(within) or conn.wait_closed(within)


# -- scripts: what the first connection does ------------------------------------------


def reset_before_head(conn: Conn) -> None:
    conn.read_request()
    reset(conn.sock)


def reset_after_head(conn: Conn) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n")
    time.sleep(0.2)
    reset(conn.sock)


def reset_mid_body(conn: Conn) -> None:
    conn.read_request()
    conn.send(SSE_HEAD + chunk(EVENT))
    time.sleep(0.3)
    reset(conn.sock)


def big_head(size: int) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + b"X-Filler: " + b"a" * size + b"\r\nContent-Length: 2\r\n\r\n{}")


def huge_head_in_one_read(conn: Conn) -> None:
    conn.read_request()
    conn.send(big_head(70_000))
    conn.serve_ok()


def huge_head_in_pieces(conn: Conn) -> None:
    conn.read_request()
    head = big_head(70_000)
    for i in range(0, len(head), 4096):
        if not conn.send(head[i:i + 4096]):
            return
        time.sleep(0.005)
    conn.serve_ok()


def bad_chunk_first(conn: Conn) -> None:
    conn.read_request()
    conn.send(SSE_HEAD + b"zz\r\n" + EVENT + b"\r\n")
    conn.serve_ok()


def bad_chunk_after_data(conn: Conn) -> None:
    conn.read_request()
    conn.send(SSE_HEAD + chunk(EVENT))
    time.sleep(0.2)
    conn.send(b"5\r\nabcdefgh\r\n")  # chunk data longer than its size: no CRLF where due
    conn.serve_ok()


def short_body_then_close(conn: Conn) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
              + OK_BODY[:40])
    time.sleep(0.2)
    conn.sock.shutdown(socket.SHUT_WR)  # FIN
    conn.wait_closed(10)


def stalled_body(conn: Conn) -> None:
    conn.read_request()
    conn.send(SSE_HEAD + chunk(EVENT))
    conn.wait_closed(30)  # silent until the gateway gives up


def endless_body(conn: Conn) -> None:
    conn.read_request()
    conn.send(SSE_HEAD + chunk(EVENT))
    while conn.send(chunk(DELTA * 10)):
        time.sleep(0.005)


def flood_of_1xx(conn: Conn) -> None:
    conn.read_request()
    while conn.send(b"HTTP/1.1 100 Continue\r\n\r\n" * 50):
        time.sleep(0.001)


def trickle_of_1xx(conn: Conn) -> None:
    conn.read_request()
    while conn.send(b"HTTP/1.1 102 Processing\r\n\r\n"):
        time.sleep(0.1)


def never_answer(conn: Conn) -> None:
    conn.read_request()
    conn.wait_closed(30)


# -- the cases ----------------------------------------------------------------------------


def test_reset_before_the_head_is_502(faulty):
    up, gw = faulty(reset_before_head)
    user = new_user("rst-before")
    resp, took = ask(gw, user)
    assert_error_answer(resp, 502, "upstream closed the connection without a response")
    assert took < SLACK
    row = record(gw, user)
    assert (row["state"], row["status"]) == ("upstream_error", 502)
    assert_fresh_connection_next(up, gw)


def test_reset_after_the_head_before_any_body_byte_is_502(faulty):
    """Nothing of the response reached the client yet: it still gets an
    answer it can read, not a bare close."""
    up, gw = faulty(reset_after_head)
    user = new_user("rst-head")
    resp, took = ask(gw, user)
    assert_error_answer(resp, 502, "upstream closed the connection mid-response")
    assert took < SLACK
    row = record(gw, user)
    assert (row["state"], row["status"]) == ("upstream_error", 502)
    assert_fresh_connection_next(up, gw)


def test_reset_mid_body_cuts_the_stream(faulty):
    up, gw = faulty(reset_mid_body)
    user = new_user("rst-mid")
    resp, took = ask(gw, user, stream=True)
    assert resp.status == 200 and resp.body == EVENT and not resp.complete
    assert took < SLACK
    row = record(gw, user)
    assert (row["state"], row["status"], row["input_tokens"]) == ("incomplete", 200, 25)
    assert row["error"] == "upstream closed the connection mid-response"
    assert_fresh_connection_next(up, gw)


@pytest.mark.parametrize("script", [huge_head_in_one_read, huge_head_in_pieces],
                         ids=["one-read", "pieces"])
def test_head_over_64k_is_502(faulty, script):
    up, gw = faulty(script)
    user = new_user("big-head")
    resp, took = ask(gw, user)
    assert_error_answer(resp, 502, "response head larger than 65536 bytes")
    assert took < SLACK
    assert record(gw, user)["state"] == "upstream_error"
    assert_gateway_closed(up.conns[0])
    assert_fresh_connection_next(up, gw)


def test_malformed_chunking_before_any_body_byte_is_502(faulty):
    up, gw = faulty(bad_chunk_first)
    user = new_user("chunk-first")
    resp, took = ask(gw, user, stream=True)
    assert_error_answer(resp, 502, "malformed response from upstream")
    assert took < SLACK
    assert record(gw, user)["state"] == "upstream_error"
    assert_gateway_closed(up.conns[0])
    assert_fresh_connection_next(up, gw)


def test_malformed_chunking_mid_body_cuts_the_stream(faulty):
    up, gw = faulty(bad_chunk_after_data)
    user = new_user("chunk-mid")
    resp, took = ask(gw, user, stream=True)
    assert resp.status == 200 and resp.body.startswith(EVENT) and not resp.complete
    assert took < SLACK
    row = record(gw, user)
    assert row["state"] == "incomplete" and row["error"].startswith("malformed response from upstream")
    assert_gateway_closed(up.conns[0])
    assert_fresh_connection_next(up, gw)


def test_content_length_longer_than_the_body_then_close_cuts(faulty):
    up, gw = faulty(short_body_then_close)
    user = new_user("short")
    resp, took = ask(gw, user)
    assert resp.status == 200 and resp.body == OK_BODY[:40] and not resp.complete
    assert took < SLACK
    row = record(gw, user)
    assert (row["state"], row["error"]) == ("incomplete", "upstream closed the connection mid-response")
    assert_fresh_connection_next(up, gw)


def test_stalled_body_hits_the_idle_timeout(faulty):
    up, gw = faulty(stalled_body)
    user = new_user("stall")
    resp, took = ask(gw, user, stream=True)
    assert resp.status == 200 and resp.body == EVENT and not resp.complete
    assert TIMEOUT <= took < TIMEOUT + SLACK
    row = record(gw, user)
    assert (row["state"], row["error"]) == ("incomplete", "upstream up sent nothing for 1s")
    assert_gateway_closed(up.conns[0])
    assert_fresh_connection_next(up, gw)


def test_endless_body_is_relayed_until_the_client_goes(faulty):
    """A body that keeps coming is a long answer, not a fault: no timeout
    ends it; the client's close does, and the upstream request with it."""
    up, gw = faulty(endless_body)
    user = new_user("endless")
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    with socket.create_connection(("127.0.0.1", gw.port), 15) as s:
        s.sendall(request_bytes("/v1/messages", body, {LOGIN: user}))
        t0 = time.monotonic()
        got = 0
        while time.monotonic() - t0 < 3 * TIMEOUT:  # longer than both timeouts
            data = s.recv(65536)
            assert data, "the gateway ended an endless body that kept coming"
            got += len(data)
        assert got > 100_000
        left = time.monotonic()
    assert up.conns[0].wait_closed(SLACK)
    assert time.monotonic() - left < SLACK
    row = record(gw, user)
    assert (row["state"], row["stream"], row["input_tokens"]) == ("client_disconnected", True, 25)
    assert_fresh_connection_next(up, gw)


def test_flood_of_1xx_heads_is_502(faulty):
    up, gw = faulty(flood_of_1xx)
    user = new_user("flood")
    resp, took = ask(gw, user)
    assert_error_answer(resp, 502, "more than 100 informational (1xx) heads")
    assert took < SLACK
    assert record(gw, user)["state"] == "upstream_error"
    assert_gateway_closed(up.conns[0])
    assert_fresh_connection_next(up, gw)


def test_trickle_of_1xx_heads_hits_the_first_byte_timeout(faulty):
    """1xx heads are not the response: they do not hold off the first-byte timeout."""
    up, gw = faulty(trickle_of_1xx)
    user = new_user("trickle")
    resp, took = ask(gw, user)
    assert_error_answer(resp, 504, "sent no response within 1s")
    assert TIMEOUT <= took < TIMEOUT + SLACK
    assert record(gw, user)["state"] == "upstream_error"
    assert_gateway_closed(up.conns[0])
    assert_fresh_connection_next(up, gw)


def test_accept_and_never_answer_is_504(faulty):
    up, gw = faulty(never_answer)
    user = new_user("silent")
    resp, took = ask(gw, user)
    assert_error_answer(resp, 504, "upstream up sent no response within 1s")
    assert TIMEOUT <= took < TIMEOUT + SLACK
    row = record(gw, user)
    assert (row["state"], row["status"]) == ("upstream_error", 504)
    assert_gateway_closed(up.conns[0])
    assert_fresh_connection_next(up, gw)


# -- TLS --------------------------------------------------------------------------------


def plain_http_to_a_client_hello(conn: Conn) -> None:
    conn.sock.settimeout(10)
    conn.sock.recv(65536)  # the ClientHello
    conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    conn.wait_closed(10)


def close_after_the_client_hello(conn: Conn) -> None:
    conn.sock.settimeout(10)
    conn.sock.recv(65536)
    conn.sock.shutdown(socket.SHUT_WR)
    conn.wait_closed(10)


@pytest.mark.parametrize("script", [plain_http_to_a_client_hello, close_after_the_client_hello],
                         ids=["plain-http", "closed"])
def test_tls_handshake_failure_is_502_naming_tls(faulty, script):
    up, gw = faulty(script, script, scheme="https")
    for n in (1, 2):  # a failed handshake leaves nothing to reuse: each request connects
        user = new_user("tls")
        resp, took = ask(gw, user)
        assert_error_answer(resp, 502, "TLS handshake with upstream 127.0.0.1:%d failed" % up.port)
        assert took < SLACK
        row = record(gw, user)
        assert (row["state"], row["status"]) == ("upstream_error", 502)
        assert up.accepts == n
