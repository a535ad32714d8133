"""What the upstream reader tests share: both readers, feeding, tracing."""

from __future__ import annotations

import pytest

from aperture.errors import BadGateway
from aperture.upstream.events import END, BodyChunk
from aperture.upstream.h11_reader import H11Reader
from aperture.upstream.llhttp_reader import LlhttpReader

READERS = [pytest.param(LlhttpReader, id="llhttp"), pytest.param(H11Reader, id="h11")]


def pieces(data: bytes, cuts) -> list[bytes]:
    """`data` cut at `cuts` (positions; duplicates and ends make empty pieces
    only where a read could not have been empty, so they are dropped)."""
    edges = [0, *sorted(c for c in set(cuts) if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


class Trace:
    """What a reader did with a response fed piece by piece: the events of
    each `feed` (and of `feed_eof`), then the error raised or left pending."""

    def __init__(self, cls, method: bytes, data: bytes, cuts=(), eof: bool = True) -> None:
        self.reader = reader = cls()
        reader.start(method)
        self.steps: list[list] = []
        self.raised: BadGateway | None = None
        self.eof = False
        try:
            for piece in pieces(data, cuts):
                self.steps.append(reader.feed(piece))
            if eof:
                self.finish()
        except BadGateway as exc:
            self.raised = exc

    def finish(self) -> None:
        self.eof = True
        self.steps.append(self.reader.feed_eof())

    def finish_quietly(self) -> None:
        """`finish`, keeping what it raises."""
        try:
            self.finish()
        except BadGateway as exc:
            self.raised = exc

    @property
    def error(self) -> BadGateway | None:
        return self.raised or self.reader.error

    @property
    def events(self) -> list:
        """All events, adjacent body chunks merged."""
        out: list = []
        for step in self.steps:
            for event in step:
                if type(event) is BodyChunk and out and type(out[-1]) is BodyChunk:
                    out[-1] = BodyChunk(out[-1].data + event.data)
                else:
                    out.append(event)
        return out

    @property
    def head(self):
        return self.events[0] if self.events else None

    @property
    def body(self) -> bytes:
        return b"".join(e.data for e in self.events if type(e) is BodyChunk)

    @property
    def ended(self) -> bool:
        return END in self.events


def trace(cls, data: bytes, cuts=(), *, method: bytes = b"GET", eof: bool = True) -> Trace:
    return Trace(cls, method, data, cuts, eof)
