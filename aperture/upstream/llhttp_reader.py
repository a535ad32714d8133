"""The response reader on llhttp (httptools' `HttpResponseParser`): aperture's
default, about 90 us of CPU cheaper per response than h11 (tools/bench_upstream.py).

Theory of operation
-------------------
The rules are http1.py's; this file says how llhttp is made to keep them.

Heads are found here before llhttp sees them. While a head is awaited, the
reader looks for the CRLF CRLF that ends it (rule 1 makes the first one the
end), so it knows each head's size as received (rule 5) and its first bytes
(rule 2), and it hands llhttp one head at a time. That is also how an answer
to HEAD is read: llhttp cannot be told the request method and would take the
bytes after the head as a body announced by Content-Length, so the message is
ended at its head and llhttp is not fed again. A fresh parser serves each
cycle and each head after a 1xx one (making one costs 250 ns): llhttp would
refuse a final head after a 1xx head it does not keep alive. After the final
head, each read goes to llhttp in one call.

The parser's callbacks only record: the reason, the fields, the body pieces.
`on_headers_complete` runs the head through `frame_head` (rules 2-4, 6, 9)
and keeps the final head; after a 1xx head the next head is awaited (llhttp
itself would read a body after a 1xx other than 100-103). A callback that
finds a broken rule stores the error and raises `_Stop`, which makes llhttp
stop at that byte.

Data after the end (rule 8): in the same read, llhttp itself goes on after
the message. It skips CR and LF as the rule wants; any other byte either
starts a message (`on_message_begin` once the cycle is done) or, after a
response llhttp does not keep alive, is refused by llhttp; both make the
error. Bytes after a message that ended at its head, and every later read,
are looked at here.

`feed` coalesces what one read carried into at most one head, one body chunk
and the end, in that order.
"""

from __future__ import annotations

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from aperture.errors import BadGateway
from aperture.upstream.events import END, BodyChunk, ResponseHead
from aperture.upstream.http1 import (INFORMATIONAL, MAX_HEAD, NO_BODY, UNTIL_CLOSE, UpstreamClosed,
                                     check_informational, check_trailer_names, data_after_end,
                                     frame_head, malformed, only_line_breaks)

_HEAD = "awaiting a head"
_BODY = "reading the body"
_DONE = "done"

_HTTP = b"HTTP/"


class _Stop(Exception):
    """Raised in a callback to make llhttp stop; the reason is in `error`."""


class LlhttpReader:
    """One cycle at a time: `start(method)`, then `feed` / `feed_eof` until
    the end (`done`). `error` holds a failure not raised yet; `reusable` says
    whether the connection may carry the next request."""

    __slots__ = ("error", "keep_alive", "_parser", "_state", "_head_request", "_framing",
                 "_head_size", "_tail", "_prefix", "_reason", "_fields", "_head", "_body",
                 "_ended", "_informational", "_informational_size")

    def __init__(self) -> None:
        self.start(b"GET")

    def start(self, method: bytes) -> None:
        self._parser = HttpResponseParser(self)
        self._head_request = method == b"HEAD"
        self._state = _HEAD
        self._framing = None
        self.error: BadGateway | None = None
        self.keep_alive = False
        self._head: ResponseHead | None = None
        self._body: list[bytes] = []
        self._ended = False  # END is due in the events of this read
        self._informational = 0  # 1xx heads read in this cycle
        self._informational_size = 0  # their bytes
        self._next_head()

    def _next_head(self) -> None:
        self._head_size = 0  # bytes of the current head received so far
        self._tail = b""  # its last 3 bytes, where an ending CRLF CRLF may start
        self._prefix = b""  # its first 8 bytes: HTTP/ (rule 2) and the version
        self._reason = b""
        self._fields: list[tuple[bytes, bytes]] = []

    @property
    def done(self) -> bool:
        return self._state is _DONE

    @property
    def reusable(self) -> bool:
        return self._state is _DONE and self.keep_alive and self.error is None

    # -- bytes in, events out ---------------------------------------------------

    def feed(self, data: bytes) -> list:
        if self.error is not None:
            raise self.error
        state = self._state
        if state is _BODY:
            self._execute(data)
        elif state is _HEAD:
            self._read_heads(data)
        elif not only_line_breaks(data):
            self.error = data_after_end()
        return self._events()

    def feed_eof(self) -> list:
        if self.error is not None:
            raise self.error
        state = self._state
        if state is _HEAD:
            self.error = UpstreamClosed("upstream closed the connection without a response")
        elif state is _BODY:
            if self._framing is UNTIL_CLOSE:
                self._end()
            else:
                self.error = BadGateway("upstream closed the connection mid-response")
        self.keep_alive = False
        return self._events()

    def _events(self) -> list:
        events = []
        if self._head is not None:
            events.append(self._head)
            self._head = None
        body = self._body
        if body:
            events.append(BodyChunk(body[0] if len(body) == 1 else b"".join(body)))
            self._body = []
        if self._ended:
            self._ended = False
            events.append(END)
        if not events and self.error is not None:
            raise self.error
        return events

    def _read_heads(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        view = None
        while True:  # one head per turn: 1xx heads may come before the final one
            end = self._head_end(data, pos)
            stop = n if end < 0 else end
            if len(self._prefix) < 8:
                prefix = self._prefix = self._prefix + data[pos:pos + 8 - len(self._prefix)]
                if not _HTTP.startswith(prefix[:5]):
                    self.error = malformed("the response does not start with HTTP/")
                    return
            size = self._head_size = self._head_size + stop - pos
            if size > MAX_HEAD:
                self.error = malformed("response head larger than %d bytes" % MAX_HEAD)
                return
            if pos == 0 and stop == n:
                part = data
            else:
                if view is None:
                    view = memoryview(data)
                part = view[pos:stop]
            if end < 0:
                self._tail = (self._tail + data[max(pos, n - 3):])[-3:]
                self._execute(part)
                return
            self._execute(part)
            if self.error is not None:
                return
            if self._state is _HEAD:  # that was a 1xx head: the next one starts here
                if self._head_size:  # on_headers_complete did not run
                    self.error = malformed("the head did not end where its empty line is")
                    return
                # on a fresh parser: llhttp refuses anything after a 1xx it
                # does not keep alive (HTTP/1.0, Connection: close)
                self._parser = HttpResponseParser(self)
                self._next_head()
                pos = end
                if pos == n:
                    return
                continue
            if end < n:
                if self._state is _BODY:
                    self._execute(view[end:] if view is not None else memoryview(data)[end:])
                elif not only_line_breaks(data[end:]):
                    self.error = data_after_end()
            return

    def _head_end(self, data: bytes, pos: int) -> int:
        """Where the head that continues at data[pos] ends (just past its CRLF
        CRLF), or -1 if it does not end in `data`."""
        tail = self._tail
        if tail and pos == 0:  # the ending may straddle the previous read
            i = (tail + data[:3]).find(b"\r\n\r\n")
            if i >= 0:
                return i + 4 - len(tail)
        i = data.find(b"\r\n\r\n", pos)
        return i + 4 if i >= 0 else -1

    def _execute(self, data) -> None:
        try:
            self._parser.feed_data(data)
        except HttpParserError as exc:
            if self.error is None:
                if self._state is _DONE:  # llhttp refuses bytes after a message it does not keep alive
                    self.error = data_after_end()
                else:
                    self.error = malformed(str(exc) or exc.__class__.__name__)
        except HttpParserUpgrade:  # never reached: 101 is refused by frame_head
            if self.error is None:
                self.error = malformed("unexpected protocol upgrade")

    def _end(self) -> None:
        self._state = _DONE
        self._ended = True

    # -- llhttp's callbacks (they only record) ----------------------------------

    def on_message_begin(self) -> None:
        if self._state is _DONE:
            self.error = data_after_end()
            raise _Stop()

    def on_status(self, reason: bytes) -> None:
        self._reason += reason  # llhttp may hand it over in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state is _HEAD:
            self._fields.append((name, value))  # made a ResponseHead's in on_headers_complete
        else:  # a trailer: dropped, once checked
            try:
                check_trailer_names(name.lower())
            except BadGateway as exc:
                self.error = exc
                raise _Stop() from None

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        # Names lowercased, values stripped of trailing whitespace (llhttp
        # strips only leading whitespace; rstrip returns the very value when
        # there is none), in one pass rather than in each on_header.
        fields = self._fields = [(name.lower(), value.rstrip(b" \t")) for name, value in self._fields]
        try:
            # the version as received: llhttp has checked it is digit.digit
            framing, keep_alive = frame_head(self._prefix[5:8], status, self._reason, fields,
                                             self._head_request)
        except BadGateway as exc:
            self.error = exc
            raise _Stop() from None
        if framing is INFORMATIONAL:
            # A 1xx message ends with its head (RFC 9110 §15.2); llhttp
            # knows that of 100-103 only and would read a body after others.
            self._informational += 1
            self._informational_size += self._head_size
            try:
                check_informational(self._informational, self._informational_size)
            except BadGateway as exc:
                self.error = exc
                raise _Stop() from None
            self._next_head()
            return
        self._head = ResponseHead(status, self._reason, fields)
        self._framing = framing
        self.keep_alive = keep_alive
        if framing is NO_BODY:
            self._end()
        else:
            self._state = _BODY

    def on_body(self, data: bytes) -> None:
        self._body.append(data)

    def on_message_complete(self) -> None:
        if self._state is _BODY:
            self._end()
        # _HEAD: a 1xx message, ended at its head already; _DONE: a message
        # without a body, ended at its head already
