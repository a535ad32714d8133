"""Requests as bytes (http1.encode_request, encode_chunk): the exact bytes, and
what two independent parsers (h11 as a server, llhttp through httptools) read
back from them, on generated requests cut into chunks."""

from __future__ import annotations

import h11
import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.errors import BadGateway
from aperture.upstream.http1 import CRLF, LAST_CHUNK, chunk_head, encode_request

HEADERS = [(b"host", b"api.example.com"), (b"x-api-key", b"sk-1"), (b"accept-encoding", b"identity")]


def test_length_framed_request():
    assert encode_request(b"POST", b"/v1/messages?beta=true", HEADERS, 7, b'{"a":1}', True) == (
        b"POST /v1/messages?beta=true HTTP/1.1\r\nhost: api.example.com\r\nx-api-key: sk-1\r\n"
        b"accept-encoding: identity\r\ncontent-length: 7\r\n\r\n{\"a\":1}")


def test_length_framed_request_whose_body_follows():
    assert encode_request(b"POST", b"/", HEADERS[:1], 100, b"start", False).endswith(
        b"content-length: 100\r\n\r\nstart")


def test_chunked_request():
    head = b"POST / HTTP/1.1\r\nhost: api.example.com\r\ntransfer-encoding: chunked\r\n\r\n"
    assert encode_request(b"POST", b"/", HEADERS[:1], None) == head
    assert encode_request(b"POST", b"/", HEADERS[:1], None, b"x" * 26) == (
        head + b"1a\r\n" + b"x" * 26 + b"\r\n")
    assert encode_request(b"POST", b"/", HEADERS[:1], None, b"", True) == head + b"0\r\n\r\n"
    assert encode_request(b"POST", b"/", HEADERS[:1], None, b"ab", True) == head + b"2\r\nab\r\n0\r\n\r\n"
    assert chunk_head(26) + b"x" * 26 + CRLF == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


@pytest.mark.parametrize("target", [b"/a b", b"/a\r\nx: y", b"", b"/\x00", b"/\x7f"])
def test_target_that_http_does_not_allow(target):
    with pytest.raises(BadGateway, match="cannot send request upstream"):
        encode_request(b"GET", target, HEADERS, 0)


tokens = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12).map(str.encode)
values = st.binary(max_size=30).map(lambda b: bytes(0x21 + x % 94 for x in b))
targets = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_./?=&%~", max_size=40).map(
    lambda t: b"/" + t.encode())


def read_with_h11(data: bytes, cuts: list[int]):
    conn = h11.Connection(h11.SERVER)
    request, body, ended = None, b"", False
    edges = [0, *sorted(c for c in set(cuts) if 0 < c < len(data)), len(data)]
    for a, b in zip(edges, edges[1:]):
        conn.receive_data(data[a:b])
        while (event := conn.next_event()) is not h11.NEED_DATA:
            if type(event) is h11.Request:
                request = event
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                ended = True
                break
    return request, body, ended


class LlhttpRequest:
    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.ended = False
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.ended = True


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]), targets,
       st.lists(st.tuples(tokens, values), max_size=6), st.lists(st.binary(max_size=50), max_size=4),
       st.booleans(), st.lists(st.integers(1, 2000), max_size=6))
def test_independent_parsers_read_back_what_was_written(method, target, fields, chunks, chunked, cuts):
    fields = [(b"host", b"up.example")] + [(b"x-" + n, v) for n, v in fields]
    body = b"".join(chunks)
    first, rest = (chunks[0], chunks[1:]) if chunks else (b"", [])
    if chunked:
        data = encode_request(method, target, fields, None, first, not rest)
        if rest:
            data += b"".join(chunk_head(len(c)) + c + CRLF for c in rest if c) + LAST_CHUNK
    else:
        data = encode_request(method, target, fields, len(body), first, not rest) + b"".join(rest)
    framing = (b"transfer-encoding", b"chunked") if chunked else (b"content-length", b"%d" % len(body))

    request, got, ended = read_with_h11(data, cuts)
    assert ended and got == body
    assert (request.method, request.target) == (method, target)
    assert list(request.headers) == [*fields, framing]

    seen = LlhttpRequest()
    parser = httptools.HttpRequestParser(seen)
    parser.feed_data(data)
    assert seen.ended and seen.body == body and seen.url == target
    assert parser.get_method() == method
    assert seen.fields == [*fields, framing]
