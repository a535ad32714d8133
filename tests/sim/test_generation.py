"""The simulator's answers as pure functions: event order and framing, usage
values, tool calls, and the agreement between streamed and whole answers."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture.sim import anthropic, expected_usage, openai_chat
from aperture.sim.common import (VOCABULARY, answer_text, answer_words, count_words, example_arguments,
                                 example_value, split_fragments, tool_call_tokens)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STOCK_TOOL = {"name": "check_stock", "description": "Stock level for a SKU",
              "input_schema": {"type": "object", "properties": {"sku": {"type": "string"},
                                                                "count": {"type": "integer"}},
                               "required": ["sku"]}}
STOCK_FUNCTION = {"type": "function", "function": {"name": "check_stock", "description": "Stock level",
                                                   "parameters": STOCK_TOOL["input_schema"]}}


def sse_events(data: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each event; asserts the framing on the way: LF
    line ends, a blank line after each event, at most `event:` then `data:`."""
    assert data.endswith(b"\n\n")
    out = []
    for block in data[:-2].split(b"\n\n"):
        lines = block.decode().split("\n")
        name = None
        if lines[0].startswith("event: "):
            name = lines.pop(0)[len("event: "):]
        assert len(lines) == 1 and lines[0].startswith("data: "), block
        out.append((name, lines[0][len("data: "):]))
    return out


# -- common rules -------------------------------------------------------------------


def test_answer_words_concatenate_to_the_text():
    assert answer_text(3) == "Lorem ipsum dolor"
    assert answer_words(3) == ["Lorem", " ipsum", " dolor"]
    assert answer_text(0) == "" and answer_words(0) == []
    n = 2 * len(VOCABULARY) + 5
    words = answer_words(n)
    assert "".join(words) == answer_text(n)
    assert len(answer_text(n).split()) == n
    assert words[len(VOCABULARY)] == " " + VOCABULARY[0]


def test_count_words_reads_every_string_value_and_finds_cache_control():
    assert count_words("a b  c", None, 3) == (3, False)
    assert count_words([{"role": "user", "content": [{"type": "text", "text": "x y"}]}]) == (4, False)
    assert count_words({"k": [{"cache_control": {"type": "ephemeral"}}]}) == (1, True)
    deep: list = ["w"]
    for _ in range(5000):  # no recursion limit
        deep = [deep]
    assert count_words(deep) == (1, False)


def test_example_arguments_follow_the_schema():
    schema = {"type": "object", "properties": {
        "s": {"type": "string"}, "i": {"type": "integer"}, "f": {"type": "number"},
        "b": {"type": "boolean"}, "n": {"type": "null"}, "e": {"enum": ["red", "blue"]},
        "c": {"const": 7}, "a": {"type": "array", "items": {"type": "integer"}},
        "o": {"type": "object", "properties": {"deep": {"type": ["null", "string"]}}},
        "u": {"anyOf": [{"type": "boolean"}, {"type": "string"}]}, "free": {}}}
    assert example_arguments(schema) == {"s": "x", "i": 1, "f": 1, "b": True, "n": None, "e": "red",
                                         "c": 7, "a": [1], "o": {"deep": "x"}, "u": True, "free": "x"}
    assert example_arguments(None) == {}
    assert example_arguments({"type": "string"}) == {}
    assert tool_call_tokens({"sku": "x"}) == 1 + len(b'{"sku":"x"}') // 4


schemas = st.recursive(
    st.sampled_from([{"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"},
                     {"type": "null"}, {}, {"enum": [3, 4]}]),
    lambda inner: st.one_of(
        st.builds(lambda items: {"type": "array", "items": items}, inner),
        st.builds(lambda props: {"type": "object", "properties": props},
                  st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=4)),
        st.builds(lambda opts: {"oneOf": opts}, st.lists(inner, min_size=1, max_size=3))),
    max_leaves=12)


def conforms(value, schema) -> bool:
    if "enum" in schema:
        return value in schema["enum"]
    if "oneOf" in schema:
        return conforms(value, schema["oneOf"][0])
    kind = schema.get("type")
    if kind == "object":
        return isinstance(value, dict) and value.keys() == schema["properties"].keys() and all(
            conforms(value[k], s) for k, s in schema["properties"].items())
    if kind == "array":
        return isinstance(value, list) and len(value) == 1 and conforms(value[0], schema["items"])
    expected = {"string": str, "integer": int, "number": int, "boolean": bool, "null": type(None), None: str}
    return type(value) is expected[kind]


@SETTINGS
@given(schemas)
def test_example_values_conform_to_random_schemas(schema):
    assert conforms(example_value(schema), schema)


@SETTINGS
@given(st.text(max_size=60), st.integers(1, 8))
def test_split_fragments_rejoin(text, pieces):
    parts = split_fragments(text, pieces)
    assert "".join(parts) == text
    assert all(parts) and len(parts) == min(pieces, len(text))


# -- Anthropic ------------------------------------------------------------------------


def messages_request(**extra) -> dict:
    request = {"model": "claude-sonnet-4-5", "max_tokens": 1024,
               "messages": [{"role": "user", "content": "How many are left?"}]}
    request.update(extra)
    return request


def test_anthropic_usage_counts_words_of_system_messages_and_tools():
    request = messages_request(system="You are terse.", tools=[STOCK_TOOL])
    # system 3 + messages ("user" + 4 words) 5 + tool: name 1, description 5,
    # schema strings "object", "string", "integer", "sku" (required) 4
    assert expected_usage("anthropic", request) == {
        "input_tokens": 18, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 12, "service_tier": "standard"}
    assert expected_usage("anthropic_messages", {"model": "m", "messages": []}, 3)["input_tokens"] == 1


def test_anthropic_cache_control_splits_the_prompt():
    request = messages_request(system=[{"type": "text", "text": "one two three four five six seven",
                                        "cache_control": {"type": "ephemeral"}}])
    # 7 + "text" + "ephemeral" + "user" + 4 = 14 words: read 7, write 3, the rest 4
    usage = expected_usage("anthropic", request)
    assert (usage["input_tokens"], usage["cache_creation_input_tokens"],
            usage["cache_read_input_tokens"]) == (4, 3, 7)
    assert usage["cache_creation"]["ephemeral_5m_input_tokens"] == 3
    top = expected_usage("anthropic", messages_request(cache_control={"type": "ephemeral"}))
    assert top["cache_read_input_tokens"] == 5 // 2


def test_anthropic_text_stream_event_order_and_framing():
    plan = anthropic.plan(messages_request(), 4)
    data = anthropic.stream(plan, 7).joined()
    events = sse_events(data)
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 4 + [
        "content_block_stop", "message_delta", "message_stop"]
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in data
    for name, payload in events:
        assert json.loads(payload)["type"] == name
    start = json.loads(events[0][1])["message"]
    assert start["id"] == anthropic.message_id(7) and start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    text = "".join(json.loads(p)["delta"]["text"] for n, p in events if n == "content_block_delta")
    assert text == "Lorem ipsum dolor sit"
    delta = json.loads(events[-2][1])
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 5, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 4}


def test_anthropic_ping_every():
    plan = anthropic.plan(messages_request(), 5)
    names = [n for n, _ in sse_events(anthropic.stream(plan, 1, ping_every=2).joined())]
    assert names[2:10] == ["ping", "content_block_delta", "content_block_delta", "ping",
                           "content_block_delta", "content_block_delta", "ping", "content_block_delta"]


def test_anthropic_max_tokens_caps_the_answer():
    plan = anthropic.plan(messages_request(max_tokens=3), 12)
    body = json.loads(anthropic.message_body(plan, 1))
    assert body["content"] == [{"type": "text", "text": "Lorem ipsum dolor"}]
    assert body["stop_reason"] == "max_tokens" and body["usage"]["output_tokens"] == 3
    assert json.loads(anthropic.message_body(anthropic.plan(messages_request(), 12), 1))["stop_reason"] == "end_turn"


def test_anthropic_tool_call_when_asked():
    request = messages_request(tools=[STOCK_TOOL],
                               messages=[{"role": "user", "content": [{"type": "text", "text": "Use the Tool"}]}])
    plan = anthropic.plan(request, 12)
    body = json.loads(anthropic.message_body(plan, 3))
    assert body["content"] == [{"type": "tool_use", "id": anthropic.tool_use_id(3), "name": "check_stock",
                                "input": {"sku": "x", "count": 1}}]
    assert body["stop_reason"] == "tool_use"
    assert body["usage"]["output_tokens"] == tool_call_tokens({"sku": "x", "count": 1})

    events = sse_events(anthropic.stream(plan, 3).joined())
    block = json.loads(events[1][1])["content_block"]
    assert block == {"type": "tool_use", "id": anthropic.tool_use_id(3), "name": "check_stock", "input": {}}
    fragments = [json.loads(p)["delta"] for n, p in events if n == "content_block_delta"]
    assert all(f["type"] == "input_json_delta" for f in fragments)
    assert fragments[0]["partial_json"] == "" and len(fragments) >= 3
    assert json.loads("".join(f["partial_json"] for f in fragments)) == {"sku": "x", "count": 1}
    assert json.loads(events[-2][1])["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("choice, text, expected", [
    (None, "what is in stock?", None),
    (None, "call a tool", "check_stock"),
    ({"type": "auto"}, "tools please", "check_stock"),
    ({"type": "any"}, "hello", "check_stock"),
    ({"type": "tool", "name": "other"}, "hello", "other"),
    ({"type": "none"}, "use the tool", None),
])
def test_anthropic_tool_choice(choice, text, expected):
    other = {"name": "other", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
    request = messages_request(tools=[STOCK_TOOL, other], messages=[{"role": "user", "content": text}])
    if choice is not None:
        request["tool_choice"] = choice
    tool = anthropic.plan(request, 12).answer.tool
    assert (tool.name if tool else None) == expected
    assert anthropic.plan(messages_request(messages=[{"role": "user", "content": "tool"}]), 1).answer.tool is None


def test_anthropic_validation_and_errors():
    assert anthropic.validate({"messages": []}) == "model: Field required"
    assert anthropic.validate({"model": "m", "messages": []}) == "max_tokens: Field required"
    assert anthropic.validate({"model": "m", "messages": []}, count_tokens=True) is None
    status, headers, body = anthropic.error_response(529, None, 4)
    assert status == 529
    assert orjson.loads(body) == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                                  "request_id": anthropic.request_id(4)}
    assert body.startswith(b'{"type":"error","error":{"type":')
    assert (b"request-id", anthropic.request_id(4).encode()) in headers
    status, headers, body = anthropic.error_response(429, "slow down", 1)
    assert (b"retry-after", b"1") in headers and orjson.loads(body)["error"]["type"] == "rate_limit_error"
    assert orjson.loads(anthropic.error_response(418, None, 1)[2])["error"]["type"] == "invalid_request_error"
    assert orjson.loads(anthropic.error_response(502, None, 1)[2])["error"]["type"] == "api_error"
    assert sse_events(anthropic.stream_error(1)) == [
        ("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')]


def test_anthropic_count_tokens_and_models():
    request = messages_request(system=[{"type": "text", "text": "a b", "cache_control": {"type": "ephemeral"}}])
    # "text" + 2 + "ephemeral" + "user" + 4, cached or not
    assert orjson.loads(anthropic.count_tokens_body(request)) == {"input_tokens": 9}
    listing = orjson.loads(anthropic.MODEL_LIST)
    assert listing["data"][0]["type"] == "model" and listing["has_more"] is False
    assert listing["first_id"] == listing["data"][0]["id"]
    assert orjson.loads(anthropic.model_body("anything"))["id"] == "anything"


# -- OpenAI ---------------------------------------------------------------------------


def chat_request(**extra) -> dict:
    request = {"model": "gpt-5.4", "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "How many are left?"}]}
    request.update(extra)
    return request


def chunks(data: bytes) -> list:
    events = sse_events(data)
    assert all(name is None for name, _ in events)  # no event: lines
    assert events[-1][1] == "[DONE]"
    return [json.loads(payload) for _, payload in events[:-1]]


def test_openai_usage_cache_and_reasoning():
    # "system" + 2 + "user" + 4
    assert expected_usage("openai", chat_request()) == {
        "prompt_tokens": 8, "completion_tokens": 12, "total_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
    usage = expected_usage("openai_chat", chat_request(prompt_cache_key="k", reasoning_effort="low"), 9)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 4
    assert usage["completion_tokens"] == 9 and usage["completion_tokens_details"]["reasoning_tokens"] == 4
    plan = openai_chat.plan(chat_request(reasoning_effort="high"), 9)
    body = orjson.loads(openai_chat.completion_body(plan, 1))
    assert body["choices"][0]["message"]["content"] == answer_text(5)  # 9 - 4 reasoning
    assert expected_usage("openai", chat_request(reasoning_effort="none"))["completion_tokens_details"][
        "reasoning_tokens"] == 0
    with pytest.raises(ValueError):
        expected_usage("cohere", {})


def test_openai_caps_use_max_completion_tokens_first():
    assert expected_usage("openai", chat_request(max_tokens=5))["completion_tokens"] == 5
    assert expected_usage("openai", chat_request(max_tokens=5, max_completion_tokens=7))["completion_tokens"] == 7
    plan = openai_chat.plan(chat_request(max_completion_tokens=2), 12)
    body = orjson.loads(openai_chat.completion_body(plan, 1, created=1760000000))
    assert body["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "Lorem ipsum",
                                                          "refusal": None, "annotations": []},
                                  "logprobs": None, "finish_reason": "length"}
    assert list(body) == ["id", "object", "created", "model", "choices", "usage", "service_tier",
                          "system_fingerprint"]
    assert body["object"] == "chat.completion" and body["created"] == 1760000000


def test_openai_stream_without_usage():
    plan = openai_chat.plan(chat_request(stream=True), 3)
    data = openai_chat.stream(plan, 2, created=1).joined()
    parsed = chunks(data)
    assert all("usage" not in c for c in parsed)
    assert {c["id"] for c in parsed} == {openai_chat.completion_id(2)}
    assert {c["created"] for c in parsed} == {1}
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed) == "Lorem ipsum dolor"
    assert [c["choices"][0]["finish_reason"] for c in parsed] == [None] * 4 + ["stop"]
    assert parsed[-1]["choices"][0]["delta"] == {}
    assert all("obfuscation" in c for c in parsed)
    plain = openai_chat.plan(chat_request(stream_options={"include_obfuscation": False}), 3)
    assert all("obfuscation" not in c for c in chunks(openai_chat.stream(plain, 2).joined()))


def test_openai_stream_usage_chunk():
    request = chat_request(stream=True, stream_options={"include_usage": True})
    parsed = chunks(openai_chat.stream(openai_chat.plan(request, 3), 2).joined())
    assert all(c["usage"] is None for c in parsed[:-1])
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"] == expected_usage("openai", request, 3)
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"


def test_openai_tool_call_stream_and_body():
    request = chat_request(tools=[STOCK_FUNCTION], tool_choice="required", stream=True,
                           stream_options={"include_usage": True})
    plan = openai_chat.plan(request, 12)
    body = orjson.loads(openai_chat.completion_body(plan, 5))
    message = body["choices"][0]["message"]
    assert message["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [{"id": openai_chat.call_id(5), "type": "function",
                                      "function": {"name": "check_stock",
                                                   "arguments": '{"sku":"x","count":1}'}}]
    parsed = chunks(openai_chat.stream(plan, 5).joined())
    first = parsed[0]["choices"][0]["delta"]
    assert first["tool_calls"] == [{"index": 0, "id": openai_chat.call_id(5), "type": "function",
                                    "function": {"name": "check_stock", "arguments": ""}}]
    pieces = [c["choices"][0]["delta"]["tool_calls"][0] for c in parsed[1:-2]]
    assert len(pieces) >= 2 and all(set(p) == {"index", "function"} for p in pieces)
    assert "".join(p["function"]["arguments"] for p in pieces) == '{"sku":"x","count":1}'
    assert parsed[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert parsed[-1]["usage"]["completion_tokens"] == tool_call_tokens({"sku": "x", "count": 1})


@pytest.mark.parametrize("choice, text, expected", [
    (None, "hello", None), (None, "use a TOOL", "check_stock"), ("auto", "hello", None),
    ("required", "hello", "check_stock"), ("none", "tool", None),
    ({"type": "function", "function": {"name": "other"}}, "hello", "other"),
])
def test_openai_tool_choice(choice, text, expected):
    other = {"type": "function", "function": {"name": "other", "parameters": {}}}
    request = chat_request(tools=[STOCK_FUNCTION, other], messages=[{"role": "user", "content": text}])
    if choice is not None:
        request["tool_choice"] = choice
    tool = openai_chat.plan(request, 12).answer.tool
    assert (tool.name if tool else None) == expected


def test_openai_errors():
    status, headers, body = openai_chat.error_response(529, None, 3)
    assert status == 503
    assert list(orjson.loads(body)["error"]) == ["message", "type", "param", "code"]
    assert (b"x-request-id", openai_chat.request_id(3).encode()) in headers
    status, headers, body = openai_chat.error_response(429, None, 3)
    assert orjson.loads(body)["error"]["code"] == "rate_limit_exceeded" and (b"retry-after", b"1") in headers
    assert orjson.loads(openai_chat.error_response(400, "bad", 1, "messages")[2]) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": None}}
    assert openai_chat.validate({"model": "m"}) == ("Missing required parameter: 'messages'.", "messages")
    assert "error" in json.loads(sse_events(openai_chat.stream_error(1))[0][1])


def test_openai_embeddings():
    body = orjson.loads(openai_chat.embeddings_body({"model": "e", "input": ["a b", "c"], "dimensions": 4}))
    assert [d["embedding"] for d in body["data"]] == [openai_chat.embedding_vector(0, 4),
                                                      openai_chat.embedding_vector(1, 4)]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    b64 = orjson.loads(openai_chat.embeddings_body({"model": "e", "input": [1, 2, 3],
                                                    "encoding_format": "base64"}))
    assert isinstance(b64["data"][0]["embedding"], str) and b64["usage"]["prompt_tokens"] == 3
    assert openai_chat.embeddings_body({"model": "e"}) is None


# -- streamed and whole answers agree -------------------------------------------------

words = st.lists(st.sampled_from(["alpha", "tool", "beta", "  ", "gamma\n", "é"]), max_size=6).map(" ".join)


@st.composite
def anthropic_requests(draw):
    content = draw(st.one_of(words, st.lists(st.builds(lambda t: {"type": "text", "text": t}, words),
                                             max_size=3)))
    request = {"model": "claude-sonnet-4-5", "max_tokens": draw(st.integers(0, 20)),
               "messages": [{"role": "user", "content": content}]}
    if draw(st.booleans()):
        request["tools"] = [STOCK_TOOL]
    if draw(st.booleans()):
        request["system"] = [{"type": "text", "text": draw(words), "cache_control": {"type": "ephemeral"}}]
    return request


@SETTINGS
@given(anthropic_requests(), st.integers(0, 30), st.integers(1, 10**6), st.integers(0, 4))
def test_anthropic_stream_rebuilds_the_message(request, length, seq, ping_every):
    plan = anthropic.plan(request, length)
    whole = json.loads(anthropic.message_body(plan, seq))
    events = sse_events(anthropic.stream(plan, seq, ping_every).joined())
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    message = json.loads(events[0][1])["message"]
    blocks: dict[int, dict] = {}
    partial: dict[int, str] = {}
    for name, payload in events[1:-1]:
        data = json.loads(payload)
        if name == "content_block_start":
            blocks[data["index"]] = data["content_block"]
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"].update(data["usage"])
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text)
    message["content"] = [blocks[i] for i in sorted(blocks)]
    assert message == whole
    assert whole["usage"] == expected_usage("anthropic", request, length)


@SETTINGS
@given(anthropic_requests(), st.integers(0, 30), st.booleans(), st.booleans())
def test_openai_stream_rebuilds_the_completion(anthropic_like, length, include_usage, reasoning):
    request = {"model": "gpt-5.4", "messages": anthropic_like["messages"],
               "max_completion_tokens": anthropic_like["max_tokens"], "stream": True,
               "stream_options": {"include_usage": include_usage}}
    if "tools" in anthropic_like:
        request["tools"] = [STOCK_FUNCTION]
    if reasoning:
        request["reasoning_effort"] = "medium"
    plan = openai_chat.plan(request, length)
    whole = json.loads(openai_chat.completion_body(plan, 9, created=5))
    parsed = chunks(openai_chat.stream(plan, 9, created=5).joined())
    message: dict = {"role": None, "content": None, "refusal": None}
    calls: dict[int, dict] = {}
    finish = None
    usage = None
    for chunk in parsed:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            finish = choice["finish_reason"] or finish
            for key in ("role", "refusal"):
                if key in delta:
                    message[key] = delta[key]
            if delta.get("content") is not None:
                message["content"] = (message["content"] or "") + delta["content"]
            for call in delta.get("tool_calls", []):
                slot = calls.setdefault(call["index"], {"function": {"arguments": ""}})
                for key in ("id", "type"):
                    if key in call:
                        slot[key] = call[key]
                if "name" in call["function"]:
                    slot["function"]["name"] = call["function"]["name"]
                slot["function"]["arguments"] += call["function"]["arguments"]
    expected = whole["choices"][0]
    assert finish == expected["finish_reason"]
    if calls:
        assert [{"id": c["id"], "type": c["type"], "function": {"name": c["function"]["name"],
                                                                "arguments": c["function"]["arguments"]}}
                for c in calls.values()] == expected["message"]["tool_calls"]
        assert message["content"] is None
    else:
        assert message["content"] == expected["message"]["content"]
    assert usage == (whole["usage"] if include_usage else None)
    assert whole["usage"] == expected_usage("openai", request, length)
    assert whole["usage"]["total_tokens"] == whole["usage"]["prompt_tokens"] + whole["usage"]["completion_tokens"]
