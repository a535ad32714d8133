"""text/event-stream framing; twin of `native/src/framing/sse.rs`, whose
module doc is the theory of operation.

Lines are split on bytes (CR, LF, CRLF; a CR that ends one chunk and an LF
that starts the next are one line ending), then fields are read per the
WHATWG rules (wire-formats.md §8): one optional space after the colon, `data`
lines joined with LF, `event` names the event, comments ignored, dispatch on
a blank line, nothing dispatched for an event left unterminated. An event
whose lines add up to more than `MAX_EVENT_BYTES` is dropped and counted as an
event and a bad event; buffering is bounded by the same figure.
"""

from __future__ import annotations

import re

from aperture._pure.extract import Tally
from aperture._pure.framing import MAX_EVENT_BYTES

_EOL = re.compile(rb"[\r\n]")
_BOM = b"\xef\xbb\xbf"


class Sse:
    __slots__ = (
        "_line",
        "_line_len",
        "_line_over",
        "_skip_lf",
        "_first_line",
        "_data",
        "_has_data",
        "_name",
        "_event_bytes",
        "_oversized",
    )

    def __init__(self) -> None:
        self._line = bytearray()  # the unterminated line carried between chunks
        self._line_len = 0  # its length, also once dropped for being too long
        self._line_over = False
        self._skip_lf = False
        self._first_line = True
        self._data = bytearray()
        self._has_data = False
        self._name = b""
        self._event_bytes = 0
        self._oversized = False

    def feed(self, data: bytes, d, t: Tally) -> None:
        n = len(data)
        i = 0
        if self._skip_lf and n:  # an empty chunk says nothing about the byte after a CR
            self._skip_lf = False
            if data[0] == 0x0A:
                i = 1
        search = _EOL.search
        while i < n:
            m = search(data, i)
            if m is None:
                self._carry(data, i, n)
                return
            j = m.start()
            if self._line_len:
                self._carry(data, i, j)
                line = bytes(self._line)
                over = self._line_over
                length = self._line_len
                self._line = bytearray()
                self._line_len = 0
                self._line_over = False
            else:
                line = data[i:j]
                length = j - i
                over = False
            self._on_line(line, length, over, d, t)
            if data[j] == 0x0D:
                if j + 1 < n:
                    i = j + 2 if data[j + 1] == 0x0A else j + 1
                else:
                    self._skip_lf = True
                    i = j + 1
            else:
                i = j + 1

    def finish(self, d, t: Tally) -> None:
        pass  # an event left without its blank line is never dispatched

    def _carry(self, data: bytes, i: int, j: int) -> None:
        """Keep data[i:j], the start of a line, for the next chunk (bounded)."""
        self._line_len += j - i
        if self._line_over:
            return
        if self._line_len > MAX_EVENT_BYTES:
            self._line_over = True
            self._line = bytearray()
            return
        self._line += data[i:j]

    def _on_line(self, line: bytes, length: int, over: bool, d, t: Tally) -> None:
        if self._first_line:
            self._first_line = False
            if line.startswith(_BOM):  # a byte order mark is dropped once, at stream start
                line = line[3:]
                length -= 3
        if length == 0:
            self._dispatch(d, t)
            return
        self._event_bytes += length
        if over or self._event_bytes > MAX_EVENT_BYTES:
            self._oversized = True
            self._data = bytearray()
            self._name = b""
        if self._oversized or line[0] == 0x3A:  # ':' starts a comment
            return
        colon = line.find(b":")
        if colon < 0:
            field, value = line, b""
        else:
            field = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            self._data += value
            self._data += b"\n"
            self._has_data = True
        elif field == b"event":
            self._name = bytes(value)

    def _dispatch(self, d, t: Tally) -> None:
        if self._oversized:
            t.events += 1
            t.bad_events += 1
        elif self._has_data:
            t.events += 1
            d.event(self._name, bytes(self._data[:-1]), t)
        self._data = bytearray()
        self._name = b""
        self._has_data = False
        self._event_bytes = 0
        self._oversized = False

    def complete(self, t: Tally) -> bool:
        return t.complete
