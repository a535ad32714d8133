"""OpenAI Responses as pure functions: usage, the event sequence and its
numbering, tool calls, and the stored-response lifecycle."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture.sim import expected_usage, openai_chat
from aperture.sim import openai_responses as responses
from aperture.sim.common import answer_text, answer_words, tool_call_tokens
from aperture.sim.routes import Call, Reject, Reply, Streamed

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCHEMA = {"type": "object", "properties": {"sku": {"type": "string"}, "count": {"type": "integer"}}}
FUNCTION = {"type": "function", "name": "check_stock", "description": "Stock level", "parameters": SCHEMA,
            "strict": True}
ARGS = {"sku": "x", "count": 1}


def request(**extra) -> dict:
    body = {"model": "gpt-5.4", "instructions": "Be brief.", "input": "How many are left?"}
    body.update(extra)
    return body


def events(data: bytes) -> list[dict]:
    """The events' JSON; asserts `event:` lines that repeat the JSON type and LF framing."""
    assert data.endswith(b"\n\n") and b"[DONE]" not in data
    out = []
    for block in data[:-2].split(b"\n\n"):
        name, data_line = block.decode().split("\n")
        assert name.startswith("event: ") and data_line.startswith("data: ")
        event = json.loads(data_line[len("data: "):])
        assert event["type"] == name[len("event: "):]
        out.append(event)
    return out


def call(body: dict | None, seq: int, store, params: dict | None = None, query: dict | None = None,
         length: int = 12) -> Call:
    return Call("POST", "/v1/responses", query or {}, {}, params or {}, body, seq, store, length)


# -- usage -----------------------------------------------------------------------------


def test_usage_counts_instructions_input_and_tools():
    # instructions 2 + input 4
    assert expected_usage("openai_responses", request()) == {
        "input_tokens": 6, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 18}
    listed = request(input=[{"role": "user", "content": [{"type": "input_text", "text": "a b c"}]}],
                     tools=[FUNCTION])
    # instructions 2 + "user" "input_text" + 3 + tool strings: function check_stock "Stock level"
    # object string integer = 7
    assert expected_usage("openai_responses", listed, 1)["input_tokens"] == 14


def test_cache_key_and_reasoning_follow_chat_completions():
    body = request(prompt_cache_key="tenant", reasoning={"effort": "low"}, max_output_tokens=9)
    usage = expected_usage("openai_responses", body)
    chat = expected_usage("openai_chat", {"model": "m", "messages": [], "prompt_cache_key": "t",
                                          "reasoning_effort": "low", "max_completion_tokens": 9})
    assert usage["input_tokens_details"]["cached_tokens"] == 6 // 2
    assert usage["output_tokens"] == chat["completion_tokens"] == 9
    assert usage["output_tokens_details"]["reasoning_tokens"] == chat["completion_tokens_details"][
        "reasoning_tokens"] == 4
    assert expected_usage("openai_responses", request(reasoning={"effort": "none"}))[
        "output_tokens_details"]["reasoning_tokens"] == 0
    body = orjson.loads(responses.response_body(responses.plan(body, 12), 1, created=5))
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["output"][1]["content"][0]["text"] == answer_text(5)  # 9 - 4 reasoning


def test_text_answer_body():
    body = orjson.loads(responses.response_body(responses.plan(request(), 3), 4, created=1760000000))
    assert body["id"] == responses.response_id(4) and body["object"] == "response"
    assert body["status"] == "completed" and body["created_at"] == 1760000000
    assert body["output"] == [{"id": responses.message_id(4), "type": "message", "status": "completed",
                               "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                                            "text": "Lorem ipsum dolor"}], "role": "assistant"}]
    assert body["usage"] == expected_usage("openai_responses", request(), 3)
    assert body["instructions"] == "Be brief." and body["store"] is True and body["error"] is None


def test_max_output_tokens_makes_the_answer_incomplete():
    body = orjson.loads(responses.response_body(responses.plan(request(max_output_tokens=2), 12), 1))
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete" and body["usage"]["output_tokens"] == 2
    stream = events(responses.stream(responses.plan(request(max_output_tokens=2), 12), 1).joined())
    assert stream[-1]["type"] == "response.incomplete"
    assert stream[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize("choice, text, expected", [
    (None, "hello", None), (None, "use a TOOL", "check_stock"), ("auto", "hello", None),
    ("required", "hello", "check_stock"), ("none", "tool", None),
    ({"type": "function", "name": "other"}, "hello", "other"),
])
def test_tool_choice(choice, text, expected):
    other = {"type": "function", "name": "other", "parameters": {}}
    body = request(tools=[{"type": "web_search"}, FUNCTION, other], instructions=None,
                   input=[{"role": "user", "content": "earlier tool talk"},
                          {"role": "assistant", "content": "ok"}, {"role": "user", "content": text}])
    if choice is not None:
        body["tool_choice"] = choice
    tool = responses.plan(body, 12).answer.tool
    assert (tool.name if tool else None) == expected


def test_tool_call_body():
    body = request(input="use the tool", tools=[FUNCTION], instructions=None)
    answer = orjson.loads(responses.response_body(responses.plan(body, 12), 6))
    assert answer["output"] == [{"id": responses.function_item_id(6), "type": "function_call",
                                 "status": "completed", "arguments": '{"sku":"x","count":1}',
                                 "call_id": responses.call_id(6), "name": "check_stock"}]
    assert answer["usage"]["output_tokens"] == tool_call_tokens(ARGS)


# -- the stream --------------------------------------------------------------------------


def test_text_stream_sequence():
    plan = responses.plan(request(stream=True), 3)
    stream = responses.stream(plan, 2, created=7)
    parsed = events(stream.joined())
    assert [e["type"] for e in parsed] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added"] + ["response.output_text.delta"] * 3 + [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    assert len(stream.head) == 4 and len(stream.deltas) == 3 and len(stream.tail) == 4
    created = parsed[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    deltas = [e for e in parsed if e["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == answer_words(3)
    assert all(d["item_id"] == responses.message_id(2) and d["output_index"] == 0 and d["content_index"] == 0
               and d["logprobs"] == [] and d["obfuscation"] for d in deltas)
    assert parsed[-4]["text"] == "Lorem ipsum dolor"
    assert parsed[-1]["response"] == orjson.loads(responses.response_body(plan, 2, created=7))
    plain = responses.plan(request(stream=True, stream_options={"include_obfuscation": False}), 3)
    assert all("obfuscation" not in e for e in events(responses.stream(plain, 2).joined()))


def test_tool_call_stream_sequence():
    plan = responses.plan(request(input="use the tool", tools=[FUNCTION], reasoning={"effort": "high"},
                                  instructions=None), 12)
    parsed = events(responses.stream(plan, 8, created=1).joined())
    assert [e["type"] for e in parsed] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.output_item.done", "response.output_item.added"] + [
        "response.function_call_arguments.delta"] * 3 + [
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    assert parsed[2]["item"]["type"] == "reasoning"
    added = parsed[4]
    assert added["output_index"] == 1 and added["item"] == {
        "id": responses.function_item_id(8), "type": "function_call", "status": "in_progress",
        "arguments": "", "call_id": responses.call_id(8), "name": "check_stock"}
    pieces = "".join(e["delta"] for e in parsed if e["type"] == "response.function_call_arguments.delta")
    assert json.loads(pieces) == ARGS and parsed[-3]["arguments"] == pieces
    assert parsed[-2]["item"]["status"] == "completed" and parsed[-2]["item"]["arguments"] == pieces
    usage = parsed[-1]["response"]["usage"]
    assert usage["output_tokens"] == 2 * tool_call_tokens(ARGS)
    assert usage["output_tokens_details"]["reasoning_tokens"] == tool_call_tokens(ARGS)


def test_failure_continues_the_numbering():
    plan = responses.plan(request(stream=True), 6)
    seq_call = call(request(stream=True), 3, responses.Store())
    answer = responses.create(seq_call)
    assert type(answer) is Streamed
    head = len(answer.events.head)
    failed = events(answer.failure(3))[0]
    assert failed["type"] == "response.failed" and failed["sequence_number"] == head + 3
    assert failed["response"]["status"] == "failed" and failed["response"]["usage"] is None
    assert failed["response"]["error"]["code"] == "server_error"
    assert failed["response"]["id"] == responses.response_id(3)
    assert plan.counts.prompt_tokens == 6


words = st.lists(st.sampled_from(["alpha", "tool", "beta", " ", "é"]), max_size=5).map(" ".join)


@SETTINGS
@given(words, st.integers(0, 20), st.one_of(st.none(), st.integers(0, 20)), st.booleans(), st.booleans())
def test_the_stream_rebuilds_the_response(text, length, cap, tools, reasoning):
    body = request(input=[{"role": "user", "content": text}], stream=True)
    if cap is not None:
        body["max_output_tokens"] = cap
    if tools:
        body["tools"] = [FUNCTION]
    if reasoning:
        body["reasoning"] = {"effort": "medium"}
    plan = responses.plan(body, length)
    whole = orjson.loads(responses.response_body(plan, 5, created=9))
    parsed = events(responses.stream(plan, 5, created=9).joined())
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    items: dict[int, dict] = {}
    for event in parsed:
        kind = event["type"]
        if kind == "response.output_item.added":
            items[event["output_index"]] = event["item"]
        elif kind == "response.content_part.added":
            items[event["output_index"]]["content"].append(event["part"])
        elif kind == "response.output_text.delta":
            items[event["output_index"]]["content"][event["content_index"]]["text"] += event["delta"]
        elif kind == "response.function_call_arguments.delta":
            items[event["output_index"]]["arguments"] += event["delta"]
        elif kind == "response.output_item.done":
            items[event["output_index"]]["status"] = event["item"].get("status")
            if "status" not in event["item"]:
                del items[event["output_index"]]["status"]
            assert items[event["output_index"]] == event["item"]
    terminal = parsed[-1]
    assert terminal["type"] in ("response.completed", "response.incomplete")
    assert terminal["response"] == whole and [items[i] for i in sorted(items)] == whole["output"]
    assert whole["usage"] == expected_usage("openai_responses", body, length)


# -- stored responses --------------------------------------------------------------------


def test_stored_response_lifecycle():
    store = responses.Store()
    body = request(input=[{"role": "user", "content": "first"},
                          {"type": "function_call_output", "call_id": "call_1", "output": "42"}])
    created = responses.create(call(body, 1, store))
    key = responses.response_id(1)
    assert type(created) is Reply and len(store) == 1
    fetched = responses.retrieve(call(None, 2, store, {"response_id": key}))
    assert orjson.loads(fetched.body) == orjson.loads(created.body)

    listing = orjson.loads(responses.list_input_items(call(None, 3, store, {"response_id": key})).body)
    assert listing["object"] == "list" and listing["has_more"] is False
    kinds = [item["type"] for item in listing["data"]]
    assert kinds == ["function_call_output", "message"]  # newest first, by default
    assert listing["data"][1]["content"] == [{"type": "input_text", "text": "first"}]
    assert listing["first_id"] == listing["data"][0]["id"] and listing["last_id"] == listing["data"][1]["id"]
    ascending = orjson.loads(responses.list_input_items(
        call(None, 4, store, {"response_id": key}, {"order": "asc", "limit": "1"})).body)
    assert [i["type"] for i in ascending["data"]] == ["message"] and ascending["has_more"] is True
    after = orjson.loads(responses.list_input_items(
        call(None, 4, store, {"response_id": key}, {"order": "asc", "after": ascending["last_id"]})).body)
    assert [i["type"] for i in after["data"]] == ["function_call_output"]

    follow = call(request(previous_response_id=key), 5, store)
    responses.check_create(follow)
    deleted = responses.delete(call(None, 6, store, {"response_id": key}))
    assert orjson.loads(deleted.body) == {"id": key, "object": "response.deleted", "deleted": True}
    for action in (responses.check_stored, responses.check_cancel):
        with pytest.raises(Reject) as err:
            action(call(None, 7, store, {"response_id": key}))
        assert err.value.status == 404
    with pytest.raises(Reject) as err:
        responses.check_create(call(request(previous_response_id=key), 8, store))
    assert (err.value.status, err.value.param, err.value.code) == (
        400, "previous_response_id", "previous_response_not_found")


def test_store_false_streams_and_the_bound():
    store = responses.Store(limit=2)
    responses.create(call(request(store=False), 1, store))
    assert len(store) == 0
    responses.create(call(request(stream=True), 2, store))
    assert store.get(responses.response_id(2)).response["status"] == "completed"
    responses.create(call(request(), 3, store))
    responses.create(call(request(), 4, store))
    assert store.get(responses.response_id(2)) is None and len(store) == 2


def test_background_and_cancel():
    store = responses.Store()
    queued = orjson.loads(responses.create(call(request(background=True), 1, store)).body)
    assert queued["status"] == "queued" and queued["output"] == [] and queued["usage"] is None
    key = responses.response_id(1)
    target = call(None, 2, store, {"response_id": key})
    responses.check_cancel(target)
    assert orjson.loads(responses.cancel(target).body)["status"] == "completed"
    responses.create(call(request(), 3, store))
    with pytest.raises(Reject) as err:
        responses.check_cancel(call(None, 4, store, {"response_id": responses.response_id(3)}))
    assert err.value.status == 400


def test_input_tokens_compact_and_validation():
    body = request(tools=[FUNCTION])
    counted = orjson.loads(responses.input_tokens(call(body, 1, None)).body)
    assert counted == {"object": "response.input_tokens",
                       "input_tokens": expected_usage("openai_responses", body)["input_tokens"]}
    compacted = orjson.loads(responses.compact_body(request(prompt_cache_key="k"), 2, 4, created=3))
    assert compacted["object"] == "response.compaction" and compacted["output"][-1]["type"] == "compaction"
    assert compacted["output"][0]["role"] == "user"
    assert compacted["usage"] == expected_usage("openai_responses_compact", request(prompt_cache_key="k"), 4)
    assert compacted["usage"]["input_tokens_details"]["cached_tokens"] == 3
    assert responses.validate({"input": "x"}) == ("Missing required parameter: 'model'.", "model")
    status, _, error = responses.error_response(404, "gone", 1, code="not_found")
    assert status == 404 and orjson.loads(error)["error"]["code"] == "not_found"
    assert openai_chat.error_response(529, None, 1)[0] == 503
