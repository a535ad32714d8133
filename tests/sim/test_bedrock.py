"""Bedrock as pure functions: event-stream bytes as botocore decodes them,
InvokeModel around Anthropic's answers, Converse usage and streams,
CountTokens, and rest-json errors."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture.sim import anthropic, bedrock, eventstream, expected_usage
from aperture.sim.common import answer_text, answer_words, tool_call_tokens
from aperture.sim.routes import Call, Reject

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
INVOKE = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
          "messages": [{"role": "user", "content": "How many are left?"}]}
SPEC = {"toolSpec": {"name": "check_stock", "description": "Stock level",
                     "inputSchema": {"json": {"type": "object", "properties": {"sku": {"type": "string"}}}}}}


def call(body: dict, seq: int = 1, length: int = 12, latency_ms: int = 0, rate: float = 0.0) -> Call:
    return Call("POST", "/model/%s/invoke" % MODEL, {}, {}, {"model": MODEL}, body, seq, None, length,
                0, latency_ms, rate)


def decode(data: bytes, cuts: list[int] = ()) -> list:
    """botocore's messages from `data`, fed in pieces split at `cuts`."""
    buffer = EventStreamBuffer()
    out = []
    start = 0
    for end in [*sorted(cuts), len(data)]:
        buffer.add_data(data[start:end])
        start = end
        out.extend(buffer)
    return out


def converse(text: str = "How many are left?", **extra) -> dict:
    body = {"messages": [{"role": "user", "content": [{"text": text}]}]}
    body.update(extra)
    return body


# -- event-stream framing ------------------------------------------------------------------


def test_the_reference_worked_example():
    payload = b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="}'
    data = eventstream.event("chunk", payload)
    assert data.hex() == (
        "000000870000004b87ea2bf30b3a6576656e742d747970650700056368756e6b0d3a636f6e74656e742d747970650700"
        "106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b226279746573223a"
        "2265794a306558426c496a6f696257567a6332466e5a56397a64473977496e303d227dba48ab22")
    [message] = decode(data, [20])
    assert message.headers == {":event-type": "chunk", ":content-type": "application/json",
                               ":message-type": "event"}
    assert message.payload == payload


@SETTINGS
@given(st.integers(0, 15), st.booleans(), st.lists(st.integers(0, 10_000), max_size=6))
def test_streams_decode_whatever_the_read_sizes(length, tools, cuts):
    body = dict(INVOKE, messages=[{"role": "user", "content": "tool" if tools else "hi"}])
    if tools:
        body["tools"] = [{"name": "t", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}]
    data = bedrock.invoke_with_response_stream(call(body, length=length)).events.joined()
    messages = decode(data, [c % (len(data) + 1) for c in cuts])
    assert all(m.headers[":event-type"] == "chunk" for m in messages)
    inner = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert inner[0]["type"] == "message_start" and inner[-1]["type"] == "message_stop"


def test_invoke_stream_wraps_anthropics_events():
    body = dict(INVOKE, system=[{"type": "text", "text": "cached part", "cache_control": {"type": "ephemeral"}}])
    answer = bedrock.invoke_with_response_stream(call(body, seq=4, length=3, latency_ms=40, rate=100.0))
    assert (b"content-type", b"application/vnd.amazon.eventstream") in answer.headers
    assert (b"x-amzn-bedrock-content-type", b"application/json") in answer.headers
    messages = decode(answer.events.joined())
    payloads = [json.loads(m.payload) for m in messages]
    assert all(set(p) == {"bytes", "p"} and p["p"] for p in payloads)
    inner = [json.loads(base64.b64decode(p["bytes"])) for p in payloads]
    plan = anthropic.plan({**body, "model": MODEL}, 3)
    sse = [json.loads(line[len("data: "):]) for line in anthropic.stream(plan, 4).joined().decode().split("\n")
           if line.startswith("data: ")]
    without_ping = [e for e in sse if e["type"] != "ping"]
    assert inner[:-1] == without_ping[:-1]
    assert inner[-1] == {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": plan.input_tokens, "outputTokenCount": 3, "invocationLatency": 40 + 30,
        "firstByteLatency": 40, "cacheReadInputTokenCount": plan.cache_read_input_tokens,
        "cacheWriteInputTokenCount": plan.cache_creation_input_tokens}}
    assert [len(answer.events.head), len(answer.events.deltas), len(answer.events.tail)] == [2, 3, 3]
    [failure] = decode(answer.failure(1))
    assert failure.headers[":message-type"] == "exception"
    assert failure.headers[":exception-type"] == "modelStreamErrorException"
    assert json.loads(failure.payload)["originalStatusCode"] == 529


def test_invoke_answers_a_message_with_usage_headers():
    answer = bedrock.invoke(call(INVOKE, seq=2, latency_ms=15))
    plan = anthropic.plan({**INVOKE, "model": MODEL}, 12)
    assert answer.body == anthropic.message_body(plan, 2)
    assert orjson.loads(answer.body)["usage"] == expected_usage("bedrock_invoke", INVOKE)
    headers = dict(answer.headers)
    assert headers[b"x-amzn-bedrock-input-token-count"] == b"%d" % plan.input_tokens
    assert headers[b"x-amzn-bedrock-output-token-count"] == b"12"
    assert headers[b"x-amzn-bedrock-invocation-latency"] == b"15"
    assert headers[b"x-amzn-requestid"] == bedrock.request_id(2).encode()
    assert b"x-amzn-bedrock-cache-read-input-token-count" not in headers
    cached = dict(bedrock.invoke(call({**INVOKE, "cache_control": {"type": "ephemeral"}})).headers)
    usage = expected_usage("bedrock_invoke", {**INVOKE, "cache_control": {"type": "ephemeral"}})
    assert cached[b"x-amzn-bedrock-cache-read-input-token-count"] == b"%d" % usage["cache_read_input_tokens"]


@pytest.mark.parametrize("change, detail", [
    ({"model": MODEL}, "extraneous key [model]"),
    ({"stream": True}, "extraneous key [stream]"),
    ({"anthropic_version": None}, "required key [anthropic_version]"),
    ({"anthropic_version": "vertex-2023-10-16"}, "#/anthropic_version"),
    ({"anthropic_beta": "one,two"}, "#/anthropic_beta"),
    ({"max_tokens": None}, "required key [max_tokens]"),
])
def test_invoke_validation(change, detail):
    body = {k: v for k, v in {**INVOKE, **change}.items() if v is not None}
    with pytest.raises(Reject) as err:
        bedrock.check_invoke(call(body))
    assert err.value.status == 400 and detail in err.value.message
    assert err.value.message.startswith("Malformed input request: ")
    bedrock.check_invoke(call({**INVOKE, "anthropic_beta": ["b1"], "anthropic_version": "2023-06-01"}))


# -- Converse ----------------------------------------------------------------------------------


def test_converse_usage():
    body = converse(system=[{"text": "Be brief."}])
    # "user" + 4 words + system 2
    assert expected_usage("bedrock_converse", body) == {"inputTokens": 7, "outputTokens": 12, "totalTokens": 19}
    cached = converse(system=[{"text": "one two three four five"}, {"cachePoint": {"type": "default"}}],
                      inferenceConfig={"maxTokens": 4})
    # "user" + 4 + 5 + "default" = 11: read 5, write 2, the rest 4
    assert expected_usage("bedrock_converse", cached) == {
        "inputTokens": 4, "outputTokens": 4, "totalTokens": 4 + 4 + 5 + 2,
        "cacheReadInputTokens": 5, "cacheWriteInputTokens": 2}


@pytest.mark.parametrize("choice, text, expected", [
    (None, "hello", None), (None, "use the TOOL", "check_stock"), ({"auto": {}}, "hello", None),
    ({"any": {}}, "hello", "check_stock"), ({"tool": {"name": "other"}}, "hello", "other"),
])
def test_converse_tool_choice(choice, text, expected):
    other = {"toolSpec": {"name": "other", "inputSchema": {"json": {}}}}
    body = converse(text, toolConfig={"tools": [SPEC, {"cachePoint": {"type": "default"}}, other]})
    if choice is not None:
        body["toolConfig"]["toolChoice"] = choice
    tool = bedrock.converse_plan(body, 12).answer.tool
    assert (tool.name if tool else None) == expected


def test_converse_body_and_stream():
    body = converse("use the tool", toolConfig={"tools": [SPEC]})
    plan = bedrock.converse_plan(body, 12, MODEL)
    whole = orjson.loads(bedrock.converse_body(plan, 3, 25))
    assert whole == {"output": {"message": {"role": "assistant", "content": [{"toolUse": {
        "toolUseId": bedrock.tool_use_id(3), "name": "check_stock", "input": {"sku": "x"}}}]}},
        "stopReason": "tool_use", "usage": expected_usage("bedrock_converse", body),
        "metrics": {"latencyMs": 25}}
    assert whole["usage"]["outputTokens"] == tool_call_tokens({"sku": "x"})
    messages = decode(bedrock.converse_stream(plan, 3, 25).joined())
    kinds = [m.headers[":event-type"] for m in messages]
    assert kinds == ["messageStart", "contentBlockStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop", "messageStop", "metadata"]
    payloads = [json.loads(m.payload) for m in messages]
    assert all(p.pop("p") for p in payloads)
    assert payloads[1] == {"contentBlockIndex": 0, "start": {"toolUse": {
        "toolUseId": bedrock.tool_use_id(3), "name": "check_stock"}}}
    assert json.loads("".join(p["delta"]["toolUse"]["input"] for p in payloads[2:5])) == {"sku": "x"}
    assert payloads[-2] == {"stopReason": "tool_use"}
    assert payloads[-1] == {"usage": whole["usage"], "metrics": {"latencyMs": 25}}


def test_converse_text_stream():
    plan = bedrock.converse_plan(converse(inferenceConfig={"maxTokens": 3}), 12)
    messages = decode(bedrock.converse_stream(plan, 1).joined())
    payloads = [json.loads(m.payload) for m in messages]
    assert [m.headers[":event-type"] for m in messages] == ["messageStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop", "messageStop", "metadata"]  # no contentBlockStart for text
    assert [p["delta"]["text"] for p in payloads[1:4]] == answer_words(3)
    assert payloads[-2]["stopReason"] == "max_tokens"
    whole = orjson.loads(bedrock.converse_body(plan, 1))
    assert whole["output"]["message"]["content"] == [{"text": answer_text(3)}]


def test_count_tokens():
    encoded = base64.b64encode(orjson.dumps(INVOKE)).decode()
    assert bedrock.count_input({"input": {"invokeModel": {"body": encoded}}}) == anthropic.prompt_words(INVOKE)[0]
    body = converse(system=[{"text": "a b"}, {"cachePoint": {"type": "default"}}])
    assert bedrock.count_input({"input": {"converse": body}}) == 5 + 2 + 1  # the whole prompt, cached or not
    for bad in ({}, {"input": {}}, {"input": {"invokeModel": {"body": "not base64!"}}}):
        with pytest.raises(Reject):
            bedrock.count_input(bad)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, answered, name", [
    (400, 400, "ValidationException"), (403, 403, "AccessDeniedException"),
    (404, 404, "ResourceNotFoundException"), (408, 408, "ModelTimeoutException"),
    (424, 424, "ModelErrorException"), (429, 429, "ThrottlingException"),
    (500, 500, "InternalServerException"), (503, 503, "ServiceUnavailableException"),
    (529, 503, "ServiceUnavailableException"), (418, 418, "ValidationException"),
    (502, 502, "InternalServerException"),
])
def test_rest_json_errors(status, answered, name):
    code, headers, body = bedrock.error_response(status, None, 7)
    headers = dict(headers)
    assert code == answered and set(orjson.loads(body)) == {"message"}
    assert headers[b"x-amzn-errortype"] == (name + ":http://internal.amazon.com/coral/com.amazon.bedrock/").encode()
    assert headers[b"x-amzn-requestid"] == bedrock.request_id(7).encode()


def test_refused_credentials_and_named_exceptions():
    code, headers, body = bedrock.error_response(401, None, 1)
    assert code == 403 and dict(headers)[b"x-amzn-errortype"].startswith(b"UnrecognizedClientException:")
    code, headers, _ = bedrock.error_response(429, None, 1, code="ServiceQuotaExceededException")
    assert dict(headers)[b"x-amzn-errortype"].startswith(b"ServiceQuotaExceededException:")
    with pytest.raises(Reject):
        bedrock.check_converse(call({"messages": []}))
