"""A streamed JSON array, one event per element (Gemini without `alt=sse`);
twin of `native/src/framing/json_array.rs`, whose module doc is the theory of
operation.

A small tokenizer tracks only what decides where an element ends: container
depth, strings and their escapes. `{`/`[` elements end when the depth is back
to 0, `"` elements at their closing quote, bare scalars before whitespace, `,`
or `]`. An element over `MAX_EVENT_BYTES` is one bad event (not kept);
structural damage is one bad event and ends the reading. `closed` records the
closing `]`, which completeness requires.
"""

from __future__ import annotations

import re

from aperture._pure.extract import Tally
from aperture._pure.framing import MAX_EVENT_BYTES

# States: what the tokenizer waits for.
_START = 0  # the opening '['
_FIRST = 1  # after '[': an element or ']'
_NEXT = 2  # after ',': an element
_ELEM = 3  # inside an element
_AFTER = 4  # after an element: ',' or ']'
_CLOSED = 5  # after ']': whitespace only
_BROKEN = 6  # structural damage: nothing more is read

_WS_RUN = re.compile(rb"[ \t\n\r]*")
_STR_STOP = re.compile(rb'["\\]')
_SCALAR_STOP = re.compile(rb"[ \t\n\r,\]]")
_STRUCTURAL = re.compile(rb'["{}\[\]]')
_NOT_AN_ELEMENT = b",]}:"


class JsonArray:
    __slots__ = ("_state", "closed", "_depth", "_scalar", "_in_str", "_esc", "_buf", "_len", "_over")

    def __init__(self) -> None:
        self._state = _START
        self.closed = False
        self._depth = 0  # open containers of the element; 0 for a scalar
        self._scalar = False  # a bare scalar (number, literal, garbage)
        self._in_str = False
        self._esc = False
        self._buf = bytearray()  # the element's bytes carried from earlier chunks
        self._len = 0
        self._over = False

    def feed(self, data: bytes, d, t: Tally) -> None:
        n = len(data)
        i = 0
        while i < n:
            st = self._state
            if st == _ELEM:
                end = self._scan(data, i)
                self._take(data, i, n if end < 0 else end, end >= 0, d, t)
                i = n if end < 0 else end
                continue
            i = _WS_RUN.match(data, i).end()
            if i == n:
                return
            b = data[i]
            if st == _START and b == 0x5B:
                self._state = _FIRST
            elif st == _FIRST and b == 0x5D:
                self._close()
            elif (st == _FIRST or st == _NEXT) and b not in _NOT_AN_ELEMENT:
                self._depth = 1 if b == 0x7B or b == 0x5B else 0
                self._in_str = b == 0x22
                self._scalar = self._depth == 0 and not self._in_str
                self._esc = False
                self._len = 0
                self._over = False
                self._state = _ELEM
                end = self._scan(data, i + 1)
                self._take(data, i, n if end < 0 else end, end >= 0, d, t)
                i = n if end < 0 else end
                continue
            elif st == _AFTER and b == 0x2C:
                self._state = _NEXT
            elif st == _AFTER and b == 0x5D:
                self._close()
            elif st == _BROKEN:
                return
            else:
                t.bad_events += 1
                self._state = _BROKEN
                self._buf = bytearray()
                return
            i += 1

    def _close(self) -> None:
        self._state = _CLOSED
        self.closed = True

    def _scan(self, data: bytes, j: int) -> int:
        """Walk the element from data[j]; its end offset (exclusive) when it
        ends in this chunk, else -1."""
        n = len(data)
        while True:
            if self._esc:
                if j >= n:
                    return -1
                self._esc = False
                j += 1
            if self._in_str:
                m = _STR_STOP.search(data, j)
                if m is None:
                    return -1
                p = m.start()
                j = p + 1
                if data[p] == 0x5C:
                    self._esc = True
                    continue
                self._in_str = False
                if self._depth == 0:
                    return j
                continue
            if self._scalar:
                m = _SCALAR_STOP.search(data, j)
                return -1 if m is None else m.start()
            m = _STRUCTURAL.search(data, j)
            if m is None:
                return -1
            p = m.start()
            j = p + 1
            b = data[p]
            if b == 0x22:
                self._in_str = True
            elif b == 0x7B or b == 0x5B:
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return j

    def _take(self, data: bytes, i: int, end: int, done: bool, d, t: Tally) -> None:
        """data[i:end] is the next part of the element; `done` when the last."""
        self._len += end - i
        if not self._over and self._len > MAX_EVENT_BYTES:
            self._over = True
            self._buf = bytearray()
        if not done:
            if not self._over:
                self._buf += data[i:end]
            return
        self._state = _AFTER
        t.events += 1
        if self._over:
            t.bad_events += 1
        elif not self._buf:
            d.event(b"", data[i:end], t)
        else:
            self._buf += data[i:end]
            element = bytes(self._buf)
            self._buf = bytearray()
            d.event(b"", element, t)

    def finish(self, d, t: Tally) -> None:
        pass  # an element left unterminated is not read

    def complete(self, t: Tally) -> bool:
        return self.closed and t.complete
