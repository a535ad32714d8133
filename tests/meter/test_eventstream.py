"""The "eventstream" framing (AWS event-stream, wire-formats.md §6.4): the
reference's worked example, every header type, damage at both levels, the
chunk wrapper's base64 rules, exceptions and errors; and botocore's own
decoder (`botocore.eventstream.EventStreamBuffer`) on the same messages."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer, ParserError
from hypothesis import given
from hypothesis import strategies as st

from aperture.sim.eventstream import encode_message, event, exception
from tests.meter.helpers import IMPLS, PROPS, _native, _pure, observe, run
from tests.meter.strategies import EXTRA_HEADERS, typed_message

WORKED_EXAMPLE = bytes.fromhex(
    "000000870000004b87ea2bf30b3a6576656e742d747970650700056368756e6b0d3a636f6e74656e742d747970650700106170"
    "706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b226279746573223a2265794a3065"
    "58426c496a6f696257567a6332466e5a56397a64473977496e303d227dba48ab22"
)


def chunk(payload: dict | bytes, **extra) -> bytes:
    """A Bedrock InvokeModel stream `chunk` wrapping `payload`."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return event("chunk", json.dumps({"bytes": base64.b64encode(raw).decode(), **extra}).encode())


def botocore_messages(data: bytes, step: int) -> tuple[list, bool]:
    """What botocore decodes from `data` fed `step` bytes at a time, and
    whether it refused the stream."""
    buf = EventStreamBuffer()
    out = []
    try:
        for k in range(0, len(data), step):
            buf.add_data(data[k : k + step])
            out.extend(buf)
    except ParserError:
        return out, True
    return out, False


def test_worked_example_decodes_in_botocore_too():
    for step in (20, 1, len(WORKED_EXAMPLE)):
        (msg,), refused = botocore_messages(WORKED_EXAMPLE, step)
        assert not refused
        assert msg.headers == {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
        assert base64.b64decode(json.loads(msg.payload)["bytes"]) == b'{"type":"message_stop"}'


@pytest.mark.parametrize("mod", IMPLS)
def test_worked_example(mod):
    for cuts in ((), (20,), range(1, len(WORKED_EXAMPLE))):
        m = run(mod, "eventstream", "anthropic", WORKED_EXAMPLE, cuts)
        assert observe(m) == (1, 0, True, None, None, (0, 0, 0, 0, 0), [])


@pytest.mark.parametrize("mod", IMPLS)
def test_bedrock_invoke_stream_with_invocation_metrics(mod):
    stream = b"".join(
        [
            chunk(
                {
                    "type": "message_start",
                    "message": {"usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 7}},
                },
                p="abcdefghij",
            ),
            chunk({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "name": "f"}}),
            chunk(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
                }
            ),
            chunk(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "1}"},
                }
            ),
            chunk({"type": "message_delta", "usage": {"output_tokens": 30}}),
            chunk(
                {
                    "type": "message_stop",
                    "amazon-bedrock-invocationMetrics": {
                        "inputTokenCount": 12,
                        "outputTokenCount": 31,
                        "invocationLatency": 800,
                        "firstByteLatency": 90,
                        "cacheWriteInputTokenCount": 5,
                    },
                }
            ),
        ]
    )
    m = run(mod, "eventstream", "anthropic", stream, range(7, len(stream), 13))
    assert observe(m) == (6, 0, True, None, None, (12, 31, 7, 5, 0), [("f", '{"a":1}')])


CONVERSE_EXAMPLE = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    (
        "contentBlockStart",
        {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_demo1", "name": "check_stock"}}},
    ),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"sku":"X-91"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    ("messageStop", {"stopReason": "tool_use"}),
    (
        "metadata",
        {"usage": {"inputTokens": 250, "outputTokens": 40, "totalTokens": 290}, "metrics": {"latencyMs": 812}},
    ),
]


@pytest.mark.parametrize("mod", IMPLS)
def test_converse_reference_example(mod):
    """wire-formats.md §6.5, the decoded example, as event-stream messages."""
    stream = b"".join(event(name, json.dumps(p).encode()) for name, p in CONVERSE_EXAMPLE)
    for cuts in ((), range(1, len(stream), 5)):
        m = run(mod, "eventstream", "converse", stream, cuts)
        assert observe(m) == (8, 0, True, None, None, (250, 40, 0, 0, 0), [("check_stock", '{"sku":"X-91"}')])
    # cut before `metadata`: no usage, not complete
    m = run(mod, "eventstream", "converse", stream[: stream.rfind(b"\x00\x00", 0, len(stream) - 40)])
    assert not m.complete


@pytest.mark.parametrize("mod", IMPLS)
def test_all_header_value_types(mod):
    payload = b'{"usage":{"inputTokens":3}}'
    headers = [
        ("flag", 0, b""),
        ("off", 1, b""),
        ("b", 2, b"\x7f"),
        ("i16", 3, b"\x00\x07"),
        ("i32", 4, b"\x00\x00\x00\x07"),
        ("i64", 5, b"\x00" * 7 + b"\x07"),
        ("raw", 6, b"\x00\x03\xff\x00\x01"),
        (":event-type", 7, b"\x00\x08metadata"),
        ("date", 8, b"\x00\x00\x01\x8f\x00\x00\x00\x00"),
        ("id", 9, bytes(range(16))),
        (":message-type", 7, b"\x00\x05event"),
    ]
    msg = typed_message(headers, payload)
    assert observe(run(mod, "eventstream", "converse", msg, [3, 30])) == (1, 0, True, None, None, (3, 0, 0, 0, 0), [])
    (decoded,), refused = botocore_messages(msg, 7)
    assert not refused and decoded.headers[":event-type"] == "metadata" and decoded.headers["id"] == bytes(range(16))
    # a standard header with a non-string value does not count
    msg = typed_message([(":event-type", 6, b"\x00\x08metadata"), *headers[-1:]], payload)
    assert run(mod, "eventstream", "converse", msg).complete is False


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    "section",
    [
        b"\x01x\x0a",  # unknown value type 10
        b"\x01x\x07\x00\x09ab",  # string longer than the section
        b"\x01x\x04\x00\x00",  # int32 cut short
        b"\x05ab",  # name longer than the section
        b"\x01\xff\x00",  # name not UTF-8
        b"\x01x\x07\x00\x02\xc3\x28",  # string value not UTF-8
    ],
)
def test_malformed_header_sections_are_one_bad_event(mod, section):
    good = event("metadata", b'{"usage":{"outputTokens":9}}')
    prelude = struct.pack(">II", 16 + len(section) + 2, len(section))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + section + b"{}"
    bad = body + struct.pack(">I", zlib.crc32(body))
    m = run(mod, "eventstream", "converse", bad + good, [5])
    assert observe(m) == (2, 1, True, None, None, (0, 9, 0, 0, 0), [])


@pytest.mark.parametrize("mod", IMPLS)
def test_message_crc_mismatch_skips_that_message(mod):
    good = event("metadata", b'{"usage":{"outputTokens":9}}')
    bad = bytearray(event("contentBlockStart", b'{"contentBlockIndex":0,"start":{"toolUse":{"name":"x"}}}'))
    bad[-1] ^= 1
    m = run(mod, "eventstream", "converse", bytes(bad) + good, range(1, 200, 3))
    assert observe(m) == (2, 1, True, None, None, (0, 9, 0, 0, 0), [])
    assert botocore_messages(bytes(bad), 3)[1]  # botocore refuses it too


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("where", [0, 5, 9])
def test_prelude_damage_ends_the_reading(mod, where):
    good = event("metadata", b"{}")
    damaged = bytearray(good)
    damaged[where] ^= 0x40
    m = run(mod, "eventstream", "converse", good + bytes(damaged) + good, [3])
    assert (m.events, m.bad_events, m.complete) == (1, 1, True)
    m.feed(good)
    assert (m.events, m.bad_events) == (1, 1)
    assert botocore_messages(bytes(damaged), 1)[1]


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    ("total", "headers"),
    [(15, 0), (16, 1), (100, 200), (16 + 128 * 1024 + 1, 128 * 1024 + 1), (16 + 24 * 1024 * 1024 + 1, 0)],
)
def test_impossible_lengths_end_the_reading(mod, total, headers):
    prelude = struct.pack(">II", total, headers)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    m = run(mod, "eventstream", "converse", prelude + event("metadata", b"{}"))
    assert (m.events, m.bad_events, m.complete) == (0, 1, False)


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    "wrapper",
    [
        b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0"}',  # padding missing
        b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0=="}',  # too much padding
        b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0= "}',
        b'{"bytes":"eyJ0eXBlIjoibWVzc2Fn\\nZV9zdG9wIn0="}',  # a newline inside
        b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn1="}',  # non-zero trailing bits
        b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV-zdG9wIn0="}',  # URL-safe alphabet
        b'{"bytes":"\\u00e9"}',
        b'{"bytes":null}',
        b'{"p":"abc"}',
        b'["eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="]',
        b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="',
    ],
)
def test_chunks_that_cannot_be_read(mod, wrapper):
    m = run(mod, "eventstream", "anthropic", event("chunk", wrapper))
    assert (m.events, m.bad_events, m.complete) == (1, 1, False)


@pytest.mark.parametrize("mod", IMPLS)
def test_chunk_wrapper_variants_that_read(mod):
    inner = base64.b64encode(b'{"type":"message_stop"}').decode()
    for wrapper in (
        {"p": "abc", "bytes": inner},
        {"bytes": inner, "p": "x" * 300},
        {"bytes": "ignored", "bytes": inner},  # noqa: F601 - duplicate keys: the last one wins
    ):
        m = run(mod, "eventstream", "anthropic", event("chunk", json.dumps(wrapper).encode()))
        assert (m.events, m.bad_events, m.complete) == (1, 0, True)
    m = run(mod, "eventstream", "anthropic", event("chunk", b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0\\u003d"}'))
    assert m.complete  # an escaped "=" is still "="
    m = run(mod, "eventstream", "anthropic", event("chunk", b'{"bytes":""}'))  # nothing inside: read, no effect
    assert (m.events, m.bad_events, m.complete) == (1, 0, False)


@pytest.mark.parametrize("mod", IMPLS)
def test_exceptions_and_errors(mod):
    throttled = exception("throttlingException", b'{"message":"Too many requests, please wait."}')
    m = run(mod, "eventstream", "converse", event("messageStart", b'{"role":"assistant"}') + throttled)
    assert (m.events, m.bad_events, m.complete) == (2, 0, False)
    assert m.error == "throttlingException: Too many requests, please wait."
    for payload in (b"", b"not json", b'{"Message":"capitalized"}', b'{"message":7}'):
        m = run(mod, "eventstream", "anthropic", exception("modelStreamErrorException", payload))
        assert m.error == "modelStreamErrorException"
    untyped = encode_message([(":message-type", "exception")], b'{"message":"m"}')
    assert run(mod, "eventstream", "converse", untyped).error == "exception: m"
    headers = [(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")]
    error = encode_message(headers, b"")
    assert run(mod, "eventstream", "converse", error).error == "InternalFailure: boom"
    assert run(mod, "eventstream", "converse", encode_message([(":message-type", "error")], b"")).error == "error: "
    other = encode_message([(":message-type", "initial-response")], b"{}")
    assert observe(run(mod, "eventstream", "converse", other))[:4] == (1, 0, False, None)


# ---------------------------------------------------------------------------
# Against botocore, on random messages and random damage
# ---------------------------------------------------------------------------


@st.composite
def marked_messages(draw):
    """Messages that each start one Converse tool call named after their
    position, so that the meter's tool calls say which messages it read."""
    out = []
    for k in range(draw(st.integers(1, 6))):
        payload = json.dumps({"contentBlockIndex": k, "start": {"toolUse": {"name": f"m{k}"}}}).encode()
        payload += b" " * draw(st.integers(0, 40))
        others = EXTRA_HEADERS.filter(lambda h: h[0] != ":event-type")  # botocore refuses duplicate names
        extra = draw(st.lists(others, max_size=3, unique_by=lambda h: h[0]))
        standard = [(":event-type", 7, b"\x00\x11contentBlockStart"), (":message-type", 7, b"\x00\x05event")]
        out.append(typed_message(draw(st.permutations(extra + standard)), payload))
    return out


@PROPS
@given(messages=marked_messages(), data=st.data())
def test_reads_what_botocore_reads(messages, data):
    stream = bytearray(b"".join(messages))
    damaged = data.draw(st.booleans())
    if damaged:
        k = data.draw(st.integers(0, len(stream) - 1))
        stream[k] ^= data.draw(st.integers(1, 255))
    step = data.draw(st.integers(1, 64))
    decoded, refused = botocore_messages(bytes(stream), step)
    names = [json.loads(msg.payload)["start"]["toolUse"]["name"] for msg in decoded]
    for mod in (_pure, _native):
        if mod is None:
            continue
        m = run(mod, "eventstream", "converse", bytes(stream), range(step, len(stream), step))
        read = [name for name, _ in m.tool_calls()]
        if refused:
            # botocore stops at the first damaged message; the meter reads the
            # same messages up to it and counts the damage: a damaged prelude
            # ends its reading there, a damaged message is skipped
            assert read[: len(names)] == names and m.bad_events == 1
            if m.events == len(read):
                assert read == names
            else:
                assert m.events == len(read) + 1 == len(messages)
        else:
            assert read == names and m.bad_events == 0 and m.events == len(messages)
