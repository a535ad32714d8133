"""What each dialect reads, on the wire examples of the reference
(wire-formats.md §1–§6) and on the cases its rules name: argument joining,
cumulative usage, completion, error texts, whole bodies."""

from __future__ import annotations

import json

import pytest

from tests.meter.helpers import IMPLS, observe, run


def sse(*events: dict | tuple[str, dict], crlf: bool = False) -> bytes:
    out = []
    for e in events:
        name, payload = e if isinstance(e, tuple) else (None, e)
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {json.dumps(payload, separators=(',', ':'))}\n\n")
    text = "".join(out)
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def body(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def added(index: int, call_id: str, name: str) -> dict:
    item = {"type": "function_call", "id": call_id, "name": name}
    return {"type": "response.output_item.added", "output_index": index, "item": item}


# ---------------------------------------------------------------------------
# openai_responses (§3)
# ---------------------------------------------------------------------------

RESPONSES_EXAMPLE = b"""event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_demo","object":"response","created_at":1760000000,"status":"in_progress","output":[],"usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"type":"function_call","id":"fc_demo","call_id":"call_demo1","name":"check_stock","arguments":"","status":"in_progress"}}

event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":2,"item_id":"fc_demo","output_index":0,"delta":"{\\"sku\\":\\"X-91\\"}"}

event: response.function_call_arguments.done
data: {"type":"response.function_call_arguments.done","sequence_number":3,"item_id":"fc_demo","output_index":0,"name":"check_stock","arguments":"{\\"sku\\":\\"X-91\\"}"}

event: response.completed
data: {"type":"response.completed","sequence_number":5,"response":{"id":"resp_demo","object":"response","status":"completed","output":[],"usage":{"input_tokens":300,"input_tokens_details":{"cached_tokens":128},"output_tokens":22,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":322}}}

"""


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("step", [None, 1, 9])
def test_responses_reference_example(mod, step):
    cuts = range(step, len(RESPONSES_EXAMPLE), step) if step else ()
    m = run(mod, "sse", "openai_responses", RESPONSES_EXAMPLE, cuts)
    assert observe(m) == (5, 0, True, None, "resp_demo", (172, 22, 128, 0, 0), [("check_stock", '{"sku":"X-91"}')])


@pytest.mark.parametrize("mod", IMPLS)
def test_responses_calls_deltas_fallbacks_and_keys(mod):
    stream = sse(
        # the JSON type decides, not the event line
        ("response.completed", {"type": "response.in_progress", "response": {"id": "resp_1"}}),
        {"type": "response.created", "response": {"id": "resp_2"}},  # the first id seen stays
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_1"}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "delta": "response.failed"},
        added(1, "fc_1", "a"),
        {"type": "response.output_item.added", "output_index": 2, "item": {"type": "custom_tool_call", "name": "sh"}},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"x":'},
        {"type": "response.custom_tool_call_input.delta", "output_index": 2, "delta": "ls "},
        {"type": "response.function_call_arguments.delta", "item_id": "nope", "output_index": 1, "delta": "1}"},
        {"type": "response.custom_tool_call_input.delta", "output_index": 2, "delta": "-l"},
        {"type": "response.custom_tool_call_input.done", "output_index": 2, "input": "ignored: deltas came"},
        added(3, "fc_3", "b"),
        {"type": "response.function_call_arguments.delta", "item_id": "fc_3", "delta": ""},
        {"type": "response.function_call_arguments.done", "item_id": "fc_3", "arguments": "{}"},
        added(4, "fc_4", "c"),
        {
            "type": "response.output_item.done",
            "output_index": 4,
            "item": {"type": "function_call", "id": "fc_4", "arguments": "[1]"},
        },
        added(5, "fc_5", "d"),
        {"type": "response.output_item.added", "output_index": 6, "item": {"type": "web_search_call", "id": "ws_1"}},
        {
            "type": "response.incomplete",
            "response": {
                "id": "resp_1",
                "usage": {
                    "input_tokens": 100,
                    "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 15},
                    "output_tokens": 50,
                    "output_tokens_details": {"reasoning_tokens": 20},
                },
            },
        },
    )
    m = run(mod, "sse", "openai_responses", stream, range(11, len(stream), 97))
    assert observe(m) == (
        19,
        0,
        True,
        None,
        "resp_1",
        (25, 50, 60, 15, 20),
        [("a", '{"x":1}'), ("sh", "ls -l"), ("b", "{}"), ("c", "[1]"), ("d", "")],
    )


@pytest.mark.parametrize("mod", IMPLS)
def test_responses_errors(mod):
    failed = {"type": "response.failed", "response": {"id": "r", "error": {"code": "server_error", "message": "boom"}}}
    m = run(mod, "sse", "openai_responses", sse(failed))
    assert (m.complete, m.error) == (True, "server_error: boom")
    bare = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None, "sequence_number": 3}
    assert run(mod, "sse", "openai_responses", sse(bare)).error == "rate_limit_exceeded: slow down"
    bare["code"] = None
    m = run(mod, "sse", "openai_responses", sse(bare))
    assert (m.complete, m.error) == (False, "error: slow down")


@pytest.mark.parametrize("mod", IMPLS)
def test_responses_body(mod):
    doc = {
        "id": "resp_9",
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "hi"}]},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
            {"type": "custom_tool_call", "id": "ct_1", "call_id": "c2", "name": "sh", "input": "pwd"},
        ],
        "error": None,
        "usage": {
            "input_tokens": 9,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 1},
        },
    }
    m = run(mod, "json", "openai_responses", body(doc), [10])
    assert observe(m) == (1, 0, True, None, "resp_9", (5, 3, 4, 0, 1), [("f", '{"a":1}'), ("sh", "pwd")])
    failed = {"id": "resp_f", "status": "failed", "error": {"code": "server_error", "message": "x"}, "output": []}
    assert run(mod, "json", "openai_responses", body(failed)).error == "server_error: x"
    api = {"error": {"message": "bad key", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    assert run(mod, "json", "openai_responses", body(api)).error == "invalid_request_error: bad key"


# ---------------------------------------------------------------------------
# gemini (§4)
# ---------------------------------------------------------------------------

GEMINI_EXAMPLE = [
    {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Let me check"}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 31, "candidatesTokenCount": 3, "totalTokenCount": 34},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    },
    {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "check_stock", "args": {"sku": "X-91"}}}],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 31,
            "candidatesTokenCount": 14,
            "thoughtsTokenCount": 50,
            "totalTokenCount": 95,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    },
]
GEMINI_READING = (True, None, None, (31, 64, 0, 0, 50), [("check_stock", '{"sku":"X-91"}')])


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("step", [None, 1, 17])
def test_gemini_reference_example_sse_with_crlf(mod, step):
    stream = sse(*GEMINI_EXAMPLE, crlf=True)
    cuts = range(step, len(stream), step) if step else ()
    assert observe(run(mod, "sse", "gemini", stream, cuts)) == (2, 0, *GEMINI_READING)


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("step", [None, 1, 17])
def test_gemini_reference_example_json_array(mod, step):
    stream = ("[" + ",\r\n".join(json.dumps(c, indent=2) for c in GEMINI_EXAMPLE) + "]").encode()
    cuts = range(step, len(stream), step) if step else ()
    assert observe(run(mod, "json_array", "gemini", stream, cuts)) == (2, 0, *GEMINI_READING)


@pytest.mark.parametrize("mod", IMPLS)
def test_gemini_usage_is_the_last_whole_object(mod):
    first = {"usageMetadata": {"promptTokenCount": 1310, "cachedContentTokenCount": 1024, "candidatesTokenCount": 4}}
    last = {"usageMetadata": {"promptTokenCount": 1310, "candidatesTokenCount": 14, "toolUsePromptTokenCount": 7}}
    m = run(mod, "sse", "gemini", sse(first, {"usageMetadata": None}, last))
    assert m.usage() == (1317, 14, 0, 0, 0)  # the cache count of the first is not kept
    assert run(mod, "sse", "gemini", sse(last, first)).usage() == (286, 4, 1024, 0, 0)
    odd = {"usageMetadata": {"promptTokenCount": 5, "cachedContentTokenCount": 9, "thoughtsTokenCount": 2}}
    assert run(mod, "sse", "gemini", sse(odd)).usage() == (0, 2, 9, 0, 2)


@pytest.mark.parametrize("mod", IMPLS)
def test_gemini_completion_and_errors(mod):
    unfinished = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": ""}, {"index": 1}]}
    assert run(mod, "sse", "gemini", sse(unfinished)).complete is False
    two = {"candidates": [{"index": 0}, {"index": 1, "finishReason": "MAX_TOKENS"}]}
    assert run(mod, "sse", "gemini", sse(two)).complete is True
    quota = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
    m = run(mod, "sse", "gemini", sse(quota))
    assert (m.error, m.complete) == ("RESOURCE_EXHAUSTED: Resource exhausted", False)
    assert run(mod, "json", "gemini", body({"error": {"code": 503, "message": "later"}})).error == "503: later"
    assert run(mod, "json", "gemini", body({"error": {"message": "m"}})).error == "error: m"


@pytest.mark.parametrize("mod", IMPLS)
def test_gemini_body(mod):
    doc = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "check_stock", "args": {"sku": "X-91"}}},
                        {"functionCall": {"name": "ping"}},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 1310,
            "cachedContentTokenCount": 1024,
            "candidatesTokenCount": 14,
            "thoughtsTokenCount": 50,
            "totalTokenCount": 1374,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1310}],
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "demo-resp-1",
    }
    m = run(mod, "json", "gemini", body(doc), [100])
    calls = [("check_stock", '{"sku":"X-91"}'), ("ping", "")]
    assert observe(m) == (1, 0, True, None, None, (286, 64, 1024, 0, 50), calls)


# ---------------------------------------------------------------------------
# whole bodies of the other dialects (§1.4, §2.3, §6.5)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mod", IMPLS)
def test_anthropic_body(mod):
    doc = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Checking stock."},
            {"type": "tool_use", "id": "toolu_01", "name": "check_stock", "input": {"sku": "X-91", "n": 1.5e3}},
            {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search"},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 250,
            "cache_creation_input_tokens": 7,
            "cache_read_input_tokens": 1200,
            "output_tokens": 61,
            "output_tokens_details": {"reasoning_tokens": 12},
        },
    }
    m = run(mod, "json", "anthropic", body(doc), [33])
    assert observe(m) == (
        1,
        0,
        True,
        None,
        None,
        (250, 61, 1200, 7, 12),
        [("check_stock", '{"sku":"X-91","n":1500.0}'), ("web_search", "{}")],
    )
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert observe(run(mod, "json", "anthropic", body(error))) == (
        1,
        0,
        True,
        "overloaded_error: Overloaded",
        None,
        (0, 0, 0, 0, 0),
        [],
    )


@pytest.mark.parametrize("mod", IMPLS)
def test_openai_chat_body(mod):
    doc = {
        "id": "chatcmpl-demo123",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_demo1",
                            "type": "function",
                            "function": {"name": "check_stock", "arguments": '{"sku":"X-91"}'},
                        },
                        {"id": "call_demo2", "type": "function", "function": {"name": "odd", "arguments": {"a": [1]}}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 812,
            "completion_tokens": 40,
            "total_tokens": 852,
            "prompt_tokens_details": {"cached_tokens": 512, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 8},
        },
    }
    m = run(mod, "json", "openai_chat", body(doc))
    assert observe(m) == (
        1,
        0,
        True,
        None,
        None,
        (300, 40, 512, 0, 8),
        [("check_stock", '{"sku":"X-91"}'), ("odd", '{"a":[1]}')],
    )
    error = {"error": {"message": "Rate limit", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    assert run(mod, "json", "openai_chat", body(error)).error == "requests: Rate limit"


@pytest.mark.parametrize("mod", IMPLS)
def test_converse_body(mod):
    doc = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "check_stock", "input": {"sku": "X-91"}}},
                    {"toolUse": {"toolUseId": "tooluse_2", "name": "noinput"}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 250, "outputTokens": 40, "totalTokens": 290, "cacheReadInputTokens": 100},
        "metrics": {"latencyMs": 812},
    }
    m = run(mod, "json", "converse", body(doc))
    assert observe(m) == (
        1,
        0,
        True,
        None,
        None,
        (250, 40, 100, 0, 0),
        [("check_stock", '{"sku":"X-91"}'), ("noinput", "")],
    )


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("dialect", ["anthropic", "openai_chat", "openai_responses", "gemini", "converse"])
@pytest.mark.parametrize("doc", [b"", b"[]", b'"x"', b"{", b'{"a":1} {}', b"\xef\xbb\xbf{}", b'{"a":"\xff"}'])
def test_bodies_that_are_not_objects(mod, dialect, doc):
    m = run(mod, "json", dialect, doc)
    assert observe(m) == (0, 1, False, None, None, (0, 0, 0, 0, 0), [])


@pytest.mark.parametrize("mod", IMPLS)
def test_usage_sums_saturate(mod):
    top = 2**64 - 1
    usage = {"promptTokenCount": top, "toolUsePromptTokenCount": 5, "candidatesTokenCount": top, "thoughtsTokenCount": 1}
    doc = {"usageMetadata": usage}
    assert run(mod, "json", "gemini", body(doc)).usage() == (top, top, 0, 0, 1)
    doc["usageMetadata"]["promptTokenCount"] = top + 1  # not a count: 0
    assert run(mod, "json", "gemini", body(doc)).usage() == (5, top, 0, 0, 1)
