"""One HTTP/1.1 client connection to a provider.

Theory of operation
-------------------
Requests go out as bytes (http1.encode_request): the head and the body bytes
in hand leave in one write (one segment, one wake-up of the upstream, for a
request whose body is all here). Responses are read by the reader chosen in
reader.py (llhttp, or the h11 twin), which turns bytes into aperture's events
(events.py) and holds the upstream to the rules of http1.py.

Until the response head, the protocol object only collects received bytes,
in a `ReadBuffer` that pauses the transport when the exchange reads slower
than the upstream sends; the exchange pulls events with `next_event`, which
feeds the reader one received chunk at a time. The body is then relayed
(`relay`) without waking the exchange per chunk: each read is fed to the
reader from `data_received` and its chunks handed straight to the exchange's
callback (which meters, captures and writes to the client), and the exchange
waits once, for the end. When the callback says the client's buffer is full,
reading stops until the client drains (a slow client slows the upstream
read); a silent upstream is noticed by one timer that looks at the time of
the last read, re-armed only when it fires.

A cycle: `send_request` (the reader learns the method), `send_body`s and
`send_end` for a body that streams, `next_event` until `END`, then the pool
either releases the connection (`reusable`: the response ended cleanly with
nothing after it; `reset` starts the next cycle) or discards it. Between
cycles the connection is idle, and a byte that arrives then was not asked
for: the connection is closed at once, so that a stray byte is never read as
the next response.

Reader errors are aperture's BadGateway already; a read timeout becomes
`UpstreamTimeout` (STYLE.md, habit 7).
"""

from __future__ import annotations

import asyncio
from collections import deque

from aperture.errors import BadGateway
from aperture.flow import ConnectionLost, ReadBuffer, ReadTimeout, WriteFlow
from aperture.upstream.events import END
from aperture.upstream.http1 import CRLF, LAST_CHUNK, UpstreamClosed, chunk_head, encode_request
from aperture.upstream.reader import ResponseReader

__all__ = ["UpstreamClosed", "UpstreamConnection", "UpstreamTimeout"]


class UpstreamTimeout(Exception):
    """The upstream did not answer within the configured timeout."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("origin", "reader", "transport", "write_flow", "buffer", "closed", "idle",
                 "idle_since", "reused", "bytes_received", "_events", "_chunked", "_sent",
                 "_loop", "_sink", "_done", "_last_read", "_held_back", "_idle_timer", "on_lost")

    def __init__(self, origin: tuple[str, str, int], loop: asyncio.AbstractEventLoop,
                 reader=ResponseReader) -> None:
        self.origin = origin
        self.reader = reader()
        self.transport: asyncio.Transport | None = None
        self.write_flow = WriteFlow(loop)
        self.buffer = ReadBuffer(loop, self._pause, self._resume)
        self.closed = False
        self.idle = True  # between cycles: nothing was asked
        self.idle_since = 0.0
        self.reused = False
        self.bytes_received = 0  # in the current request/response cycle
        self._events: deque = deque()  # read but not yet handed over
        self._chunked = False
        self._sent = False  # the whole request was written
        self._loop = loop
        self._sink = None  # relay(): the callback the body's chunks go to
        self._done: asyncio.Future | None = None  # relay(): set at the end
        self._last_read = 0.0
        self._held_back = False  # relay(): reading paused for the client
        self._idle_timer: asyncio.TimerHandle | None = None
        self.on_lost = None  # the pool's count of open connections

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.set_write_buffer_limits(256 * 1024, 64 * 1024)

    def data_received(self, data: bytes) -> None:
        if self.idle:  # an answer to nothing (http1.py, rule 8)
            self.abort()
            return
        self.bytes_received += len(data)
        if self._sink is None:
            self.buffer.feed(data)
            return
        self._last_read = self._loop.time()
        reader = self.reader
        try:
            events = reader.feed(data)
        except BadGateway as exc:
            self._finish_relay(exc)
            return
        self._hand_over(events)
        if reader.error is not None:  # found after the body bytes it returned
            self._finish_relay(reader.error)

    def eof_received(self) -> None:
        if self._sink is not None:
            self._relay_eof()
        else:
            self.buffer.feed_eof()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.on_lost is not None:
            self.on_lost(self)
            self.on_lost = None
        if self._sink is not None:
            self._relay_eof()
        else:
            self.buffer.feed_eof()
        self.write_flow.lost()

    def pause_writing(self) -> None:
        self.write_flow.pause()

    def resume_writing(self) -> None:
        self.write_flow.resume()

    def _pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- the exchange's side --------------------------------------------------

    def send_request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                     length: int | None, body: bytes = b"", end: bool = False) -> None:
        """Start a cycle: the request head and the body bytes in hand, in one
        write. `length` is the body's length, or None for a chunked body
        (`end`: `body` is all of it). `headers` hold no framing header."""
        if self.closed:
            raise UpstreamClosed("upstream connection closed while sending the request")
        data = encode_request(method, target, headers, length, body, end)
        self.idle = False
        self.reader.start(method)
        self._chunked = length is None
        self._sent = end
        self.transport.write(data)  # type: ignore[union-attr]

    def send_body(self, parts: list[bytes]) -> None:
        """Body bytes, in one write of the pieces as they are (one chunk for
        a chunked body)."""
        if self.closed:
            raise UpstreamClosed("upstream connection closed while sending the request")
        if self._chunked:
            size = sum(map(len, parts))
            if not size:
                return
            parts = [chunk_head(size), *parts, CRLF]
        self.transport.writelines(parts)  # type: ignore[union-attr]

    def send_end(self) -> None:
        if self.closed:
            raise UpstreamClosed("upstream connection closed while sending the request")
        self._sent = True
        if self._chunked:
            self.transport.write(LAST_CHUNK)  # type: ignore[union-attr]

    async def drain(self) -> None:
        try:
            await self.write_flow.drain()
        except ConnectionLost:
            raise UpstreamClosed("upstream connection closed while sending the request") from None

    async def next_event(self, timeout: float | None):
        """The next event of the response: a `ResponseHead`, `BodyChunk`s,
        `END`. Raises BadGateway (`UpstreamClosed` before the head) or
        `UpstreamTimeout` when nothing arrives for `timeout` seconds."""
        events = self._events
        if events:
            return events.popleft()
        reader = self.reader
        # One deadline for the whole wait, not one per read: 1xx heads or a
        # head dribbled a byte at a time do not hold the timeout off.
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            if reader.error is not None:  # found after the events already handed over
                raise reader.error
            try:
                data = await self.buffer.read(
                    None if deadline is None else max(0.0, deadline - self._loop.time()))
            except ReadTimeout:
                raise UpstreamTimeout() from None
            if data:
                new = reader.feed(data)
            else:
                new = reader.feed_eof()
                if not new:  # the response had ended already; nothing more will come
                    raise UpstreamClosed("upstream closed the connection")
            if new:
                if len(new) > 1:
                    events.extend(new[1:])
                return new[0]

    async def relay(self, sink, idle: float) -> None:
        """Hand the rest of the response's body to `sink(data)` as it
        arrives, until its end; return then. `sink` returns True when its
        consumer can take no more for now: reading then stops until
        `resume()`. Raises BadGateway when the body ends early or is
        malformed, `UpstreamTimeout` when nothing arrives for `idle` seconds
        (time with reading stopped for the consumer does not count)."""
        # What arrived with the head or before this call, first.
        full = False
        events = self._events
        while events:
            event = events.popleft()
            if event is END:
                return
            full = sink(event.data)
        reader = self.reader
        while (data := self.buffer.read_nowait()) is not None:
            if reader.error is not None:
                raise reader.error
            events = reader.feed(data) if data else reader.feed_eof()
            for event in events:
                if event is END:
                    return
                full = sink(event.data)
            if not data:
                raise BadGateway("upstream closed the connection mid-response")
        if reader.error is not None:
            raise reader.error
        # Then straight from data_received, until the end.
        loop = self._loop
        if full:
            self._held_back = True
            self._pause()
        self._sink = sink
        done = self._done = loop.create_future()
        self._last_read = loop.time()
        self._idle_timer = loop.call_later(idle, self._check_idle, idle)
        try:
            await done
        finally:
            self._sink = None
            self._done = None
            timer = self._idle_timer
            if timer is not None:
                self._idle_timer = None
                timer.cancel()
            if self._held_back:
                self._held_back = False
                self._resume()

    def resume(self) -> None:
        """The relay's consumer can take more: read again."""
        if self._held_back:
            self._held_back = False
            self._last_read = self._loop.time()
            self._resume()

    def _hand_over(self, events: list) -> None:
        sink = self._sink
        for event in events:
            if event is END:
                self._finish_relay(None)
                return
            if sink(event.data) and not self._held_back:
                self._held_back = True
                self._pause()

    def _relay_eof(self) -> None:
        try:
            events = self.reader.feed_eof()
        except BadGateway as exc:
            self._finish_relay(exc)
            return
        self._hand_over(events)
        if self._done is not None and not self._done.done():
            self._finish_relay(self.reader.error
                               or BadGateway("upstream closed the connection mid-response"))

    def _finish_relay(self, error: BaseException | None) -> None:
        done = self._done
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def _check_idle(self, idle: float) -> None:
        self._idle_timer = None
        done = self._done
        if done is None or done.done():
            return
        now = self._loop.time()
        if self._held_back:
            self._last_read = now  # waiting on the client, not the upstream
        due = self._last_read + idle
        if now >= due:
            self._finish_relay(UpstreamTimeout())
        else:
            self._idle_timer = self._loop.call_at(due, self._check_idle, idle)

    @property
    def reusable(self) -> bool:
        """The whole request went out, the response ended cleanly, allows
        another request and was handed over to its end, and nothing came
        after it."""
        return (not self.closed and self._sent and self.reader.reusable and not self._events
                and self.buffer.buffered == 0)

    def reset(self) -> None:
        """Between cycles (the pool keeps the connection)."""
        self.idle = True
        self.bytes_received = 0
        self._events.clear()
        self._sent = False

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
