"""The client-side HTTP protocol, driven without sockets (a mock transport)."""

from __future__ import annotations

import asyncio

import pytest

from aperture.errors import GatewayError
from aperture.ingress.protocol import HttpConnection, ServerState


class MockTransport(asyncio.Transport):
    def __init__(self, peer=("127.0.0.1", 50000)) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.peer = peer

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def write(self, data):
        assert not self.closed, "write after close"
        self.buffer += data

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = self.closed = True

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


async def echo(req, resp):
    """Echoes method, path, query and body; `/slow` waits for a release."""
    body = b""
    while chunk := await req.body.read():
        body += chunk
    if req.path == "/slow":
        await req.conn.user_data.wait()
    text = b"%s %s %s %s" % (req.method.encode(), req.path.encode(), req.query.encode(), body)
    resp.send(200, [(b"content-type", b"text/plain")], text)


@pytest.fixture
def make_conn():
    conns = []

    def make(handler=echo, **kw):
        state = ServerState(handler, **kw)
        conn = HttpConnection(state)
        transport = MockTransport()
        conn.connection_made(transport)
        conn.user_data = asyncio.Event()
        conns.append(conn)
        return conn, transport

    yield make
    for conn in conns:
        if not conn._lost:
            conn.connection_lost(None)


async def settle():
    for _ in range(10):
        await asyncio.sleep(0)


def responses(raw: bytes) -> list[tuple[int, dict, bytes]]:
    """Split raw HTTP/1.1 responses (content-length framed or chunked)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b": ")
            headers[k.decode().lower()] = v.decode()
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, raw = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                chunk, rest = rest[:size], rest[size + 2:]
                if size == 0:
                    break
                body += chunk
            raw = rest
        else:
            body, raw = rest, b""
        out.append((status, headers, body))
    return out


async def test_simple_get_keeps_alive(make_conn):
    conn, t = make_conn()
    conn.data_received(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    [(status, headers, body)] = responses(t.take())
    assert status == 200 and body == b"GET /a x=1 "
    assert "connection" not in headers
    assert not t.closed


async def test_content_length_body_split_across_reads(make_conn):
    conn, t = make_conn()
    for piece in (b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Le", b"ngth: 5\r\n\r\nhe", b"llo"):
        conn.data_received(piece)
        await settle()
    [(status, _, body)] = responses(t.take())
    assert body == b"POST /p  hello"


async def test_chunked_request_body(make_conn):
    conn, t = make_conn()
    conn.data_received(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    await settle()
    [(_, _, body)] = responses(t.take())
    assert body == b"POST /c  abcde"


async def test_pipelined_requests_answered_in_order(make_conn):
    conn, t = make_conn()
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
                       b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n"
                       b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert t.take() == b""  # the first is still running; the others wait behind it
    assert not t.reading  # and no more requests are read meanwhile
    conn.user_data.set()
    await settle()
    got = [body for _, _, body in responses(t.take())]
    assert got == [b"GET /slow  ", b"GET /second  ", b"GET /third  "]
    assert t.reading


async def test_expect_continue_answered_by_handler_only(make_conn):
    async def handler(req, resp):
        await req.conn.user_data.wait()
        req.send_continue()
        body = await req.body.read()
        resp.send(200, [], body)

    conn, t = make_conn(handler)
    conn.data_received(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    await settle()
    assert t.take() == b""  # not before the request may proceed
    conn.user_data.set()
    await settle()
    assert t.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.data_received(b"ok")
    await settle()
    [(status, _, body)] = responses(t.take())
    assert (status, body) == (200, b"ok")


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 400),
])
async def test_bad_input_rejected_and_closed(make_conn, raw, status):
    calls = []

    async def handler(req, resp):
        calls.append(req)
        resp.send(200, [], b"")

    conn, t = make_conn(handler)
    conn.data_received(raw)
    await settle()
    out = t.take()
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
    assert t.closed
    assert not calls  # nothing reached the application


async def test_head_size_limit_counts_across_reads(make_conn):
    conn, t = make_conn(max_head_bytes=1024)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n")
    for _ in range(40):
        if t.closed:
            break
        conn.data_received(b"X-A: " + b"b" * 50 + b"\r\n")
    await settle()
    assert t.take().startswith(b"HTTP/1.1 431 ")


async def test_connection_close_request_closes_after_response(make_conn):
    conn, t = make_conn()
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    await settle()
    [(_, headers, _)] = responses(t.take())
    assert headers["connection"] == "close"
    assert t.closed


async def test_http10_without_keepalive_closes(make_conn):
    conn, t = make_conn()
    conn.data_received(b"GET / HTTP/1.0\r\n\r\n")
    await settle()
    assert t.take().startswith(b"HTTP/1.1 200 ")
    assert t.closed


async def test_client_disconnect_cancels_running_exchange(make_conn):
    seen = []

    async def handler(req, resp):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    conn, t = make_conn(handler)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    conn.connection_lost(None)
    await settle()
    assert seen == ["cancelled"]


async def test_body_backpressure_pauses_reading(make_conn):
    async def handler(req, resp):
        await req.conn.user_data.wait()
        total = 0
        while chunk := await req.body.read():
            total += len(chunk)
        resp.send(200, [], b"%d" % total)

    conn, t = make_conn(handler)
    conn.data_received(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n")
    for _ in range(10):
        conn.data_received(b"x" * 50000)
    await settle()
    assert not t.reading  # 500 kB buffered and nobody reading: stop reading the socket
    conn.user_data.set()
    await settle()
    assert t.reading
    for _ in range(10):
        conn.data_received(b"x" * 50000)
    await settle()
    [(_, _, body)] = responses(t.take())
    assert body == b"1000000"


async def test_unfinished_response_closes_connection(make_conn):
    async def handler(req, resp):
        resp.start(200, [], None)
        resp.write(b"partial")

    conn, t = make_conn(handler)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert t.aborted


async def test_chunked_response_framing(make_conn):
    async def handler(req, resp):
        resp.start(200, [(b"content-type", b"text/event-stream")], None)
        resp.write(b"data: 1\n\n")
        resp.write(b"data: 2\n\n")
        resp.end()

    conn, t = make_conn(handler)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    raw = t.take()
    assert b"transfer-encoding: chunked" in raw
    [(status, _, body)] = responses(raw)
    assert body == b"data: 1\n\ndata: 2\n\n"


async def held_echo(req, resp):
    """Like echo, but the connection's writes are held from the start, as a
    capture sink holds them for the last bytes of a response."""
    req.conn.hold()
    await echo(req, resp)


async def test_held_writes_go_out_in_order_on_release(make_conn):
    conn, t = make_conn(held_echo)
    conn.data_received(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
                       b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert t.take() == b""  # both answered, neither written yet
    conn.release()
    assert [body for _, _, body in responses(t.take())] == [b"GET /first  ", b"GET /second  "]


async def test_close_waits_for_held_writes(make_conn):
    conn, t = make_conn(held_echo)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    await settle()
    assert not t.closed and t.take() == b""
    conn.release()
    [(status, headers, _)] = responses(t.take())
    assert status == 200 and headers["connection"] == "close"
    assert t.closed


async def test_release_after_disconnect_writes_nothing(make_conn):
    conn, t = make_conn(held_echo)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    conn.connection_lost(None)
    conn.release()
    assert t.take() == b""


async def answering(req, resp):
    """Reads the body; a body that fails is answered with the error's status."""
    body = b""
    try:
        while chunk := await req.body.read():
            body += chunk
    except GatewayError as exc:
        resp.keep_alive = False
        resp.send(exc.status, [(b"content-type", b"text/plain")], exc.message.encode())
        return
    resp.send(200, [(b"content-type", b"text/plain")], b"got " + body)


async def test_http10_with_transfer_encoding_is_answered_then_closed(make_conn):
    """RFC 9112 §6.1: what follows such a request is not parsed as a request."""
    calls = []

    async def handler(req, resp):
        calls.append(req.path)
        await answering(req, resp)

    conn, t = make_conn(handler)
    conn.data_received(b"POST /first HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n0\r\n\r\n"
                       b"POST /smuggled HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    await settle()
    [(status, headers, body)] = responses(t.take())
    assert (status, headers["connection"], body) == (200, "close", b"got abc")
    assert calls == ["/first"] and t.closed


@pytest.mark.parametrize("chunked, problem", [
    (b"fffffffffffffffffff\r\n", "Chunk size overflow"),
    (b"-5\r\nhello\r\n", "Invalid character in chunk size"),
    (b"0x5\r\nhello\r\n", "Invalid character in chunk size"),
    (b'5;a="x\r\nhello\r\n', "Invalid character in chunk extensions quoted value"),
    (b"5\nhello\n0\n\n", "Missing expected CR after chunk size"),
    (b"5\r\nhelloXX0\r\n\r\n", "Expected LF after chunk data"),
])
async def test_malformed_chunked_body_is_a_400_naming_the_problem(make_conn, chunked, problem):
    conn, t = make_conn(answering)
    conn.data_received(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
                       + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    [(status, headers, body)] = responses(t.take())
    assert status == 400 and body == b"malformed request body: " + problem.encode()
    assert headers["connection"] == "close" and t.closed


async def test_a_request_head_must_arrive_within_the_header_timeout(make_conn):
    conn, t = make_conn(header_timeout=0.05)
    conn.data_received(b"GET / HTTP/1.1\r\n")
    for _ in range(4):  # bytes keep coming, but the head never completes in time
        await asyncio.sleep(0.02)
        conn.data_received(b"X")
    await asyncio.sleep(0.05)
    out = t.take()
    assert out.startswith(b"HTTP/1.1 408 ") and b"request head not received within 0.05s" in out
    assert t.closed


async def test_a_stalled_request_body_is_a_408(make_conn):
    conn, t = make_conn(answering, body_timeout=0.05)
    conn.data_received(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    await asyncio.sleep(0.03)
    conn.data_received(b"def")  # progress: the timeout starts again
    await asyncio.sleep(0.03)
    assert t.take() == b""
    await asyncio.sleep(0.05)
    [(status, headers, body)] = responses(t.take())
    assert (status, body) == (408, b"request body stalled: no data for 0.05s")
    assert t.closed


async def test_an_idle_keep_alive_connection_is_closed(make_conn):
    conn, t = make_conn(keepalive_timeout=0.05)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert responses(t.take())[0][0] == 200 and not t.closed
    await asyncio.sleep(0.08)
    assert t.closed


async def test_a_client_close_cancels_the_running_exchange(make_conn):
    """FIN (eof_received) closes the transport like a reset: nginx's rule."""
    seen = []

    async def handler(req, resp):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    conn, t = make_conn(handler)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert conn.eof_received() is None  # the transport closes
    conn.connection_lost(None)
    await settle()
    assert seen == ["cancelled"]


async def test_connections_past_the_limit_get_a_503(make_conn):
    first, t1 = make_conn(max_connections=1)
    state = first.state
    second = HttpConnection(state)
    t2 = MockTransport()
    second.connection_made(t2)
    out = t2.take()
    assert out.startswith(b"HTTP/1.1 503 ") and b"connection: close" in out and t2.closed
    second.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # never parsed
    await settle()
    assert t2.take() == b"" and state.refused == 1 and len(state.connections) == 1
