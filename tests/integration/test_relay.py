"""Relay behaviour against a scripted upstream: bytes through untouched, each SSE
event forwarded while the upstream still holds the rest, back-pressure, client
disconnects, upstream failures, and the HTTP/1.1 manners of the client side."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest

from .conftest import dechunk, raw_request, start_handler_server

SSE_EVENTS = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":250,"cache_creation_input_tokens":7,'
    b'"cache_read_input_tokens":1200,"output_tokens":2}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n',
    b'event: ping\ndata: {"type": "ping"}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hello \xe2\x80\xa8 there"}}\n\n',
    b': keepalive comment\r\n\r\n',
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":'
    b'{"type":"tool_use","id":"toolu_1","name":"check_stock","input":{}}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":'
    b'{"type":"input_json_delta","partial_json":"{\\"sku\\": \\"X-9"}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":'
    b'{"type":"input_json_delta","partial_json":"1\\"}"}}\n\n',
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use",'
    b'"stop_sequence":null},"usage":{"output_tokens":61}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"       }\n\n',
]


class Script:
    """A scripted upstream: what each request gets is set by the test."""

    def __init__(self) -> None:
        self.release = None  # asyncio.Event, set from the test thread
        self.cancelled = threading.Event()
        self.requests: list[tuple[str, dict, bytes]] = []
        self.mode = "stream"
        self.sent = 0  # bytes of the endless body the upstream's socket took

    async def handle(self, req, resp):
        body = b""
        while chunk := await req.body.read():
            body += chunk
        self.requests.append((req.path, dict((k.decode(), v.decode()) for k, v in req.headers), body))
        try:
            if self.mode == "stream":
                resp.start(200, [(b"content-type", b"text/event-stream; charset=utf-8")], None)
                resp.write(SSE_EVENTS[0])
                await self.release.wait()
                # The rest in irregular pieces: splits inside events, lines and UTF-8 characters.
                rest = b"".join(SSE_EVENTS[1:])
                for i in range(0, len(rest), 37):
                    resp.write(rest[i:i + 37])
                    await resp.drain()
                    await asyncio.sleep(0)
                resp.end()
            elif self.mode == "endless":
                resp.start(200, [(b"content-type", b"text/event-stream")], None)
                piece = SSE_EVENTS[3] * 20
                while True:
                    resp.write(piece)
                    await resp.drain()
                    self.sent += len(piece)
                    await asyncio.sleep(0)  # let the loop's other work run
            elif self.mode == "cut":
                resp.start(200, [(b"content-type", b"text/event-stream")], None)
                resp.write(b"".join(SSE_EVENTS[:4]))
                await asyncio.sleep(0.05)
                req.conn.transport.abort()
            elif self.mode == "close-reused" and req.conn.user_data == "used":
                # A keep-alive connection the server drops as the next request
                # arrives, before answering it (the idle-close race).
                req.conn.transport.abort()
                return
            elif self.mode in ("json-cl", "close-reused"):
                req.conn.user_data = "used"
                body = json.dumps({"id": "msg_2", "type": "message", "role": "assistant",
                                   "content": [{"type": "text", "text": "hi"}],
                                   "usage": {"input_tokens": 5, "output_tokens": 1}}).encode()
                resp.send(200, [(b"content-type", b"application/json"), (b"connection", b"x-drop"),
                                (b"x-drop", b"1"), (b"request-id", b"req_x")], body)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
def scripted(loop_thread, gateway_factory):
    script = Script()

    async def make_event():
        return asyncio.Event()

    script.release = loop_thread.run(make_event())
    server, port = start_handler_server(loop_thread, script.handle)
    config = {"providers": {"up": {"baseurl": "http://127.0.0.1:%d/prefix" % port, "apikey": "sk-up",
                                   "authorization": "x-api-key", "models": ["claude-sonnet-4-6"],
                                   "compatibility": {"anthropic_messages": True}}},
              "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [{"role": "user"},
                                                                              {"models": "**"}]}}]}
    # Bodies captured up to 256 KiB, so that what the gateway holds for a
    # stream is its buffers, not its capture.
    gw = gateway_factory(config, "--idle-timeout", "2", "--capture-body-size", "256KiB")
    yield script, gw, loop_thread
    loop_thread.loop.call_soon_threadsafe(script.release.set)
    loop_thread.loop.call_soon_threadsafe(server.close)


BODY = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 10, "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


def post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: ai\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def read_head(sock) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_chunked(sock, initial: bytes) -> tuple[bytes, bool]:
    data = initial
    while True:
        body, complete = dechunk(data)
        if complete:
            return body, True
        chunk = sock.recv(65536)
        if not chunk:
            return body, False
        data += chunk


def test_sse_event_reaches_client_before_upstream_sends_the_rest(scripted):
    script, gw, lt = scripted
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(post(b"/v1/messages?beta=true", BODY, b"x-api-key: client-key\r\n"))
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")
        data = rest
        while SSE_EVENTS[0] not in dechunk(data)[0]:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
        # The first event is here while the upstream still holds everything else.
        assert dechunk(data)[0] == SSE_EVENTS[0]
        lt.loop.call_soon_threadsafe(script.release.set)
        body, complete = read_chunked(s, data)
    assert complete
    assert body == b"".join(SSE_EVENTS)  # byte for byte
    path, headers, sent = script.requests[-1]
    assert path == "/prefix/v1/messages"
    assert headers["x-api-key"] == "sk-up"
    assert sent == BODY


def test_client_disconnect_cancels_upstream(scripted):
    script, gw, _ = scripted
    script.mode = "endless"
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(post(b"/v1/messages", BODY))
        read_head(s)
        s.recv(1000)
    assert script.cancelled.wait(5), "upstream exchange was not cancelled"


def test_slow_client_applies_backpressure(scripted):
    """A client that stops reading makes the gateway stop reading the upstream:
    the upstream, which writes as fast as its socket takes bytes, comes to a
    stop, and the bytes it sent that the client has not read sit in socket
    buffers, not in the gateway's memory."""
    script, gw, _ = scripted
    script.mode = "endless"
    import psutil

    proc = psutil.Process(gw.proc.pid)
    rss0 = proc.memory_info().rss
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(post(b"/v1/messages", BODY))
        # Wait until the upstream has been stopped: nothing sent for 0.5 s.
        last, still_since, deadline = -1, time.monotonic(), time.monotonic() + 30
        while time.monotonic() < deadline:
            sent = script.sent
            if sent != last:
                last, still_since = sent, time.monotonic()
            elif time.monotonic() - still_since >= 0.5:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the upstream was never stopped: %d bytes sent" % script.sent)
        unread = script.sent  # the client has read nothing
        grown = proc.memory_info().rss - rss0
    # Kernel buffers on the way (the client's 4 KiB, the gateway's send and
    # receive buffers, the upstream's send buffer) hold at most a few MB on
    # loopback; the gateway itself holds its 64 KiB write buffer, a read of
    # the upstream and the 256 KiB captured.
    assert 0 < unread < 48 * 1024 * 1024
    assert grown < 2 * 1024 * 1024, (grown, unread)


def test_upstream_cut_mid_stream_closes_client_without_terminator(scripted):
    script, gw, _ = scripted
    script.mode = "cut"
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(post(b"/v1/messages", BODY))
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")
        body, complete = read_chunked(s, rest)
    assert not complete
    assert body == b"".join(SSE_EVENTS[:4])


def test_json_response_with_content_length_and_hop_headers(scripted):
    script, gw, _ = scripted
    script.mode = "json-cl"
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5,
                       "messages": [{"role": "user", "content": "x"}]}).encode()
    out = raw_request(gw.port, post(b"/v1/messages", body, b"Connection: close\r\n"))
    head, _, payload = out.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert b"content-length: %d" % len(payload) in lines
    assert b"x-drop: 1" not in lines  # named by the upstream's Connection header
    assert b"request-id: req_x" in lines
    assert json.loads(payload)["usage"]["input_tokens"] == 5


def test_pipelined_requests_through_gateway(scripted):
    script, gw, _ = scripted
    script.mode = "json-cl"
    body = json.dumps({"model": "claude-sonnet-4-6", "messages": []}).encode()
    req = post(b"/v1/messages", body)
    out = raw_request(gw.port, req + req + post(b"/v1/messages", body, b"Connection: close\r\n"))
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert len(script.requests) >= 3


def test_expect_continue(scripted):
    script, gw, _ = scripted
    script.mode = "json-cl"
    body = json.dumps({"model": "claude-sonnet-4-6", "messages": []}).encode()
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: ai\r\nContent-Length: %d\r\n"
                  b"Expect: 100-continue\r\n\r\n" % len(body))
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        head, _ = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")


def test_expect_continue_refused_when_too_large(scripted):
    _, gw, _ = scripted
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: ai\r\nContent-Length: 999999999\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        head, rest = read_head(s)
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Continue" not in head


def test_upstream_connection_refused_is_502(gateway_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    config = {"providers": {"down": {"baseurl": "http://127.0.0.1:%d" % dead, "models": ["m1"],
                                     "compatibility": {"anthropic_messages": True}}},
              "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [{"role": "user"},
                                                                              {"models": "**"}]}}]}
    gw = gateway_factory(config)
    body = json.dumps({"model": "m1", "messages": []}).encode()
    out = raw_request(gw.port, post(b"/v1/messages", body, b"Connection: close\r\n"))
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502")
    err = json.loads(payload)
    assert err["type"] == "error" and "cannot connect to upstream" in err["error"]["message"]


def test_upstream_first_byte_timeout_is_504(loop_thread, gateway_factory):
    async def silent(req, resp):
        while await req.body.read():
            pass
        await asyncio.sleep(30)

    server, port = start_handler_server(loop_thread, silent)
    config = {"providers": {"slow": {"baseurl": "http://127.0.0.1:%d" % port, "models": ["m1"]}},
              "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [{"role": "user"},
                                                                              {"models": "**"}]}}]}
    gw = gateway_factory(config, "--first-byte-timeout", "0.5")
    body = json.dumps({"model": "m1", "messages": []}).encode()
    out = raw_request(gw.port, post(b"/v1/chat/completions", body, b"Connection: close\r\n"))
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504")
    assert "sent no response within 0.5s" in json.loads(payload)["error"]["message"]
    loop_thread.loop.call_soon_threadsafe(server.close)


def test_stale_pooled_connection_is_retried_once(scripted):
    script, gw, _ = scripted
    script.mode = "close-reused"
    body = json.dumps({"model": "claude-sonnet-4-6", "messages": []}).encode()
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        for _ in range(3):
            s.sendall(post(b"/v1/messages", body))
            head, rest = read_head(s)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += s.recv(65536)
    # 3 answered requests, plus 2 that reached a dropped connection and were sent again
    assert len(script.requests) == 5
