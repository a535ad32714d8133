"""HTTP/1.1 as aperture speaks it to providers: the bytes it writes, and the
rules every response reader holds an upstream to.

Theory of operation
-------------------
Requests are written as bytes by `encode_request` (and `chunk_head` for the
rest of a chunked body), whatever reads the responses. Responses are read by
a sans-I/O reader (`start(method)`, then `feed(data)` / `feed_eof()`, each
returning aperture's events, events.py): `LlhttpReader` (llhttp through
httptools) by default, `H11Reader` (h11) as the pure twin (`APERTURE_PURE=1`,
reader.py) and as the oracle of the differential tests
(tests/upstream/test_differential.py).

Left alone, llhttp and h11 do not accept the same bytes: llhttp is the
stricter about syntax, h11 about framing headers. Where they differ a rule was
chosen below, and the reader whose parser would let something through checks
it itself; the note in brackets says who needed the extra check.

1. Lines end with CRLF (RFC 9112 §2.2): a bare LF in a head, a chunk line or
   a trailer section is malformed, and so is obs-fold (§5.2 lets a proxy
   answer 502). [h11 accepts both in heads and trailers: the twin checks the
   raw bytes.]
2. A response starts with `HTTP/` at its first byte (no leading empty lines)
   and is HTTP/1.0 or HTTP/1.1. [llhttp skips CR/LF before a message and
   accepts RTSP/, ICE/ and HTTP/2.0; h11 accepts any digit.digit: both check.]
3. The status code is 100-999. 101 is malformed (aperture never asks for an
   upgrade); other 1xx heads are read, checked and skipped. [llhttp accepts
   000-099.]
4. A reason phrase and field values hold HTAB, SP, VCHAR and obs-text only
   (RFC 9112 §4, RFC 9110 §5.5). Values lose leading and trailing SP/HTAB.
   [llhttp takes any control in a reason and keeps trailing whitespace in
   values; h11 takes controls other than NUL, VT, FF: both check reasons, the
   native reader strips, the twin checks values.]
5. A head is at most `MAX_HEAD` (64 KiB) bytes counted as received, from the
   first byte of its status line through the empty line that ends it. A
   larger head is malformed as soon as the bytes received show it, whatever
   the reads' sizes. The 1xx heads before the final one are at most
   `MAX_INFORMATIONAL` (100) and `MAX_HEAD` bytes together: an upstream that
   floods 1xx heads is malformed, not waited on forever. [Neither parser
   counts this way: both readers count.]
6. Framing (RFC 9112 §6.3): 1xx, 204, 304 and answers to HEAD have no body.
   Otherwise `Transfer-Encoding`, which must be one header whose value is
   `chunked` (any case), or `Content-Length`, which must be one header of 1 to
   20 digits with a value below 2^64, or neither: the body then runs until the
   connection closes. Both at once, two of either (even equal), a list, or
   another coding is malformed. These checks apply to every head, 1xx
   included. [llhttp accepts `gzip, chunked` and other codings, and more than
   20 digits; h11 merges equal Content-Lengths, accepts values past 2^64 and
   lets Transfer-Encoding win over Content-Length: `frame_head`, shared.
   llhttp knows 100-103 only as bodiless 1xx: the native reader ends every
   1xx message at its head itself.]
7. A chunk size is hex digits with a value below 2^64, straight followed by
   its extensions or CRLF. Extensions are ignored but must have llhttp's
   syntax: `;` name [`=` value], name and value made of token characters
   (either may be empty), a value may end with a quoted string, and the line
   does not end with `;`. Trailers are read and dropped; they follow rule 4
   and must not be `Content-Length` or `Transfer-Encoding`. [h11 allows
   whitespace before the CRLF, anything after `;` and sizes past 2^64: the
   twin checks each chunk line; llhttp refuses Content-Length but not
   Transfer-Encoding in trailers: the native reader checks.]
8. CR and LF bytes after the end of a response are ignored (llhttp; RFC 9112
   §2.2). Any other byte after the end is data after the end: the connection
   is not reused, and it is a BadGateway for whoever asks the reader for more.
   [h11 leaves it in its buffer: the twin checks.]
9. A connection carries another request only after an HTTP/1.1 response
   without `Connection: close` whose body was delimited (by its length, by
   chunks, or by having none) and had nothing after its end. HTTP/1.0 is
   never reused, `Connection: keep-alive` or not. [llhttp would reuse it.]
10. A close before the end of the final head is `UpstreamClosed` (the
   exchange may then retry a request on a stale pooled connection); a close
   inside a body delimited by length or chunks is a BadGateway; a close ends a
   close-delimited body.

Errors are reported without losing what came before them: a reader returns
the events it has (the head, the body bytes before a bad chunk line) and
keeps the error in `error`, raised by its next `feed` or `feed_eof`. A call
that has no events to return raises at once.

What still differs: a chunk size written with more than 20 digits (only
leading zeros can keep it below 2^64) is refused by the twin, whose h11 stops
at 20 before the twin sees the line; and a single chunk line or trailer
section over 1 MiB that has not ended yet is refused by the twin (h11 buffers
it whole; `TWIN_BUFFER`), where llhttp streams over it.
"""

from __future__ import annotations

import re

from aperture.errors import BadGateway

#: largest response head, in bytes as received (rule 5)
MAX_HEAD = 64 * 1024
#: most 1xx heads before a final one (rule 5)
MAX_INFORMATIONAL = 100
#: what the twin's h11 may buffer of an incomplete chunk line or trailer section
TWIN_BUFFER = 1024 * 1024
_MAX_U64 = (1 << 64) - 1


class UpstreamClosed(BadGateway):
    """The connection closed before a response head arrived."""


def malformed(problem: str) -> BadGateway:
    return BadGateway("malformed response from upstream: " + problem)


def data_after_end() -> BadGateway:
    return malformed("data after the end of the response")


def check_informational(count: int, size: int) -> None:
    """Rule 5 for the 1xx heads of one response: `count` of them so far,
    `size` bytes together."""
    if count > MAX_INFORMATIONAL:
        raise malformed("more than %d informational (1xx) heads" % MAX_INFORMATIONAL)
    if size > MAX_HEAD:
        raise malformed("informational (1xx) heads larger than %d bytes together" % MAX_HEAD)


class Framing:
    """How a body ends (a sentinel per case)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


INFORMATIONAL = Framing("INFORMATIONAL")  # a 1xx head: skipped, another head follows
NO_BODY = Framing("NO_BODY")  # 204, 304, an answer to HEAD: ends at its head
LENGTH = Framing("LENGTH")  # Content-Length
CHUNKED = Framing("CHUNKED")  # Transfer-Encoding: chunked
UNTIL_CLOSE = Framing("UNTIL_CLOSE")  # neither: ends when the connection closes

# rule 4: a control character other than HTAB
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def frame_head(version: bytes, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
               head_request: bool) -> tuple[Framing, bool]:
    """Rules 2, 3, 4 (the reason), 6 and 9 for one head: (framing, whether the
    connection may be reused after this response). `version` as in the
    status line (b"1.1"), `headers` as in `ResponseHead`. Raises BadGateway."""
    if version != b"1.1" and version != b"1.0":
        raise malformed("HTTP/%s is not HTTP/1.x" % version.decode("latin-1"))
    if status < 100:
        raise malformed("status code %03d" % status)
    if status == 101:
        raise malformed("101 Switching Protocols, but no upgrade was asked for")
    if reason and _CONTROL(reason):
        raise malformed("control character in the reason phrase")
    length = None
    chunked = close = False
    for name, value in headers:
        if name not in _FRAMING_FIELDS:
            continue
        if name == b"content-length":
            if length is not None:
                raise malformed("more than one Content-Length")
            # 19 digits always fit in 64 bits: only longer values are converted
            if not value.isdigit() or len(value) > 19 and (len(value) > 20 or int(value) > _MAX_U64):
                raise malformed("bad Content-Length %r" % value[:40])
            length = value
        elif name == b"transfer-encoding":
            if chunked:
                raise malformed("more than one Transfer-Encoding")
            if value.lower() != b"chunked":
                raise malformed("Transfer-Encoding %r (only chunked is supported)" % value[:40])
            chunked = True
        elif not close:
            value = value.lower()
            if b"close" in value:  # the common keep-alive needs no split
                close = b"close" in [token.strip() for token in value.split(b",")]
    if chunked and length is not None:
        raise malformed("both Content-Length and Transfer-Encoding")
    if status < 200:
        return INFORMATIONAL, False
    if head_request or status == 204 or status == 304:
        framing = NO_BODY
    elif chunked:
        framing = CHUNKED
    elif length is not None:
        framing = LENGTH
    else:
        return UNTIL_CLOSE, False
    return framing, version == b"1.1" and not close


def check_values(fields: list[tuple[bytes, bytes]]) -> None:
    """Rule 4 for field values (the twin's check; llhttp refuses these itself)."""
    for _, value in fields:
        if _CONTROL(value):
            raise malformed("control character in a field value")


def check_trailer_names(name: bytes) -> None:
    """Rule 7: framing fields have no place in trailers."""
    if name == b"content-length" or name == b"transfer-encoding":
        raise malformed("%s in the trailers" % name.decode("latin-1"))


def only_line_breaks(data) -> bool:
    """Rule 8: bytes after the end that may be ignored."""
    return not data.strip(b"\r\n")


# ---------------------------------------------------------------------------
# Requests

_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+").fullmatch
LAST_CHUNK = b"0\r\n\r\n"


def encode_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                   length: int | None, body: bytes = b"", end: bool = False) -> bytes:
    """The request head, its framing header and the first body bytes, ready
    for one write. `length` None means a chunked body (`body` is then framed
    as one chunk, and `end` adds the last chunk); otherwise `body` is the
    start of `length` bytes. `headers` must not hold framing headers; their
    names and values were checked where they came from (llhttp for the
    client's, config load for aperture's own)."""
    if not _TARGET(target):
        raise BadGateway("cannot send request upstream: the target holds bytes HTTP does not allow")
    # One join of prebuilt pieces: cheaper than growing a bytearray per header.
    parts = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    parts += [b"%s: %s\r\n" % field for field in headers]
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\n\r\n")
        if body:
            parts.append(b"%x\r\n%s\r\n" % (len(body), body))
        if end:
            parts.append(LAST_CHUNK)
    else:
        parts.append(b"content-length: %d\r\n\r\n" % length)
        parts.append(body)
    return b"".join(parts)


CRLF = b"\r\n"


def chunk_head(size: int) -> bytes:
    """The size line of a chunk of `size` bytes (not 0); CRLF ends its data."""
    return b"%x\r\n" % size

