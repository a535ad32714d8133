"""One HTTP/1.1 client connection to a provider, driven by h11.

The protocol object only collects received bytes (in a `ReadBuffer`, which
pauses the transport when the exchange reads slower than the upstream sends:
a slow client slows the upstream read). The exchange pulls h11 events with
`next_event`, feeding h11 one received chunk at a time.

h11 exceptions never leave this module: they become `BadGateway`, and read
timeouts become `UpstreamTimeout` (STYLE.md, habit 7).
"""

from __future__ import annotations

import asyncio

import h11

from aperture.errors import BadGateway
from aperture.flow import ConnectionLost, ReadBuffer, ReadTimeout, WriteFlow


class UpstreamTimeout(Exception):
    """The upstream did not answer within the configured timeout."""


class UpstreamClosed(BadGateway):
    """The connection closed before a response head arrived."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("origin", "h11", "transport", "write_flow", "buffer", "closed", "idle_since", "reused",
                 "bytes_received")

    def __init__(self, origin: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.write_flow = WriteFlow(loop)
        self.buffer = ReadBuffer(loop, self._pause, self._resume)
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.bytes_received = 0  # in the current request/response cycle

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.set_write_buffer_limits(256 * 1024, 64 * 1024)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self.buffer.feed(data)

    def eof_received(self) -> None:
        self.buffer.feed_eof()

    def connection_lost(self, exc) -> None:
        self.closed = True
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

    def send(self, *events) -> None:
        """Serialize h11 events onto the wire in one write (one segment, one
        wake-up of the upstream, for a request whose body is all in hand)."""
        if self.closed:
            raise UpstreamClosed("upstream connection closed while sending the request")
        send = self.h11.send
        try:
            data = b"".join([send(event) or b"" for event in events])
        except h11.LocalProtocolError as exc:
            raise BadGateway("cannot send request upstream: %s" % exc) from None
        if data:
            self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self) -> None:
        try:
            await self.write_flow.drain()
        except ConnectionLost:
            raise UpstreamClosed("upstream connection closed while sending the request") from None

    async def next_event(self, timeout: float | None):
        """The next h11 event of the response (never NEED_DATA)."""
        conn = self.h11
        while True:
            # Before the response head, with no unread bytes, h11 can only
            # answer NEED_DATA, and each h11 call costs tens of microseconds
            # here: wait for bytes first. (Later, h11 may have an event
            # without new bytes: EndOfMessage once Content-Length is reached.)
            pending, closed = conn.trailing_data
            if pending or closed or conn.their_state is not h11.SEND_RESPONSE:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise BadGateway("malformed response from upstream: %s" % exc) from None
                if event is not h11.NEED_DATA:
                    return event
            try:
                data = await self.buffer.read(timeout)
            except ReadTimeout:
                raise UpstreamTimeout() from None
            conn.receive_data(data)

    @property
    def reusable(self) -> bool:
        return (not self.closed and self.h11.our_state is h11.DONE
                and self.h11.their_state is h11.DONE and self.buffer.buffered == 0)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
