"""The native meters and scanner against their pure twins on inputs no
provider sends: every framing with every extractor (also the pairs outside
`strategies.REGISTRY`), fed random bytes, or a provider's stream or body read
under another dialect, damaged or not, split at random points. Both must read
alike after every chunk, and never raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.meter.helpers import PROPS, _native, _pure, needs_native, observe, run
from tests.meter.strategies import REGISTRY, corrupted_input, valid_input

FRAMINGS = ("sse", "eventstream", "json_array", "json")
DIALECTS = ("anthropic", "openai_chat", "openai_responses", "gemini", "converse")
ALL_PAIRS = [pytest.param(f, d, id=f"{f}-{d}") for f in FRAMINGS for d in DIALECTS]
SOUP = st.lists(st.sampled_from([
    b"data: ", b"event: ", b"\n", b"\r\n", b"\n\n", b":", b"{", b"}", b"[", b"]", b",", b'"', b"\\",
    b'"usage"', b'"type"', b'"message_start"', b'"input_tokens"', b"12", b"-1", b"1e999", b"null",
    b'"usageMetadata"', b'"promptTokenCount"', b"\x00\x00\x00\x10", b"\xff", b"\xc3", b":event-type",
    b"[DONE]", b'"response.completed"', b'"tool_use"', b'"name"', b'"id"']), max_size=60).map(b"".join)


@st.composite
def foreign_input(draw, framing: str):
    """Bytes for `framing`: random, a token soup, or the input of a provider
    pair with this framing (valid or damaged), whatever its dialect."""
    kind = draw(st.sampled_from(["random", "soup", "valid", "damaged"]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    if kind == "soup":
        return draw(SOUP)
    framing_pairs = [(f, d) for f, d in REGISTRY if f == framing]
    f, d = draw(st.sampled_from(framing_pairs))
    if kind == "valid":
        return draw(valid_input(f, d))[0]
    return draw(corrupted_input(f, d))


@needs_native
@pytest.mark.parametrize(("framing", "dialect"), ALL_PAIRS)
@PROPS
@given(data=st.data())
def test_every_framing_and_extractor_reads_alike_on_foreign_input(framing, dialect, data):
    body = data.draw(foreign_input(framing))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    meters = [_pure.Meter(framing, dialect), _native.Meter(framing, dialect)]
    prev = 0
    for c in [*cuts, len(body)]:
        for m in meters:
            m.feed(body[prev:c])
        prev = c
        pure, native = (observe(m) for m in meters)
        assert native == pure
    for m in meters:
        m.finish()
    pure, native = (observe(m) for m in meters)
    assert native == pure
    assert pure == observe(run(_pure, framing, dialect, body))


def scan(mod, body: bytes, cuts) -> tuple:
    s = mod.ModelScanner()
    statuses = []
    prev = 0
    for c in [*cuts, len(body)]:
        statuses.append(s.feed(body[prev:c]))
        prev = c
    statuses.append(s.finish())
    return statuses, s.model, s.error, s.offset, s.model_start, s.model_end


@needs_native
@PROPS
@given(data=st.data())
def test_the_model_scanner_reads_random_bytes_alike(data):
    body = data.draw(st.binary(max_size=300) | SOUP | st.builds(
        lambda a, b: b'{"model":' + a + b, st.sampled_from([b'"m"', b"1", b"[", b'"\\u', b'"x\xff"']),
        st.binary(max_size=40)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    assert scan(_native, body, cuts) == scan(_pure, body, cuts)
