"""The rules of aperture/upstream/http1.py, one by one, on both readers (the
`reader_class` fixture runs each test with llhttp and with the h11 twin)."""

from __future__ import annotations

import pytest

from aperture.errors import BadGateway
from aperture.upstream.events import END, BodyChunk, ResponseHead
from aperture.upstream.http1 import MAX_HEAD, MAX_INFORMATIONAL, UpstreamClosed

from .helpers import trace

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
EndOfMessageType = type(END)
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3;note=\"a b\"\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")


def every_split(data: bytes):
    """Every single cut, and byte by byte."""
    return [(i,) for i in range(1, len(data))] + [tuple(range(1, len(data)))]


# -- framing -------------------------------------------------------------------


def test_content_length_in_one_read(reader_class):
    t = trace(reader_class, OK_3, eof=False)
    assert t.steps == [[ResponseHead(200, b"OK", [(b"content-length", b"3")]), BodyChunk(b"abc"), END]]
    assert t.reader.done and t.reader.reusable and t.error is None


@pytest.mark.parametrize("data", [OK_3, CHUNKED])
def test_any_split_gives_the_same_response(reader_class, data):
    whole = trace(reader_class, data, eof=False)
    for cuts in every_split(data):
        t = trace(reader_class, data, cuts, eof=False)
        assert t.events == whole.events, cuts
        assert t.reader.reusable


def test_chunked_body_extensions_ignored_trailers_dropped(reader_class):
    t = trace(reader_class, CHUNKED, eof=False)
    assert t.head.headers == [(b"transfer-encoding", b"chunked")]
    assert t.body == b"abc0123456789"
    assert t.ended and t.reader.reusable


def test_one_read_gives_at_most_one_chunk(reader_class):
    t = trace(reader_class, CHUNKED, eof=False)
    assert [type(e) for e in t.steps[0]] == [ResponseHead, BodyChunk, EndOfMessageType]


def test_informational_heads_are_skipped(reader_class):
    data = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
            b"HTTP/1.0 102 Processing\r\nConnection: close\r\n\r\n"
            b"HTTP/1.1 199 Whatever\r\nContent-Length: 5\r\n\r\n" + OK_3)  # 1xx: never a body
    for cuts in [(), (5,), (25, 26, 27), (len(data) - 40,)]:
        t = trace(reader_class, data, cuts, eof=False)
        assert t.events == trace(reader_class, OK_3, eof=False).events
        assert t.reader.reusable


def test_switching_protocols_is_refused(reader_class):
    t = trace(reader_class, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", eof=False)
    assert isinstance(t.raised, BadGateway) and t.events == []


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_for_204_and_304(reader_class, status):
    data = b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status
    t = trace(reader_class, data, eof=False)
    assert [type(e) for e in t.events] == [ResponseHead, EndOfMessageType]
    assert t.reader.reusable


def test_head_request_ends_at_the_head(reader_class):
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding-X: y\r\n\r\n"
    for cuts in [(), (len(data) - 1,), (len(data) - 2,)]:
        t = trace(reader_class, data, cuts, method=b"HEAD", eof=False)
        assert [type(e) for e in t.events] == [ResponseHead, EndOfMessageType]
        assert t.reader.reusable


def test_head_request_with_a_body_after_the_head(reader_class):
    t = trace(reader_class, OK_3, method=b"HEAD", eof=False)
    assert [type(e) for e in t.events] == [ResponseHead, EndOfMessageType]
    assert isinstance(t.reader.error, BadGateway) and not t.reader.reusable


def test_close_delimited_body(reader_class):
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this"
    t = trace(reader_class, data, (20, 50), eof=False)
    assert t.body == b"all of this" and not t.ended and not t.reader.done
    t.finish()
    assert t.ended and t.error is None
    assert not t.reader.reusable  # never: the close was its end


def test_empty_chunked_and_zero_length(reader_class):
    for data in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n000\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"):
        t = trace(reader_class, data, eof=False)
        assert [type(e) for e in t.events] == [ResponseHead, EndOfMessageType]
        assert t.reader.reusable


# -- reuse ---------------------------------------------------------------------


@pytest.mark.parametrize("data, reusable", [
    (OK_3, True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc", False),
    (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 3\r\n\r\nabc", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc", False),
    (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", False),
    (OK_3 + b"\r\n\r\n", True),  # CR and LF after the end are ignored
])
def test_reuse(reader_class, data, reusable):
    t = trace(reader_class, data, eof=False)
    assert t.body == b"abc" and t.ended and t.error is None
    assert t.reader.reusable is reusable


@pytest.mark.parametrize("after", [b"X", b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", OK_3])
def test_data_after_the_end(reader_class, after):
    # in the same read: the events first, the error kept for the next call
    t = trace(reader_class, OK_3 + after, eof=False)
    assert t.body == b"abc" and t.ended and t.raised is None
    assert isinstance(t.reader.error, BadGateway) and not t.reader.reusable
    with pytest.raises(BadGateway):
        t.reader.feed(b"")
    # in a later read: raised at once
    t = trace(reader_class, OK_3 + after, (len(OK_3),), eof=False)
    assert t.ended and isinstance(t.raised, BadGateway) and not t.reader.reusable


def test_data_after_the_end_of_a_connection_close_response(reader_class):
    data = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabcX"
    t = trace(reader_class, data, eof=False)
    assert t.ended and isinstance(t.reader.error, BadGateway)


def test_a_reader_serves_cycle_after_cycle(reader_class):
    reader = reader_class()
    for method in (b"GET", b"HEAD", b"POST", b"GET"):
        reader.start(method)
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n" + (b"" if method == b"HEAD" else b"abc")
        events = reader.feed(data)
        assert events[-1] is END and reader.reusable


# -- closes --------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"HTTP/1.1 200", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"])
def test_close_before_the_head(reader_class, data):
    t = trace(reader_class, data)
    assert type(t.raised) is UpstreamClosed and t.events == []


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: 1\r\n",
])
def test_close_mid_body(reader_class, data):
    t = trace(reader_class, data)
    assert t.body == b"abc" and not t.ended
    assert type(t.error) is BadGateway
    assert "closed the connection mid-response" in t.error.message


# -- the head ------------------------------------------------------------------


def test_fields_keep_order_and_repeats_lowercased_and_trimmed(reader_class):
    data = (b"HTTP/1.1 200 Fine Thanks \r\nX-A:  one \t\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
            b"X-Empty:\r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n")
    t = trace(reader_class, data, eof=False)
    assert t.head == ResponseHead(200, b"Fine Thanks ", [
        (b"x-a", b"one"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-empty", b""),
        (b"x-obs", b"caf\xc3\xa9"), (b"content-length", b"0")])


def test_reason_split_across_reads(reader_class):
    data = b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n"
    for cut in range(13, 28):
        assert trace(reader_class, data, (cut,), eof=False).head.reason == b"Not Found Here"


def head_of_size(size: int) -> bytes:
    """A final head of exactly `size` bytes (then a 1-byte body)."""
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize("size, ok", [(MAX_HEAD - 1, True), (MAX_HEAD, True), (MAX_HEAD + 1, False)])
def test_head_size_limit_whatever_the_reads(reader_class, size, ok):
    head = head_of_size(size)
    assert len(head) == size
    for cuts in [(), (size - 1,), (size - 2,), (size - 3,), (size - 4,), (100, 70000), (MAX_HEAD,),
                 (MAX_HEAD + 1,), tuple(range(4096, size, 4096))]:
        t = trace(reader_class, head + b"x", cuts, eof=False)
        if ok:
            assert t.body == b"x" and t.ended, cuts
        else:
            assert isinstance(t.error, BadGateway) and t.events == [], cuts
            assert "larger than 65536" in t.error.message


def test_head_size_counts_each_informational_head_apart(reader_class):
    info = head_of_size(MAX_HEAD).replace(b"200 OK", b"103 OK").replace(b"Content-Length: 1", b"X-Hint: 1")
    t = trace(reader_class, info + head_of_size(MAX_HEAD) + b"x", eof=False)
    assert t.body == b"x"


@pytest.mark.parametrize("count, ok", [(MAX_INFORMATIONAL, True), (MAX_INFORMATIONAL + 1, False)])
def test_informational_heads_are_bounded_in_number(reader_class, count, ok):
    data = b"HTTP/1.1 100 Continue\r\n\r\n" * count + OK_3
    for cuts in [(), tuple(range(25, len(data), 25)), tuple(range(1, len(data), 7))]:
        t = trace(reader_class, data, cuts, eof=False)
        if ok:
            assert t.body == b"abc" and t.ended, cuts
        else:
            assert isinstance(t.error, BadGateway) and t.events == [], cuts
            assert "more than 100 informational (1xx) heads" in t.error.message


def test_informational_heads_are_bounded_in_bytes_together(reader_class):
    half = head_of_size(MAX_HEAD // 2 + 9).replace(b"200 OK", b"103 OK").replace(
        b"Content-Length: 1", b"X-Hint: 1")
    assert len(half) == MAX_HEAD // 2 + 1
    t = trace(reader_class, half + half + OK_3, eof=False)
    assert isinstance(t.error, BadGateway) and t.events == []
    assert "informational (1xx) heads larger than 65536 bytes together" in t.error.message


def test_unending_head_is_refused_once_over_the_limit(reader_class):
    reader = reader_class()
    reader.start(b"GET")
    reader.feed(b"HTTP/1.1 200 OK\r\nX-Pad: ")
    with pytest.raises(BadGateway, match="larger than"):
        for _ in range(20):
            reader.feed(b"p" * 4096)


MALFORMED = {
    "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "bare LF in a field": b"HTTP/1.1 200 OK\r\nX: 1\nContent-Length: 0\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "leading CRLF": b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "RTSP": b"RTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "lowercase": b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.2": b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "HTTP/2.0": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "status 099": b"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n",
    "status 4 digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "status tab": b"HTTP/1.1 200\tOK\r\nContent-Length: 0\r\n\r\n",
    "NUL in reason": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n",
    "control in reason": b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
    "control in value": b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
    "DEL in value": b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 0\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nX : 1\r\nContent-Length: 0\r\n\r\n",
    "no colon": b"HTTP/1.1 200 OK\r\nX\r\nContent-Length: 0\r\n\r\n",
    "bad name": b"HTTP/1.1 200 OK\r\nX{: 1\r\nContent-Length: 0\r\n\r\n",
    "CL and TE": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "CL twice, equal": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "CL twice, different": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    "CL list": b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
    "CL sign": b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
    "CL negative": b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc",
    "CL empty": b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\nabc",
    "CL 2^64": b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\nabc",
    "CL 21 digits": b"HTTP/1.1 200 OK\r\nContent-Length: 000000000000000000003\r\n\r\nabc",
    "TE gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "TE gzip, chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "TE twice": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n"),
    "CL twice in a 1xx": (b"HTTP/1.1 100 Continue\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
                          + OK_3),
    "101": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_heads(reader_class, name):
    data = MALFORMED[name]
    for cuts in [(), (len(data) // 2,), tuple(range(1, len(data)))]:
        t = trace(reader_class, data, cuts)
        assert type(t.error) is BadGateway, (name, cuts)
        assert t.events == []


def test_status_and_empty_reason(reader_class):
    for line, reason in [(b"HTTP/1.1 200", b""), (b"HTTP/1.1 200 ", b""), (b"HTTP/1.1 200  OK", b" OK"),
                         (b"HTTP/1.1 599 \xc3\xa9\ttab", b"\xc3\xa9\ttab")]:
        t = trace(reader_class, line + b"\r\nContent-Length: 0\r\n\r\n", eof=False)
        assert t.head.reason == reason and t.ended


# -- chunks and trailers ---------------------------------------------------------

BAD_CHUNKS = {
    "space after size": b"3 \r\nabc\r\n0\r\n\r\n",
    "space before ext": b"3 ;a\r\nabc\r\n0\r\n\r\n",
    "space in ext": b"3;a b\r\nabc\r\n0\r\n\r\n",
    "ext ends with ;": b"3;a=b;\r\nabc\r\n0\r\n\r\n",
    "ext bad quoted char": b'3;a="\x01"\r\nabc\r\n0\r\n\r\n',
    "ext text after quote": b'3;a="b"c\r\nabc\r\n0\r\n\r\n',
    "not hex": b"3g\r\nabc\r\n0\r\n\r\n",
    "negative": b"-3\r\nabc\r\n0\r\n\r\n",
    "empty size": b"\r\nabc\r\n0\r\n\r\n",
    "overflow": b"10000000000000000\r\nabc\r\n0\r\n\r\n",
    "bare LF after size": b"3\nabc\r\n0\r\n\r\n",
    "no CRLF after data": b"3\r\nabcXY0\r\n\r\n",
    "bare LF after data": b"3\r\nabc\n0\r\n\r\n",
    "last chunk bad ext": b"3\r\nabc\r\n0;\r\n\r\n",
    "trailer bare LF": b"3\r\nabc\r\n0\r\nX: 1\n\r\n",
    "trailer end bare LF": b"3\r\nabc\r\n0\r\n\n",
    "trailer obs-fold": b"3\r\nabc\r\n0\r\nX: 1\r\n y\r\n\r\n",
    "trailer control": b"3\r\nabc\r\n0\r\nX: \x01\r\n\r\n",
    "trailer CL": b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n",
    "trailer TE": b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "trailer space before colon": b"3\r\nabc\r\n0\r\nX : 1\r\n\r\n",
}


@pytest.mark.parametrize("name", BAD_CHUNKS)
def test_malformed_chunked_bodies(reader_class, name):
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + BAD_CHUNKS[name]
    for cuts in [(), (len(data) - 3,), tuple(range(1, len(data)))]:
        t = trace(reader_class, data, cuts)
        assert type(t.error) is BadGateway, (name, cuts)
        assert not t.ended
        assert t.body in (b"", b"abc")  # what came before the fault, never after it


def test_chunk_sizes_and_extensions_that_pass(reader_class):
    body = (b"00003;a;b=c;d=\"e \\\" f\"\r\nabc\r\n"
            b"a;=x;y=\r\n0123456789\r\n"
            b"FfFfFfFfFfFfFfF0;z=\"\x80\t \"\r\n")  # a huge chunk, announced; never sent in full
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"xyz"
    t = trace(reader_class, data, eof=False)
    assert t.body == b"abc0123456789xyz" and not t.ended and t.error is None


def test_body_before_a_bad_chunk_line_is_delivered(reader_class):
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
    t = trace(reader_class, data, eof=False)
    assert t.body == b"abc" and t.raised is None and isinstance(t.reader.error, BadGateway)
    with pytest.raises(BadGateway):
        t.reader.feed(b"more")
