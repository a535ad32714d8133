"""The two readers against each other: generated responses, valid and broken,
cut into reads at random points, fed to llhttp and to the h11 twin. They must
give the same events, the same bodies, the same end (and the same verdict on
reuse), or the same error class after the same events (STYLE.md, habit 13).

Errors may surface at different reads (llhttp sees a bad byte as it arrives,
h11 often at the end of its line); what was delivered before them may not
differ. When one reader has failed and the other is still waiting for more,
the other is told the connection closed, and must fail too."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aperture.errors import BadGateway
from aperture.upstream.h11_reader import H11Reader
from aperture.upstream.llhttp_reader import LlhttpReader

from .helpers import Trace
from .strategies import cuts, responses

PROPS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PIPELINED = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nho\r\n0\r\n\r\n")


def compare(method: bytes, data: bytes, at: list[int], eof: bool) -> tuple[Trace, Trace]:
    native = Trace(LlhttpReader, method, data, at, eof)
    twin = Trace(H11Reader, method, data, at, eof)
    if native.error is None and twin.error is None:
        assert native.steps == twin.steps  # read by read
        assert native.reader.done == twin.reader.done
        assert native.reader.reusable == twin.reader.reusable
        return native, twin
    for late in (native, twin):
        if late.error is None and not late.eof:
            late.finish_quietly()
    assert native.error is not None and twin.error is not None, (native.error, twin.error)
    assert isinstance(native.error, BadGateway) and isinstance(twin.error, BadGateway)
    assert native.events == twin.events
    if len(native.steps) == len(twin.steps) and native.eof == twin.eof:
        assert type(native.error) is type(twin.error), (native.error, twin.error)
    assert not native.reader.reusable and not twin.reader.reusable
    return native, twin


@PROPS
@given(st.data())
def test_readers_agree_on_generated_responses(data):
    method, raw = data.draw(responses())
    at = data.draw(cuts(raw))
    compare(method, raw, at, data.draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, len(PIPELINED) - 1), max_size=6), st.booleans())
@example([], True)
def test_readers_agree_on_two_pipelined_responses(at, eof):
    native, twin = compare(b"GET", PIPELINED, at, eof)
    assert native.body == b"hi" and native.reader.done
    assert isinstance(native.error, BadGateway)  # data after the end: the second response


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(1, 200), max_size=5), st.booleans())
def test_readers_agree_on_noise(noise, at, eof):
    """Random bytes, or random bytes after a valid head: correct, or the
    declared error, never a crash."""
    compare(b"GET", noise, at, eof)
    compare(b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + noise, at, eof)
