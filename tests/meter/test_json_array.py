"""The "json_array" framing (Gemini's streamed array without alt=sse,
wire-formats.md §4.5): element boundaries from depth, strings and escapes
only, whitespace anywhere, structural damage, completeness."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.meter.helpers import IMPLS, PROPS, _native, _pure, observe, run

DONE = {"candidates": [{"finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}


def array(*elements: str, ws: str = "") -> bytes:
    return (ws + "[" + ws + ("," + ws).join(elements) + ws + "]" + ws).encode()


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("ws", ["", " ", "\r\n", "\n\t ", "  \r\n  "])
def test_elements_with_whitespace_anywhere(mod, ws):
    tricky = {"candidates": [{"content": {"parts": [{"text": 'x]}{[,"\\'}]}}]}
    data = array(json.dumps(tricky, indent=1), json.dumps(DONE, indent=2), ws=ws)
    for cuts in ((), range(1, len(data))):
        assert observe(run(mod, "json_array", "gemini", data, cuts)) == (2, 0, True, None, None, (3, 2, 0, 0, 0), [])


@pytest.mark.parametrize("mod", IMPLS)
def test_completeness_needs_the_closing_bracket(mod):
    data = array(json.dumps(DONE))
    m = run(mod, "json_array", "gemini", data[:-1])
    assert (m.events, m.complete) == (1, False)
    m.feed(b"]")  # after finish(): ignored
    assert m.complete is False
    m = run(mod, "json_array", "gemini", data, finish=False)
    assert m.complete is True
    assert run(mod, "json_array", "gemini", b"[]").complete is False  # no finish reason
    assert run(mod, "json_array", "gemini", b"").complete is False


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    ("data", "events", "bad"),
    [
        (b"{}", 0, 1),  # not an array
        (b"\xef\xbb\xbf[]", 0, 1),
        (b"[{} {}]", 1, 1),  # no comma
        (b"[{},]", 1, 1),  # a comma then the close
        (b"[,{}]", 0, 1),
        (b"[{}:{}]", 1, 1),
        (b"[}]", 0, 1),
        (b"[{}] x", 1, 1),  # after the close
        (b"[{}]]", 1, 1),
        (b"[{}][{}]", 1, 1),
    ],
)
def test_structural_damage_ends_the_reading(mod, data, events, bad):
    m = run(mod, "json_array", "gemini", data + b"," + json.dumps(DONE).encode() + b"]")
    assert (m.events, m.bad_events) == (events, bad)


@pytest.mark.parametrize("mod", IMPLS)
def test_elements_that_are_not_response_objects(mod):
    data = b'[1, "s,]", true, null, [{"usageMetadata": 1}], {"usageMetadata": 1} , {"usageMetadata":}]'
    # scalars and arrays without markers are not parsed; a bad object is a bad event
    m = run(mod, "json_array", "gemini", data)
    assert (m.events, m.bad_events, m.complete) == (7, 2, False)


@pytest.mark.parametrize("mod", IMPLS)
def test_a_cut_inside_an_escape(mod):
    element = json.dumps({"candidates": [{"finishReason": "STOP", "content": {"parts": [{"text": '\\"]'}]}}]})
    data = ("[" + element + "]").encode()
    k = data.index(b"\\\\")
    for cuts in ([k + 1], [k + 1, k + 2], [k, k + 1, k + 2, k + 3]):
        m = run(mod, "json_array", "gemini", data, cuts)
        assert (m.events, m.bad_events, m.complete) == (1, 0, True)


JSONISH = st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b" ", b"\r\n", b"1", b"x", b'{"a":"b"}'])


@PROPS
@given(pieces=st.lists(JSONISH, max_size=40), data=st.data())
def test_any_bytes_read_alike_however_split(pieces, data):
    body = b"".join(pieces)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    got = observe(run(_pure, "json_array", "gemini", body, cuts))
    assert got == observe(run(_pure, "json_array", "gemini", body))
    if _native is not None:
        assert observe(run(_native, "json_array", "gemini", body, cuts)) == got
        assert observe(run(_native, "json_array", "gemini", body)) == got
