"""The upstream connection and pool over real loopback sockets, with each reader:
a tiny upstream parses each request (with h11, an independent peer) and
answers with the bytes the test chose."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import h11
import pytest

from aperture.errors import BadGateway
from aperture.exchange import Exchange
from aperture.upstream.connection import UpstreamConnection, UpstreamTimeout
from aperture.upstream.events import END, BodyChunk, ResponseHead
from aperture.upstream.http1 import UpstreamClosed
from aperture.upstream.pool import Pool

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
CLOSE = "close"  # an answer: close the connection without a word
HANG = "hang"  # an answer: say nothing


class Upstream:
    """Answers the n-th request with `answers[n]`: bytes, or a list of steps:
    bytes (written, then a short pause), CLOSE (close the connection), HANG
    (say nothing more). After its last answer it answers OK."""

    def __init__(self, answers) -> None:
        self.answers = list(answers)
        # (connection, method, target, headers, body)
        self.requests: list[tuple[int, bytes, bytes, list, bytes]] = []
        self.connections = 0
        self.server = None
        self.port = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer) -> None:
        index = self.connections
        self.connections += 1
        pending = b""
        try:
            while True:
                conn = h11.Connection(h11.SERVER)
                if pending:
                    conn.receive_data(pending)
                request = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        conn.receive_data(data)
                        if not data:
                            return
                    elif type(event) is h11.Request:
                        request = event
                    elif type(event) is h11.Data:
                        body += event.data
                    elif type(event) is h11.EndOfMessage:
                        break
                    else:  # ConnectionClosed
                        return
                pending = conn.trailing_data[0]
                self.requests.append((index, request.method, request.target,
                                      list(request.headers), body))
                answer = self.answers.pop(0) if self.answers else OK
                for step in answer if isinstance(answer, list) else [answer]:
                    if step == CLOSE:
                        return
                    if step == HANG:
                        await asyncio.sleep(30)
                        return
                    writer.write(step)
                    await writer.drain()
                    await asyncio.sleep(0.01)
        except (ConnectionError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    def origin(self) -> tuple[str, str, int]:
        return ("http", "127.0.0.1", self.port)


async def get(conn: UpstreamConnection, method: bytes = b"GET", body: bytes = b"",
              timeout: float = 5.0) -> tuple[ResponseHead, bytes]:
    conn.send_request(method, b"/v1/x?y=1", [(b"host", b"up")], len(body), body, True)
    await conn.drain()
    head = await conn.next_event(timeout)
    assert type(head) is ResponseHead
    data = b""
    while (event := await conn.next_event(timeout)) is not END:
        data += event.data
    return head, data


@pytest.fixture
def pool_of(reader_class):
    pools = []

    def make(**kw) -> Pool:
        pool = Pool(reader=reader_class, **kw)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


async def test_request_bytes_and_response_events(pool_of):
    async with Upstream([[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", b"\r\n5\r\nhel",
                          b"lo\r\n0\r\n\r\n"]]) as up:
        pool = pool_of()
        conn = await pool.acquire(*up.origin())
        conn.send_request(b"POST", b"/v1/messages", [(b"host", b"up"), (b"x-api-key", b"k")], None,
                          b'{"a":', False)
        conn.send_body([b"1}"])
        conn.send_end()
        head = await conn.next_event(5)
        assert head == ResponseHead(200, b"OK", [(b"transfer-encoding", b"chunked")])
        events = []
        while (event := await conn.next_event(5)) is not END:
            events.append(event)
        assert b"".join(e.data for e in events) == b"hello"
        assert all(type(e) is BodyChunk for e in events)
        assert up.requests == [(0, b"POST", b"/v1/messages",
                                [(b"host", b"up"), (b"x-api-key", b"k"), (b"transfer-encoding", b"chunked")],
                                b'{"a":1}')]
        assert conn.reusable


class Recording:
    """A transport that remembers each write."""

    def __init__(self, transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name):
        return getattr(self.transport, name)


async def test_head_and_body_leave_in_one_write(pool_of):
    body = b'{"model":"m","messages":[]}'
    async with Upstream([OK]) as up:
        conn = await pool_of().acquire(*up.origin())
        conn.transport = recorder = Recording(conn.transport)
        await get(conn, b"POST", body)
        writes = recorder.writes
    assert len(writes) == 1
    assert writes[0].startswith(b"POST /v1/x?y=1 HTTP/1.1\r\nhost: up\r\ncontent-length: %d\r\n\r\n"
                                % len(body))
    assert writes[0].endswith(body)


async def test_reused_only_after_a_complete_response(pool_of):
    async with Upstream([OK, OK, OK]) as up:
        pool = pool_of()
        first = await pool.acquire(*up.origin())
        assert (await get(first))[1] == b"hi"
        pool.release(first)
        second = await pool.acquire(*up.origin())
        assert second is first and second.reused and second.bytes_received == 0
        # a response not read to its end: the connection is not kept
        second.send_request(b"GET", b"/", [(b"host", b"up")], 0, b"", True)
        assert type(await second.next_event(5)) is ResponseHead
        pool.release(second)
        assert second.closed
        third = await pool.acquire(*up.origin())
        assert third is not first and not third.reused
        await get(third)
    assert up.connections == 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    OK + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # an answer to nothing
    [OK, b"X"],  # the same, arriving as the response is read
])
async def test_not_reused(pool_of, answer):
    async with Upstream([answer]) as up:
        pool = pool_of()
        conn = await pool.acquire(*up.origin())
        assert (await get(conn))[1] == b"hi"
        await asyncio.sleep(0.05)
        assert not conn.reusable
        pool.release(conn)
        assert conn.closed


async def test_bytes_arriving_while_idle_close_the_connection(pool_of):
    async with Upstream([[OK, b"", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nold"], OK]) as up:
        pool = pool_of()
        conn = await pool.acquire(*up.origin())
        await get(conn)
        pool.release(conn)  # idle now; the stray answer arrives 30 ms later
        await asyncio.sleep(0.1)
        assert conn.closed
        fresh = await pool.acquire(*up.origin())
        assert fresh is not conn
        assert (await get(fresh))[1] == b"hi"


async def test_close_delimited_body(pool_of):
    async with Upstream([[b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", b"the end",
                          CLOSE]]) as up:
        pool = pool_of()
        conn = await pool.acquire(*up.origin())
        head, body = await get(conn)  # the close is the body's end
        assert body == b"until the end"
        assert not conn.reusable
        pool.release(conn)
        assert conn.closed


async def test_close_before_the_head_of_a_pooled_connection(pool_of):
    async with Upstream([OK, [CLOSE]]) as up:
        pool = pool_of()
        conn = await pool.acquire(*up.origin())
        await get(conn)
        pool.release(conn)
        conn = await pool.acquire(*up.origin())
        assert conn.reused
        with pytest.raises(UpstreamClosed):
            await get(conn)
        assert conn.bytes_received == 0  # what the exchange's retry rule looks at


async def test_close_mid_body(pool_of):
    async with Upstream([[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", CLOSE]]) as up:
        conn = await pool_of().acquire(*up.origin())
        conn.send_request(b"GET", b"/", [(b"host", b"up")], 0, b"", True)
        assert type(await conn.next_event(5)) is ResponseHead
        assert (await conn.next_event(5)).data == b"abc"
        with pytest.raises(BadGateway, match="mid-response") as info:
            await conn.next_event(5)
        assert type(info.value) is BadGateway


async def test_first_byte_and_idle_timeouts(pool_of):
    async with Upstream([HANG, [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", HANG]]) as up:
        pool = pool_of()
        conn = await pool.acquire(*up.origin())
        conn.send_request(b"GET", b"/", [(b"host", b"up")], 0, b"", True)
        with pytest.raises(UpstreamTimeout):
            await conn.next_event(0.2)
        pool.discard(conn)
        conn = await pool.acquire(*up.origin())
        conn.send_request(b"GET", b"/", [(b"host", b"up")], 0, b"", True)
        assert type(await conn.next_event(5)) is ResponseHead
        assert (await conn.next_event(5)).data == b"abc"
        with pytest.raises(UpstreamTimeout):
            await conn.next_event(0.2)


async def test_a_slow_reader_pauses_the_upstream(pool_of):
    big = b"x" * (4 * 1024 * 1024)
    async with Upstream([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big]) as up:
        conn = await pool_of().acquire(*up.origin())
        conn.send_request(b"GET", b"/", [(b"host", b"up")], 0, b"", True)
        assert type(await conn.next_event(5)) is ResponseHead
        await asyncio.sleep(0.3)  # not reading
        assert not conn.transport.is_reading()
        assert conn.buffer.buffered < 1024 * 1024
        total = 0
        while (event := await conn.next_event(5)) is not END:
            total += len(event.data)
        assert total == len(big) and conn.reusable


# -- the exchange's retry rule ---------------------------------------------------


def exchange_on(pool: Pool) -> Exchange:
    """Just enough of an exchange to send a request (`_send_request`)."""
    ex = Exchange.__new__(Exchange)
    ex.gw = SimpleNamespace(pool=pool, settings=SimpleNamespace(first_byte_timeout=5.0))
    ex.upstream = None
    return ex


def provider_at(up: Upstream):
    return SimpleNamespace(id="up", scheme="http", host="127.0.0.1", port=up.port)


REQUEST = (b"POST", b"/v1/messages", [(b"host", b"up")], 2)


async def test_stale_pooled_connection_is_retried_once(pool_of):
    async with Upstream([OK, [CLOSE], OK]) as up:
        pool = pool_of()
        ex = exchange_on(pool)
        conn, head = await ex._send_request(provider_at(up), REQUEST, b"{}", True, None)
        assert head.status == 200 and conn.reused is False
        while await conn.next_event(5) is not END:
            pass
        pool.release(conn)
        conn, head = await ex._send_request(provider_at(up), REQUEST, b"{}", True, None)
        assert head.status == 200 and not conn.reused
    assert [r[0] for r in up.requests] == [0, 0, 1]  # the second request went again, on a new connection


async def test_no_retry_on_a_new_connection_or_after_bytes(pool_of):
    async with Upstream([[CLOSE]]) as up:
        with pytest.raises(UpstreamClosed):
            await exchange_on(pool_of())._send_request(provider_at(up), REQUEST, b"{}", True, None)
    assert len(up.requests) == 1
    async with Upstream([OK, [b"HTTP/1.1 2", CLOSE], OK]) as up:
        pool = pool_of()
        ex = exchange_on(pool)
        conn, _ = await ex._send_request(provider_at(up), REQUEST, b"{}", True, None)
        while await conn.next_event(5) is not END:
            pass
        pool.release(conn)
        with pytest.raises(BadGateway):
            await ex._send_request(provider_at(up), REQUEST, b"{}", True, None)
    assert len(up.requests) == 2  # some bytes came back: the request is not sent again
