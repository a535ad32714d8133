"""Back-pressure between a transport and the coroutine that feeds or drains it.

Shared by the client side (ingress) and the upstream side: each side's protocol
owns one `WriteFlow` (the transport told us to stop writing) and one
`ReadBuffer` (bytes received but not yet consumed by the exchange). Losing the
connection wakes every waiter with `ConnectionLost`, so no coroutine is left
waiting on a dead socket.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ConnectionLost(Exception):
    """The peer went away while we were waiting on it."""


class WriteFlow:
    """`pause_writing`/`resume_writing` of an asyncio transport, as an awaitable."""

    __slots__ = ("_loop", "_paused", "_waiter", "_lost", "on_resume")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._paused = False
        self._waiter: asyncio.Future | None = None
        self._lost = False
        #: called when writing may go on (a relay that stopped reading for us)
        self.on_resume = None

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self.on_resume is not None:
            self.on_resume()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def lost(self) -> None:
        self._lost = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(ConnectionLost())

    @property
    def is_lost(self) -> bool:
        return self._lost

    async def drain(self) -> None:
        # Fast path: nearly every write finds the transport below its high-water mark.
        if self._lost:
            raise ConnectionLost()
        if not self._paused:
            return
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = self._loop.create_future()
        await waiter


class ReadBuffer:
    """Chunks a protocol received, handed to one consumer coroutine in order.

    When more than `high` bytes are waiting, `pause` is called (the protocol
    stops reading its transport); once the consumer brings it below `low`,
    `resume` is called. `feed_eof` marks the end; `lost` fails the consumer.
    """

    __slots__ = ("_loop", "_chunks", "_size", "_eof", "_error", "_waiter", "_high", "_low",
                 "_paused", "_pause", "_resume")

    def __init__(self, loop: asyncio.AbstractEventLoop, pause, resume, high: int = 256 * 1024,
                 low: int = 64 * 1024) -> None:
        self._loop = loop
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._high = high
        self._low = low
        self._paused = False
        self._pause = pause
        self._resume = resume

    @property
    def buffered(self) -> int:
        return self._size

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._high and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        self._error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def read_nowait(self) -> bytes | None:
        """The next chunk if one is waiting, b"" at the end, None if nothing yet."""
        if self._chunks:
            data = self._chunks.popleft()
            self._size -= len(data)
            if self._paused and self._size <= self._low:
                self._paused = False
                self._resume()
            return data
        if self._error is not None:
            raise self._error
        if self._eof:
            return b""
        return None

    async def read(self, timeout: float | None = None) -> bytes:
        """The next chunk, or b"" at the end. Raises `ReadTimeout` when nothing
        arrives for `timeout` seconds."""
        while True:
            data = self.read_nowait()
            if data is not None:
                return data
            loop = self._loop
            waiter = self._waiter = loop.create_future()
            if timeout is None:
                await waiter
            else:
                # A timer on the waiter, not asyncio.wait_for: no extra task per read.
                timer = loop.call_later(timeout, _expire, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()


class ReadTimeout(Exception):
    """Nothing arrived within the read timeout."""


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout())
