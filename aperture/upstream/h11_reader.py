"""The response reader on h11: the pure twin of `LlhttpReader` (`APERTURE_PURE=1`)
and the oracle of the differential tests.

Theory of operation
-------------------
The rules are http1.py's; this file says how h11 is made to keep them.

h11 reads a response only after its connection sent a request, so each cycle
starts a fresh `h11.Connection` and tells it the request's method with a
stand-in request whose bytes are thrown away: the request on the wire is
always http1.encode_request's, whichever reader runs. h11 then parses the
response and decides its framing.

Where h11 accepts more than the rules, the reader checks the raw bytes h11
consumed. It keeps every byte fed until an event accounts for it: after each
event, what h11 no longer holds (`trailing_data`) is the span that event was
made of. A head's span is the head as received: its size (rule 5), bare LF
and obs-fold (rule 1), and its fields as the wire had them (h11 merges equal
Content-Lengths and lowercases Transfer-Encoding; the fields of the
`ResponseHead` come from the span, after h11 has accepted each line). A body
`Data` event that starts a chunk is preceded in its span by that chunk's line
(and the CRLF ending the previous chunk): its size and extensions are checked
(rule 7). The span of the end of a chunked body holds the last chunk line and
the trailers.

h11's own limit on buffered bytes is set to `TWIN_BUFFER` (1 MiB), well above
`MAX_HEAD`, which is counted here; see http1.py for what that leaves.
"""

from __future__ import annotations

import re

import h11

from aperture.errors import BadGateway
from aperture.upstream.events import END, BodyChunk, ResponseHead
from aperture.upstream.http1 import (CHUNKED, INFORMATIONAL, MAX_HEAD, TWIN_BUFFER,
                                     UpstreamClosed, check_informational, check_trailer_names,
                                     check_values, data_after_end, frame_head, malformed,
                                     only_line_breaks)

_HEAD = "awaiting a head"
_BODY = "reading the body"
_DONE = "done"

_BARE_LF = re.compile(rb"(?<!\r)\n").search
_OBS_FOLD = re.compile(rb"\n[ \t]").search
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXTENSIONS = rb"(?:;" + _TOKEN + rb"*(?:=" + _TOKEN + rb"*(?:" + _QUOTED + rb")?)?)*"
# a chunk's line, after the CRLF that ends the previous chunk's data
_CHUNK_LINE = re.compile(rb"(?:\r\n)?([0-9A-Fa-f]+)" + _EXTENSIONS + rb"\r\n").fullmatch
_LAST_CHUNK_LINE = re.compile(rb"(?:\r\n)?0+" + _EXTENSIONS + rb"\r\n").match
_MAX_U64 = (1 << 64) - 1
_STAND_IN_HEADERS = [(b"host", b"upstream")]


class H11Reader:
    """Same interface as `LlhttpReader`."""

    __slots__ = ("error", "keep_alive", "_conn", "_state", "_head_request", "_framing", "_raw",
                 "_informational", "_informational_size")

    def __init__(self) -> None:
        self.start(b"GET")

    def start(self, method: bytes) -> None:
        conn = self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=TWIN_BUFFER)
        try:
            conn.send(h11.Request(method=method, target=b"/", headers=_STAND_IN_HEADERS))
        except h11.LocalProtocolError:  # llhttp let only known methods through; still
            raise BadGateway("cannot send request upstream: bad method %r" % method[:20]) from None
        conn.send(h11.EndOfMessage())
        self._head_request = method == b"HEAD"
        self._state = _HEAD
        self._framing = None
        self.error: BadGateway | None = None
        self.keep_alive = False
        self._raw = bytearray()  # bytes fed that no event has accounted for yet
        self._informational = 0  # 1xx heads read in this cycle
        self._informational_size = 0  # their bytes

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
        if self._state is _DONE:
            if not only_line_breaks(data):
                self.error = data_after_end()
                raise self.error
            return []
        if not data:  # to h11, b"" is the end of the stream
            return []
        self._raw += data
        self._conn.receive_data(data)
        return self._pump()

    def feed_eof(self) -> list:
        if self.error is not None:
            raise self.error
        state = self._state
        self.keep_alive = False
        if state is _DONE:
            return []
        if state is _HEAD:
            self.error = UpstreamClosed("upstream closed the connection without a response")
            raise self.error
        self._conn.receive_data(b"")
        events = self._pump(eof=True)
        if self._state is not _DONE and self.error is None:  # not expected of h11, but certain
            self.error = BadGateway("upstream closed the connection mid-response")
            if not events:
                raise self.error
        return events

    def _pump(self, eof: bool = False) -> list:
        conn = self._conn
        head = None
        body: list = []
        ended = False
        try:
            while True:
                event = conn.next_event()
                kind = type(event)
                if kind is h11.Data:
                    data = event.data
                    if self._framing is CHUNKED:
                        self._check_chunk_line(self._take(), len(data))
                    else:
                        del self._raw[:len(data)]
                    body.append(data)
                elif kind is h11.Response or kind is h11.InformationalResponse:
                    final = self._read_head(event, self._take())
                    if final is not None:  # None: a 1xx head, skipped
                        head = final
                elif kind is h11.EndOfMessage:
                    if self._framing is CHUNKED:
                        self._check_trailers(self._take(), event.headers)
                    self._state = _DONE
                    ended = True
                    if not only_line_breaks(self._raw):
                        self.error = data_after_end()
                    break
                else:  # NEED_DATA (or ConnectionClosed / PAUSED, which follow the end)
                    if self._state is _HEAD and len(self._raw) > MAX_HEAD:
                        raise malformed("response head larger than %d bytes" % MAX_HEAD)
                    break
        except h11.RemoteProtocolError as exc:
            if eof:
                self.error = BadGateway("upstream closed the connection mid-response")
            else:
                self.error = malformed(str(exc))
        except BadGateway as exc:
            self.error = exc
        events: list = []
        if head is not None:
            events.append(head)
        if body:
            events.append(BodyChunk(bytes(body[0]) if len(body) == 1 else b"".join(body)))
        if ended:
            events.append(END)
        if not events and self.error is not None:
            raise self.error
        return events

    def _take(self) -> bytes:
        """The bytes the last event was made of."""
        raw = self._raw
        consumed = len(raw) - len(self._conn.trailing_data[0])
        span = bytes(raw[:consumed])
        del raw[:consumed]
        return span

    def _read_head(self, event, span: bytes) -> ResponseHead | None:
        if len(span) > MAX_HEAD:
            raise malformed("response head larger than %d bytes" % MAX_HEAD)
        if _BARE_LF(span):
            raise malformed("bare LF in the response head")
        if _OBS_FOLD(span):
            raise malformed("obs-fold in the response head")
        fields = []
        for line in span.split(b"\r\n")[1:-2]:  # h11 accepted each line
            name, _, value = line.partition(b":")
            fields.append((name.lower(), value.strip(b" \t")))
        check_values(fields)
        reason = bytes(event.reason)
        framing, keep_alive = frame_head(bytes(event.http_version), event.status_code,
                                         reason, fields, self._head_request)
        if framing is INFORMATIONAL:
            self._informational += 1
            self._informational_size += len(span)
            check_informational(self._informational, self._informational_size)
            return None
        self._framing = framing
        self.keep_alive = keep_alive
        self._state = _BODY  # h11 ends a message without a body with its next event
        return ResponseHead(event.status_code, reason, fields)

    def _check_chunk_line(self, span: bytes, size: int) -> None:
        line = span[:len(span) - size]
        if not line:  # more of a chunk already begun
            return
        match = _CHUNK_LINE(line)
        if match is None or line.endswith(b";\r\n") or int(match[1], 16) > _MAX_U64:
            raise malformed("bad chunk line %r" % line[:40])

    def _check_trailers(self, span: bytes, trailers) -> None:
        match = _LAST_CHUNK_LINE(span)
        if match is None or span[:match.end()].endswith(b";\r\n"):
            raise malformed("bad last chunk line %r" % span[:40])
        section = span[match.end():]
        if _BARE_LF(section) or _OBS_FOLD(b"\n" + section):
            raise malformed("bare LF or obs-fold in the trailers")
        fields = list(trailers)
        for name, _ in fields:
            check_trailer_names(name)
        check_values(fields)

