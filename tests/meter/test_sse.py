"""The "sse" framing with the anthropic and openai_chat dialects: the native
meter and its pure-Python twin, held to the same unit tests, then to each other
and to the generator's own account of random Anthropic / OpenAI streams (random
line endings, padding, pings, comments, tool calls) split at random points, and
of corrupted streams."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture import _pure
from tests.meter.strategies import anthropic_events, fold_anthropic, fold_openai, openai_events, wire

try:
    from aperture import _native
except ImportError:  # extension not built
    _native = None

needs_native = pytest.mark.skipif(_native is None, reason="aperture._native is not built (run `pip install -e .`)")
IMPLS = [pytest.param(_pure, id="pure"), pytest.param(_native, id="native", marks=needs_native)]
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_EVENT_BYTES = 16 * 1024 * 1024


def meter(mod, api: str, stream: bytes, cuts=()):
    m = mod.Meter("sse", api)
    prev = 0
    for c in [*sorted(cuts), len(stream)]:
        m.feed(stream[prev:c])
        prev = c
    return m


def observe(m) -> tuple:
    return m.events, m.bad_events, m.complete, m.error, m.usage(), m.tool_calls()


def compact(v) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------
# The reference examples (wire-formats.md §1.5 and §2.4)
# ---------------------------------------------------------------------------

ANTHROPIC_EXAMPLE = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01Demo","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":250,"cache_creation_input_tokens":0,"cache_read_input_tokens":1200,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking stock."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01Demo","name":"check_stock","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"sku\\": \\"X-9"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":250,"cache_creation_input_tokens":0,"cache_read_input_tokens":1200,"output_tokens":61}}

event: message_stop
data: {"type":"message_stop"}

"""

OPENAI_EXAMPLE = b"""data: {"id":"chatcmpl-demo","object":"chat.completion.chunk","created":1760000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_demo1","type":"function","function":{"name":"check_stock","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-demo","object":"chat.completion.chunk","created":1760000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"sku\\":\\"X-91\\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-demo","object":"chat.completion.chunk","created":1760000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: {"id":"chatcmpl-demo","object":"chat.completion.chunk","created":1760000000,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":812,"completion_tokens":40,"total_tokens":852,"prompt_tokens_details":{"cached_tokens":512},"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

"""


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("step", [None, 1, 7, 100])
def test_anthropic_reference_example(mod, step):
    cuts = range(step, len(ANTHROPIC_EXAMPLE), step) if step else ()
    m = meter(mod, "anthropic", ANTHROPIC_EXAMPLE, cuts)
    assert observe(m) == (12, 0, True, None, (250, 61, 1200, 0, 0), [("check_stock", '{"sku": "X-91"}')])


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("step", [None, 1, 13])
def test_openai_reference_example(mod, step):
    cuts = range(step, len(OPENAI_EXAMPLE), step) if step else ()
    m = meter(mod, "openai_chat", OPENAI_EXAMPLE, cuts)
    assert observe(m) == (5, 0, True, None, (300, 40, 512, 0, 0), [("check_stock", '{"sku":"X-91"}')])


# ---------------------------------------------------------------------------
# SSE framing
# ---------------------------------------------------------------------------

STOP = b'data: {"type":"message_stop"}'


@pytest.mark.parametrize("mod", IMPLS)
def test_unknown_api(mod):
    with pytest.raises(ValueError, match="unknown meter dialect: 'mistral'"):
        mod.Meter("sse", "mistral")


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n", b"\r\r", b"\r\n\n", b"\n\r", b"\r\r\n"])
def test_any_line_ending_and_blank_line(mod, end):
    m = meter(mod, "anthropic", STOP + end)
    assert (m.complete, m.events) == (True, 1)


@pytest.mark.parametrize("mod", IMPLS)
def test_cr_at_chunk_end_then_lf_is_one_line_ending(mod):
    m = mod.Meter("sse", "openai_chat")
    m.feed(b"data: [DONE]\r")
    m.feed(b"")  # an empty chunk in between changes nothing
    m.feed(b"\n")
    assert not m.complete  # CR+LF across chunks ended the line, it is not a blank line
    m.feed(b"\r")
    assert m.complete
    m.feed(b"\ndata: [DONE]\n")  # that LF completes the CRLF: not a second blank line
    assert m.events == 1


@pytest.mark.parametrize("mod", IMPLS)
def test_field_value_loses_one_leading_space_only(mod):
    for line, done in [(b"data:[DONE]", True), (b"data: [DONE]", True), (b"data:  [DONE]", False)]:
        m = meter(mod, "openai_chat", line + b"\n\n")
        assert (m.complete, m.events) == (done, 1)


@pytest.mark.parametrize("mod", IMPLS)
def test_data_lines_join_with_lf_and_other_fields_are_ignored(mod):
    stream = b'id: 7\nretry: 10\nevent: whatever\ndata: {"type":\ndata\ndata:"message_stop"}\nfoo: bar\n\n'
    m = meter(mod, "anthropic", stream)
    assert (m.complete, m.events, m.bad_events) == (True, 1, 0)
    # `data :` (space before the colon) is another field: no data, no event
    m = meter(mod, "anthropic", b'data :{"type":"message_stop"}\n\n')
    assert (m.complete, m.events) == (False, 0)


@pytest.mark.parametrize("mod", IMPLS)
def test_comments_and_empty_events_are_not_dispatched(mod):
    m = meter(mod, "anthropic", b": keepalive\n\n:\n\nevent: ping\n\n\n\n" + STOP + b"\n\n")
    assert (m.events, m.complete) == (1, True)


@pytest.mark.parametrize("mod", IMPLS)
def test_unterminated_event_is_not_dispatched(mod):
    m = meter(mod, "anthropic", STOP + b"\n")
    assert (m.events, m.complete) == (0, False)
    m = meter(mod, "openai_chat", b"data: [DONE]")
    assert (m.events, m.complete) == (0, False)


@pytest.mark.parametrize("mod", IMPLS)
def test_byte_order_mark_at_stream_start_is_dropped(mod):
    m = meter(mod, "openai_chat", b"\xef\xbb\xbfdata: [DONE]\n\n", range(1, 20))
    assert m.complete
    m = meter(mod, "openai_chat", b"\n\xef\xbb\xbfdata: [DONE]\n\n")  # only at the very start
    assert not m.complete


@pytest.mark.parametrize("mod", IMPLS)
def test_bad_json_is_counted_and_skipped(mod):
    stream = (
        b'data: {"type":"message_stop"\n\n'  # truncated JSON
        b'data: ["message_stop"]\n\n'  # not an object
        b'data: {"type":"message_stop","x":NaN}\n\n'
        b'data: {"type":"message_delta","usage":{"output_tokens":5}}\n\n'
        b'data: {"type":"text_delta" oops}\n\n'  # not an event that matters: never parsed
    )
    m = meter(mod, "anthropic", stream)
    assert (m.events, m.bad_events, m.complete, m.usage()) == (5, 3, False, (0, 5, 0, 0, 0))


@pytest.mark.parametrize("mod", IMPLS)
def test_oversized_event_is_skipped_and_counted(mod):
    m = mod.Meter("sse", "anthropic")
    m.feed(b'data: {"type":"message_delta","usage":{"output_tokens":5},"pad":"')
    filler = b"x" * (1024 * 1024)
    for _ in range(16):
        m.feed(filler)
    m.feed(b'"}\n\n')
    assert (m.events, m.bad_events, m.usage()) == (1, 1, (0, 0, 0, 0, 0))
    # the same bound over several lines of one event, then the stream goes on
    half = b"data: " + b"y" * (MAX_EVENT_BYTES // 2) + b"\n"
    m.feed(half + half + b"\n")
    m.feed(STOP + b"\n\n")
    assert (m.events, m.bad_events, m.complete) == (3, 2, True)
    # an event just under the bound is read
    m = mod.Meter("sse", "openai_chat")
    m.feed(b"data: [DONE]" + b" " * (MAX_EVENT_BYTES - 12) + b"\n\n")
    assert (m.complete, m.bad_events) == (True, 0)


# ---------------------------------------------------------------------------
# What is read off the events
# ---------------------------------------------------------------------------


def sse(*payloads: str | dict) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, str) else json.dumps(p)).encode() + b"\n\n" for p in payloads)


@pytest.mark.parametrize("mod", IMPLS)
def test_anthropic_usage_is_cumulative_and_replaced_never_added(mod):
    stream = sse(
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 10,
                    "cache_read_input_tokens": 90,
                    "cache_creation_input_tokens": None,
                    "output_tokens": 1,
                }
            },
        },
        {"type": "message_delta", "usage": {"output_tokens": 20}},
        {
            "type": "message_delta",
            "usage": {
                "output_tokens": 35,
                "input_tokens": 12,
                "cache_creation_input_tokens": 4,
                "output_tokens_details": {"reasoning_tokens": 30},
            },
        },
        {"type": "message_delta", "usage": {"output_tokens": "40", "input_tokens": -1, "cache_read_input_tokens": 1.0}},
    )
    assert meter(mod, "anthropic", stream).usage() == (12, 35, 90, 4, 30)


@pytest.mark.parametrize("mod", IMPLS)
def test_anthropic_tool_calls(mod):
    stream = sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "name": "a", "input": {}}},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "server_tool_use",
                "name": "web_search",
                "input": {"query": "x é", "n": [1, None]},
            },
        },
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"p":'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "no"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " 1}"}},
        {"type": "content_block_delta", "index": 9, "delta": {"type": "input_json_delta", "partial_json": "lost"}},
        {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "name": "b", "input": {}}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_start", "index": 4, "content_block": {"type": "tool_use", "name": "c"}},
    )
    m = meter(mod, "anthropic", stream, range(5, len(stream), 11))
    assert m.tool_calls() == [("a", '{"p": 1}'), ("web_search", '{"query":"x é","n":[1,null]}'), ("b", "{}"), ("c", "")]


@pytest.mark.parametrize("mod", IMPLS)
def test_tool_input_is_written_as_serde_json_writes_it(mod):
    raw = (
        '{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","name":"t","input":'
        '{"b":1,"a":{"z":[1.5E3,-0,2e-7,1.0,123456789012345678901234567890,"\\u00e9\\n\\u0001\\/"]},"b":true}}}'
    )
    m = meter(mod, "anthropic", sse(raw))
    assert m.tool_calls() == [
        ("t", '{"b":true,"a":{"z":[1.5e+3,-0,2e-7,1.0,123456789012345678901234567890,"é\\n\\u0001/"]}}')
    ]


@pytest.mark.parametrize("mod", IMPLS)
def test_error_events(mod):
    m = meter(
        mod,
        "anthropic",
        b"event: error\n" + sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
    assert (m.error, m.complete) == ("overloaded_error: Overloaded", False)
    m = meter(mod, "openai_chat", sse({"error": {"message": "boom", "type": "server_error", "code": None}}))
    assert m.error == "server_error: boom"
    m = meter(mod, "openai_chat", sse({"error": None, "choices": []}))
    assert m.error is None


@pytest.mark.parametrize("mod", IMPLS)
def test_openai_usage(mod):
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 15},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    assert meter(mod, "openai_chat", sse({"choices": [], "usage": usage})).usage() == (25, 7, 60, 15, 3)
    # missing details are 0; input never goes below 0
    assert meter(mod, "openai_chat", sse({"usage": {"prompt_tokens": 9}})).usage() == (9, 0, 0, 0, 0)
    odd = {"usage": {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}}
    assert meter(mod, "openai_chat", sse(odd)).usage() == (0, 0, 9, 0, 0)
    # "usage": null chunks are skipped
    assert meter(mod, "openai_chat", sse({"choices": [], "usage": usage}, {"usage": None})).usage() == (
        25,
        7,
        60,
        15,
        3,
    )


@pytest.mark.parametrize("mod", IMPLS)
def test_openai_tool_calls(mod):
    def chunk(*choices):
        return {"object": "chat.completion.chunk", "choices": list(choices), "usage": None}

    def tc(index, name=None, args=""):
        f = {"arguments": args} if name is None else {"name": name, "arguments": args}
        return {"index": index, **({"id": f"call_{index}", "type": "function"} if name else {}), "function": f}

    stream = sse(
        chunk({"index": 0, "delta": {"role": "assistant", "tool_calls": [tc(0, "get", ""), tc(1, "put", '{"a"')]}}),
        chunk({"index": 1, "delta": {"tool_calls": [tc(0, "other", "[")]}}),
        chunk({"index": 0, "delta": {"tool_calls": [tc(0, None, '{"k":'), tc(1, None, ":1}")]}}),
        chunk(
            {"index": 0, "delta": {"tool_calls": [tc(0, None, "2}")]}},
            {"index": 1, "delta": {"tool_calls": [tc(0, None, "]")]}},
        ),
        chunk({"index": 0, "delta": {"content": "done"}, "finish_reason": "tool_calls"}),
        "[DONE]",
    )
    m = meter(mod, "openai_chat", stream, range(3, len(stream), 17))
    assert m.tool_calls() == [("get", '{"k":2}'), ("put", '{"a":1}'), ("other", "[]")]
    assert m.complete


# ---------------------------------------------------------------------------
# JSON edge cases: both implementations must read them alike
# ---------------------------------------------------------------------------

JSON_EDGES = [
    '{"type":"message_stop","x":"\\ud800"}',  # lone surrogate: rejected
    '{"type":"message_stop","x":"\\udc00\\ud800"}',
    '{"type":"message_stop","x":"\\ud83d\\ude00"}',  # a pair: fine
    '{"type":"message_stop","x":' + "[" * 126 + "]" * 126 + "}",  # 127 levels: fine
    '{"type":"message_stop","x":' + "[" * 127 + "]" * 127 + "}",  # 128: rejected
    '{"type":"message_stop","x":1e400}',
    '{"type":"message_stop","x":-0}',
    '{"type":"message_stop","x":' + "9" * 5000 + "}",
    '{"type":"message_stop","type":"ping"}',  # duplicate keys: the last wins
    '{"type":"ping","type":"message_stop"}',
    '\ufeff{"type":"message_stop"}',
    '{"type":"message_stop"}\x00',
    '{"type":"message_stop",}',
    '{"type":"message_stop","x":"\x01"}',
    ' \t{"type"  :  "message_stop"       }\r',
    '{"type":"message_stop","x":Infinity}',
    '{"type":"message_delta","usage":{"output_tokens":18446744073709551615}}',
    '{"type":"message_delta","usage":{"output_tokens":18446744073709551616}}',
    '{"type":"message_delta","usage":{"output_tokens":5,"output_tokens":true}}',
    '{"type":"message_delta","usage":{"output_tokens":1E2,"input_tokens":7.0}}',
]


@needs_native
@pytest.mark.parametrize("payload", JSON_EDGES, ids=range(len(JSON_EDGES)))
def test_json_edges_read_alike(payload):
    stream = sse(payload)
    assert observe(meter(_native, "anthropic", stream)) == observe(meter(_pure, "anthropic", stream))


@needs_native
def test_invalid_utf8_reads_alike():
    for raw in [
        b'{"type":"message_stop","x":"\xff"}',
        b'{"type":"message_stop","x":"\xc3"}',
        b'{"type":"message_stop"}\xff',
    ]:
        stream = b"data: " + raw + b"\n\n"
        got = observe(meter(_native, "anthropic", stream))
        assert got == observe(meter(_pure, "anthropic", stream))
        assert got[:3] == (1, 1, False)


# ---------------------------------------------------------------------------
# Random streams
# ---------------------------------------------------------------------------


@PROPS
@given(st.data())
def test_random_anthropic_streams(data):
    events = data.draw(anthropic_events())
    truncate = data.draw(st.booleans())
    kept = events[:-1] if truncate else events
    stream, dispatched = data.draw(wire(kept))
    if truncate:  # the last event arrives without its blank line: never dispatched
        stream += b"data: " + json.dumps(events[-1][0]).encode()
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    m = meter(_pure, "anthropic", stream, cuts)
    complete, error, usage, calls = fold_anthropic(effect for _, effect in kept)
    assert observe(m) == (dispatched, 0, complete, error, usage, calls)
    if _native is not None:
        assert observe(meter(_native, "anthropic", stream, cuts)) == observe(m)
        assert observe(meter(_native, "anthropic", stream, range(1, len(stream)))) == observe(m)


@PROPS
@given(st.data())
def test_random_openai_streams(data):
    events = data.draw(openai_events())
    stream, dispatched = data.draw(wire(events))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    m = meter(_pure, "openai_chat", stream, cuts)
    complete, error, usage, calls = fold_openai(effect for _, effect in events)
    assert observe(m) == (dispatched, 0, complete, error, usage, calls)
    if _native is not None:
        assert observe(meter(_native, "openai_chat", stream, cuts)) == observe(m)
        assert observe(meter(_native, "openai_chat", stream, range(1, len(stream)))) == observe(m)


@st.composite
def corrupted_stream(draw):
    api = draw(st.sampled_from(["anthropic", "openai_chat"]))
    events = draw(anthropic_events() if api == "anthropic" else openai_events())
    stream = bytearray(draw(wire(events))[0])
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, len(stream)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "insert":
            stream[k:k] = draw(
                st.sampled_from(
                    [
                        b"\r",
                        b"\n",
                        b"\r\n",
                        b":",
                        b'"',
                        b"\\",
                        b"{",
                        b"}",
                        b"\xff",
                        b"\xc3",
                        b"\\ud800",
                        b"1e999",
                        b"data: x\n\n",
                    ]
                )
            )
        elif op == "truncate":
            del stream[k:]
        elif k < len(stream):
            if op == "flip":
                stream[k] = draw(st.integers(0, 255))
            else:
                del stream[k]
    return api, bytes(stream)


@needs_native
@PROPS
@given(st.data())
def test_corrupted_streams_read_alike(data):
    api, stream = data.draw(corrupted_stream())
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    got = observe(meter(_native, api, stream, cuts))
    assert got == observe(meter(_pure, api, stream, cuts))
    assert got == observe(meter(_pure, api, stream))
