"""Generated upstream responses, valid and broken, for the differential tests.

A response is built from parts (1xx heads, a status line, fields, a framing,
a body, what follows its end), each drawn among valid variants; then, for
about half the responses, one fault is put in one part: one of those
http1.py names (a bad status line, a bad field, conflicting framing, a bad
chunk line, bad trailers, data after the end, a head over the limit, a close
in the middle). The strategies do not say what a response should give: the
two readers must simply agree on it.
"""

from __future__ import annotations

from hypothesis import strategies as st

from aperture.upstream.http1 import MAX_HEAD

TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VALUE_CHARS = bytes(range(0x21, 0x7f)) + b" \t" + bytes(range(0x80, 0x100))
BAD_VALUE_CHARS = b"\x00\x01\x08\x0b\x0c\x0e\x1f\x7f\r\n"

FAULTS = [
    "start", "version", "status", "reason", "field name", "field separator", "field value",
    "obs-fold", "bare LF", "1xx", "framing", "chunk size", "chunk extension", "chunk data end",
    "chunk line end", "trailers", "after the end", "close early", "head too large",
]

tokens = st.binary(min_size=1, max_size=12).map(
    lambda b: bytes(TOKEN_CHARS[x % len(TOKEN_CHARS)] for x in b))
clean_values = st.binary(max_size=24).map(
    lambda b: bytes(VALUE_CHARS[x % len(VALUE_CHARS)] for x in b).strip(b" \t"))
names = st.sampled_from([b"Content-Type", b"X-Request-Id", b"Set-Cookie", b"Server", b"Date",
                         b"anthropic-ratelimit-requests-remaining", b"Link", b"Vary"]) | tokens


def pick(draw, *choices):
    """One of `choices`, drawn (strategies) or taken (other values), the first
    most often: hypothesis leans to the low end of a range."""
    choice = choices[draw(st.integers(0, len(choices) - 1))]
    return draw(choice) if isinstance(choice, st.SearchStrategy) else choice


def chance(draw, one_in: int) -> bool:
    return draw(st.integers(0, one_in - 1)) == 0


@st.composite
def field_lines(draw, fault: str | None, max_size: int = 4) -> list[bytes]:
    """Field lines without their line endings (`join_lines` adds them)."""
    lines = []
    for _ in range(draw(st.integers(0, max_size))):
        value = draw(clean_values)
        if chance(draw, 5):  # whitespace around a value is allowed, and dropped
            value = pick(draw, b" ", b"\t", b"  \t") + value + pick(draw, b"", b" ", b"\t ")
        lines.append(draw(names) + pick(draw, b": ", b":") + value)
    if fault is not None:
        i = draw(st.integers(0, len(lines)))
        if fault == "field name":
            bad = pick(draw, b"X Y: 1", b"X{: 1", b": 1", b"X\x80: 1", b"X", b"X\x01: 1")
        elif fault == "field separator":
            bad = pick(draw, b"X : 1", b"X\t: 1", b"X :1")
        elif fault == "field value":
            value = draw(clean_values)
            j = draw(st.integers(0, len(value)))
            bad = b"X: " + value[:j] + bytes([draw(st.sampled_from(BAD_VALUE_CHARS))]) + value[j:]
        else:  # obs-fold
            lines.insert(i, b"X-Folded: a")
            bad = pick(draw, b" folded", b"\tfolded", b"  ")
            i += 1
        lines.insert(i, bad)
    return lines


def join_lines(draw, lines: list[bytes], fault: str | None) -> bytes:
    """A head or trailer section: the lines with CRLF, and the empty line."""
    endings = [b"\r\n"] * (len(lines) + 1)
    if fault == "bare LF":
        endings[draw(st.integers(0, len(lines)))] = b"\n"
    return b"".join(line + end for line, end in zip(lines + [b""], endings))


@st.composite
def status_lines(draw, fault: str | None, informational: bool = False) -> bytes:
    start = b"HTTP/"
    version = pick(draw, b"1.1", b"1.0")
    if informational:
        status = pick(draw, b"100", b"103", b"102", b"199")
    else:
        status = pick(draw, b"200", b"201", b"204", b"304", b"404", b"429", b"500", b"529")
    reason = pick(draw, b" OK", b" Not Found", b"", b" ", b"  odd  spacing ", b" caf\xc3\xa9",
                  b" tab\there", b" \x80")
    if fault == "start":
        start = pick(draw, b"http/", b"RTSP/", b"ICE/", b"\r\nHTTP/", b"HTTP /", b"\nHTTP/", b" HTTP/")
    elif fault == "version":
        version = pick(draw, b"1.2", b"2.0", b"0.9", b"11", b"1.", b"3.7")
    elif fault == "status":
        status = pick(draw, b"099", b"000", b"2000", b"20", b"2x0", b"101", b" 200")
    elif fault == "reason":
        reason = pick(draw, b" O\x00K", b" O\x01K", b" \x7f", b"\tOK", b" O\rK", b" \x0b")
    return start + version + b" " + status + reason


@st.composite
def informational_heads(draw, fault: str | None) -> bytes:
    count = pick(draw, 0, 0, 1, 2)
    if fault == "1xx":
        count = max(count, 1)
    heads = []
    for k in range(count):
        own = fault if fault != "1xx" and k == 0 and chance(draw, 2) else None
        lines = [draw(status_lines(own if own in ("start", "version", "status", "reason") else None,
                                   informational=True))]
        lines += draw(field_lines(own if own in ("field name", "field separator", "field value",
                                                 "obs-fold") else None, max_size=2))
        if chance(draw, 4):
            lines.append(pick(draw, b"Content-Length: 5", b"Connection: close",
                              b"Transfer-Encoding: chunked"))
        if fault == "1xx" and k == 0:
            lines.append(pick(draw, b"Content-Length: 1\r\nContent-Length: 1",
                              b"Transfer-Encoding: gzip", b"Content-Length: x"))
            if chance(draw, 3):
                lines[0] = lines[0][:9] + b"101 Switching Protocols"
        heads.append(join_lines(draw, lines, own if own == "bare LF" else None))
    return b"".join(heads)


@st.composite
def chunk_line(draw, size: int, fault: str | None) -> bytes:
    digits = (pick(draw, "%x", "%X", "%03x", "%02X") % size).encode()
    extension = pick(draw, b"", b"", b";a", b";a=b", b';note="x y"', b";a;b=c", b";=v", b";a=",
                     b';q="\\""', b';k="\x80\t"')
    end = b"\r\n"
    if fault == "chunk size":
        digits = pick(draw, b"", b"-1", b"zz", b"1 0", b"10000000000000000", b"0x%x" % size, b"+1")
    elif fault == "chunk extension":
        extension = pick(draw, b";", b" ", b" ;a", b"; a", b";a b", b";a=b;", b';a="\x01"', b';a="b"c',
                         b";a=\x80", b"\t", b";a=b=c", b";;")
    elif fault == "chunk line end":
        end = pick(draw, b"\n", b"\r", b"\r\r\n")
    return digits + extension + end


@st.composite
def chunked_body(draw, body: bytes, fault: str | None) -> bytes:
    sizes = []
    left = len(body)
    while left:
        size = draw(st.integers(1, left))
        sizes.append(size)
        left -= size
    faulty = draw(st.integers(0, len(sizes))) if fault else -1  # which chunk; len(sizes): the last
    out = []
    i = 0
    for k, size in enumerate(sizes):
        own = fault if k == faulty else None
        end = pick(draw, b"\n", b"", b"XY", b"\r", b"\r\r\n") if own == "chunk data end" else b"\r\n"
        out.append(draw(chunk_line(size, own)) + body[i:i + size] + end)
        i += size
    own = fault if faulty == len(sizes) else None
    out.append(draw(chunk_line(0, own if own != "chunk size" else None)))
    trailers = draw(field_lines(None, max_size=2))
    if fault == "trailers":
        trailer_fault = pick(draw, "framing", "field name", "field value", "obs-fold", "bare LF")
        if trailer_fault == "framing":
            trailers.append(pick(draw, b"Content-Length: 3", b"Transfer-Encoding: chunked",
                                 b"transfer-encoding: gzip"))
        elif trailer_fault == "bare LF":
            return b"".join(out) + join_lines(draw, trailers, "bare LF")
        else:
            trailers = draw(field_lines(trailer_fault, max_size=2))
    out.append(join_lines(draw, trailers, None))
    return b"".join(out)


@st.composite
def framing_lines(draw, kind: str, n: int, fault: str | None) -> list[bytes]:
    if fault == "framing":
        return pick(draw,
                    [b"Content-Length: %d" % n, b"Transfer-Encoding: chunked"],
                    [b"Transfer-Encoding: chunked", b"Content-Length: %d" % n],
                    [b"Content-Length: %d" % n] * 2,
                    [b"Content-Length: %d" % n, b"Content-Length: %d" % (n + 1)],
                    [b"Content-Length: %d, %d" % (n, n)],
                    [b"Content-Length: +%d" % n], [b"Content-Length: 0%020d" % n],
                    [b"Content-Length: 18446744073709551616"], [b"Content-Length:"],
                    [b"Content-Length: -1"], [b"Transfer-Encoding: gzip"],
                    [b"Transfer-Encoding: gzip, chunked"], [b"Transfer-Encoding: chunked, gzip"],
                    [b"Transfer-Encoding: chunked ,"], [b"Transfer-Encoding:"],
                    [b"Transfer-Encoding: chunked"] * 2)
    if kind == "length":
        return [pick(draw, b"Content-Length: %d" % n, b"content-length: 00%d" % n,
                     b"Content-Length:  %d \t" % n)]
    if kind == "chunked":
        return [pick(draw, b"Transfer-Encoding: chunked", b"transfer-encoding: Chunked")]
    if kind == "huge length":
        return [pick(draw, b"Content-Length: 18446744073709551615", b"Content-Length: 99999999")]
    return []


@st.composite
def responses(draw) -> tuple[bytes, bytes]:
    """(method, the bytes an upstream sends)."""
    fault = draw(st.sampled_from(FAULTS)) if chance(draw, 2) else None
    method = pick(draw, b"POST", b"GET", b"HEAD")
    body = pick(draw, st.binary(max_size=300), b"", b'data: {"a":1}\n\n', b"HTTP/1.1 200 OK\r\n\r\n",
                b"0\r\n\r\n")
    kind = pick(draw, "length", "chunked", "none", "huge length")
    if fault in ("chunk size", "chunk extension", "chunk data end", "chunk line end", "trailers"):
        kind = "chunked"
    head_fault = fault if fault in ("start", "version", "status", "reason") else None
    field_fault = fault if fault in ("field name", "field separator", "field value", "obs-fold") else None
    lines = [draw(status_lines(head_fault))] + draw(field_lines(field_fault))
    if chance(draw, 3):
        lines.append(pick(draw, b"Connection: close", b"Connection: keep-alive",
                          b"Connection: Keep-Alive, CLOSE", b"Connection: upgrade\r\nUpgrade: h2c",
                          b"Keep-Alive: timeout=5"))
    if kind == "chunked" and not body and chance(draw, 2):
        body = b"x"
    at = draw(st.integers(1, len(lines)))
    lines[at:at] = draw(framing_lines(kind, len(body), fault))
    if fault == "head too large" or chance(draw, 25):  # a head at the edge of the limit
        size = len(join_lines(draw, lines + [b"X-Pad: "], None))
        target = MAX_HEAD + draw(st.integers(1, 4) if fault == "head too large" else st.integers(-3, 0))
        lines.append(b"X-Pad: " + b"p" * (target - size))
    head = draw(informational_heads(fault)) + join_lines(draw, lines, "bare LF" if fault == "bare LF"
                                                         else None)
    payload = draw(chunked_body(body, fault)) if kind == "chunked" else body
    if (method == b"HEAD" or lines[0][9:12] in (b"204", b"304")) and not chance(draw, 8):
        payload = b""  # no body to send, as a server would
    after = pick(draw, b"", b"", b"\r\n", b"\r\n\r\n", b"\n")
    if fault == "after the end":
        after = pick(draw, b"X", b"\r\nX", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
                     b"HTTP/1.1 204 No Content\r\n\r\n", b"\x00")
    data = head + payload + after
    if fault == "close early":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    return method, data


@st.composite
def cuts(draw, data: bytes) -> list[int]:
    """Where the reads end: nowhere, anywhere, or everywhere (short data)."""
    if not data:
        return []
    if len(data) < 2000 and chance(draw, 8):
        return list(range(1, len(data)))
    return draw(st.lists(st.integers(1, len(data)), max_size=8))
