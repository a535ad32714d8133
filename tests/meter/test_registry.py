"""Every framing × dialect pair providers send, under random valid inputs (the
reading must be the one the generator accounts for) and random damage (both
implementations must read alike, however the bytes are split, and never
raise). Parametrized over `strategies.REGISTRY`, so a new pair is covered by
adding it there."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.meter.helpers import IMPLS, MAX_EVENT_BYTES, PROPS, _native, _pure, observe, run
from tests.meter.strategies import REGISTRY, corrupted_input, valid_input

PAIRS = [pytest.param(f, d, id=f"{f}-{d}") for f, d in REGISTRY]
U64 = (1 << 64) - 1


def cut_points(n: int):
    return st.lists(st.integers(0, n), max_size=12)


@pytest.mark.parametrize(("framing", "dialect"), PAIRS)
@PROPS
@given(data=st.data())
def test_valid_inputs(framing, dialect, data):
    body, want = data.draw(valid_input(framing, dialect))
    cuts = data.draw(cut_points(len(body)))
    assert observe(run(_pure, framing, dialect, body, cuts)) == want
    if _native is not None:
        assert observe(run(_native, framing, dialect, body, cuts)) == want
        assert observe(run(_native, framing, dialect, body, range(1, len(body)))) == want


@pytest.mark.parametrize(("framing", "dialect"), PAIRS)
@PROPS
@given(data=st.data())
def test_damaged_inputs_read_alike(framing, dialect, data):
    body = data.draw(corrupted_input(framing, dialect))
    cuts = sorted(data.draw(cut_points(len(body))))
    meters = [mod.Meter(framing, dialect) for mod in (_pure, _native) if mod is not None]
    prev = 0
    for c in [*cuts, len(body)]:
        for m in meters:
            m.feed(body[prev:c])
        prev = c
        readings = [observe(m) for m in meters]  # alike at every step, not only at the end
        assert readings.count(readings[0]) == len(readings)
    for m in meters:
        m.finish()
    got = observe(meters[0])
    assert all(observe(m) == got for m in meters)
    assert got == observe(run(_pure, framing, dialect, body))
    events, bad, _, error, rid, usage, calls = got
    assert 0 <= bad and 0 <= events
    assert all(0 <= u <= U64 for u in usage)
    assert error is None or isinstance(error, str)
    assert rid is None or isinstance(rid, str)
    assert all(isinstance(n, str) and isinstance(a, str) for n, a in calls)


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(("framing", "dialect"), PAIRS)
def test_finish_is_idempotent_and_ends_the_body(mod, framing, dialect):
    m = mod.Meter(framing, dialect)
    m.finish()
    before = observe(m)
    m.finish()
    m.feed(b'data: {"type":"message_stop"}\n\n[{"candidates":[]}]{}')
    assert observe(m) == before
    assert before[:2] == ((0, 1) if framing == "json" else (0, 0))  # an empty body is not a JSON object


@pytest.mark.parametrize("mod", IMPLS)
def test_unknown_names(mod):
    with pytest.raises(ValueError) as e:
        mod.Meter("websocket", "anthropic")
    assert str(e.value) == "unknown meter framing: 'websocket' (expected one of sse, eventstream, json_array, json)"
    with pytest.raises(ValueError) as e:
        mod.Meter("sse", "cohere")
    assert str(e.value) == (
        "unknown meter dialect: 'cohere' (expected one of anthropic, openai_chat, openai_responses, gemini, converse)"
    )
    with pytest.raises(TypeError):
        mod.Meter("sse", None)


@pytest.mark.parametrize("mod", IMPLS)
def test_every_combination_is_accepted(mod):
    for framing in ("sse", "eventstream", "json_array", "json"):
        for dialect in ("anthropic", "openai_chat", "openai_responses", "gemini", "converse"):
            m = mod.Meter(framing, dialect)
            m.feed(bytearray(b"[{}]"))
            m.finish()


@pytest.mark.parametrize("mod", IMPLS)
def test_bytearray_chunks(mod):
    m = mod.Meter("sse", "openai_chat")
    chunk = bytearray(b"data: [DO")
    m.feed(chunk)
    chunk[:] = b"XXXXXXXXX"  # the meter kept a copy
    m.feed(b"NE]\n\n")
    assert m.complete


# ---------------------------------------------------------------------------
# Oversized parts: skipped and counted, never buffered, the reading goes on
# ---------------------------------------------------------------------------


def _padded(head: str, size: int) -> bytes:
    """A JSON object of exactly `size` bytes: `head` plus a "pad" string."""
    stub = head[:-1] + ',"pad":""}'
    return (stub[:-2] + "x" * (size - len(stub)) + '"}').encode()


@pytest.mark.parametrize("mod", IMPLS)
def test_oversized_array_element(mod):
    finished = '{"candidates":[{"finishReason":"STOP"}]}'
    at_bound = _padded(finished, MAX_EVENT_BYTES)
    m = mod.Meter("json_array", "gemini")
    m.feed(b"[" + at_bound + b",")
    m.feed(b'{"pad":"' + b"y" * MAX_EVENT_BYTES)
    m.feed(b'"},' + finished.encode() + b"]")
    m.finish()
    assert (m.events, m.bad_events, m.complete) == (3, 1, True)


@pytest.mark.parametrize("mod", IMPLS)
def test_oversized_json_body(mod):
    body = _padded('{"usage":{"input_tokens":5}}', MAX_EVENT_BYTES)
    m = run(mod, "json", "anthropic", body, [7, 1 << 20])
    assert (m.events, m.bad_events, m.complete, m.usage()) == (1, 0, True, (5, 0, 0, 0, 0))
    m = run(mod, "json", "anthropic", body + b" ", [7, MAX_EVENT_BYTES])
    assert (m.events, m.bad_events, m.complete, m.usage()) == (0, 1, False, (0, 0, 0, 0, 0))


@pytest.mark.parametrize("mod", IMPLS)
def test_oversized_event_stream_parts(mod):
    from aperture.sim.eventstream import event
    from tests.meter.strategies import typed_message

    payload = _padded('{"usage":{"inputTokens":3}}', 24 * 1024 * 1024)
    at_bound = event("metadata", payload)
    m = run(mod, "eventstream", "converse", at_bound, [5, 100, 1 << 20])
    assert (m.events, m.bad_events, m.complete, m.usage()) == (1, 0, True, (3, 0, 0, 0, 0))
    over = event("metadata", payload + b" ")
    m = run(mod, "eventstream", "converse", over + at_bound, [30])
    # the lengths can't be trusted: one bad event, and nothing after it is read
    assert (m.events, m.bad_events, m.complete) == (0, 1, False)
    # a header section of exactly 128 KiB is read, one byte more is refused
    standard = [(":event-type", 7, b"\x00\x08metadata"), (":message-type", 7, b"\x00\x05event")]  # 45 bytes
    for extra, want in ((0, (1, 0, True)), (1, (0, 1, False))):
        size = 128 * 1024 - 45 - 10 - 65535 + extra
        blobs = [("a", 6, b"\xff\xff" + b"a" * 65535), ("b", 6, size.to_bytes(2, "big") + b"b" * size)]
        m = run(mod, "eventstream", "converse", typed_message([*blobs, *standard], b"{}"), [3])
        assert (m.events, m.bad_events, m.complete) == want
