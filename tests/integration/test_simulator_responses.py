"""The simulator's OpenAI Responses API driven by the official `openai` SDK over
real sockets: answers, streams, the stream helper with a function tool, the
stored-response calls, and faults as the SDK's errors."""

from __future__ import annotations

import json

import openai
import pytest

from aperture.sim import expected_usage
from aperture.sim.common import answer_text, answer_words, tool_call_tokens

from .conftest import serve_simulator

FUNCTION = {"type": "function", "name": "check_stock", "description": "Stock level for a SKU",
            "parameters": {"type": "object", "properties": {"sku": {"type": "string"}},
                           "required": ["sku"], "additionalProperties": False},
            "strict": True}
ARGS = {"sku": "x"}


@pytest.fixture(scope="module")
def sim(loop_thread):
    with serve_simulator(loop_thread) as sim:
        yield sim


@pytest.fixture(scope="module")
def client(sim):
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="sk-openai-test", max_retries=0, timeout=10) as c:
        yield c


def usage_of(usage) -> dict:
    return usage.model_dump(exclude_none=True)


def test_create(client, sim):
    request = {"model": "gpt-5.4", "instructions": "Be brief.", "input": "How many X-91 are left?",
               "prompt_cache_key": "tenant-1", "reasoning": {"effort": "low"}}
    response = client.responses.create(**request)
    assert response.status == "completed" and response.output_text == answer_text(6)
    assert usage_of(response.usage) == expected_usage("openai_responses", request)
    assert response.usage.input_tokens_details.cached_tokens > 0
    assert response.usage.output_tokens_details.reasoning_tokens == 6
    method, path, headers, body = sim.sim.seen[-1]
    assert (method, path, headers["authorization"]) == ("POST", "/v1/responses", "Bearer sk-openai-test")
    assert json.loads(body) == request


def test_create_streamed(client):
    request = {"model": "gpt-5.4-mini", "input": [{"role": "user", "content": "Say something."}]}
    events = list(client.responses.create(**request, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == answer_words(12)
    assert usage_of(events[-1].response.usage) == expected_usage("openai_responses", request)


def test_stream_helper_with_a_function_tool(client):
    request = {"model": "gpt-5.4", "input": "Use the tool to check X-91.", "tools": [FUNCTION]}
    with client.responses.stream(**request) as stream:
        kinds = [event.type for event in stream]
        response = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    call = response.output[0]
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "check_stock", ARGS)
    assert call.parsed_arguments == ARGS and call.call_id.startswith("call_")
    assert usage_of(response.usage) == expected_usage("openai_responses", request)
    assert response.usage.output_tokens == tool_call_tokens(ARGS)
    forced = client.responses.create(model="gpt-5.4", input="hello", tools=[FUNCTION], tool_choice="required")
    assert forced.output[0].arguments == call.arguments


def test_stored_responses(client):
    first = client.responses.create(model="gpt-5.4", input=[
        {"role": "user", "content": "Remember X-91."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [{"type": "input_text", "text": "How many are left?"}]}])
    fetched = client.responses.retrieve(first.id)
    assert fetched.id == first.id and fetched.output_text == first.output_text
    assert fetched.usage == first.usage

    items = client.responses.input_items.list(first.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "assistant"),
                                                      ("message", "user")]
    assert items.data[0].content[0].text == "How many are left?"
    oldest = client.responses.input_items.list(first.id, order="asc", limit=1)
    assert oldest.data[0].content[0].text == "Remember X-91." and oldest.has_more

    follow = client.responses.create(model="gpt-5.4", input="And now?", previous_response_id=first.id)
    assert follow.previous_response_id == first.id

    assert client.responses.delete(first.id) is None
    with pytest.raises(openai.NotFoundError, match=first.id):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(first.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt-5.4", input="x", previous_response_id=first.id)
    assert err.value.code == "previous_response_not_found" and err.value.param == "previous_response_id"

    unstored = client.responses.create(model="gpt-5.4", input="x", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_background_and_cancel(client):
    queued = client.responses.create(model="gpt-5.4", input="hello", background=True)
    assert queued.status == "queued" and queued.usage is None
    assert client.responses.retrieve(queued.id).status == "completed"
    assert client.responses.cancel(queued.id).id == queued.id
    plain = client.responses.create(model="gpt-5.4", input="hello")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)


def test_input_tokens_and_compact(client):
    request = {"model": "gpt-5.4", "input": "Count these five words please", "tools": [FUNCTION]}
    counted = client.responses.input_tokens.count(**request)
    assert counted.input_tokens == expected_usage("openai_responses", request)["input_tokens"]
    compacted = client.responses.compact(model="gpt-5.4", input="a long conversation")
    assert compacted.object == "response.compaction" and compacted.output[-1].type == "compaction"
    assert usage_of(compacted.usage) == expected_usage("openai_responses_compact",
                                                       {"model": "gpt-5.4", "input": "a long conversation"})


# -- faults --------------------------------------------------------------------------


@pytest.mark.parametrize("fault, error, status", [
    ("429", openai.RateLimitError, 429), ("500", openai.InternalServerError, 500),
    ("529", openai.InternalServerError, 503), ("403", openai.PermissionDeniedError, 403),
])
def test_status_faults(client, fault, error, status):
    with pytest.raises(error) as err:
        client.responses.create(model="gpt-5.4", input="x", extra_headers={"x-sim-error": fault})
    assert err.value.status_code == status and set(err.value.body) == {"message", "type", "param", "code"}
    with pytest.raises(error):
        client.responses.create(model="gpt-5.4-sim-error-" + fault, input="x", stream=True)


def test_error_event_fails_the_response(client):
    events = list(client.responses.create(model="gpt-5.4", input="x", stream=True,
                                          extra_headers={"x-sim-error": "error-event"}))
    assert events[-1].type == "response.failed" and events[-1].response.error.code == "server_error"
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert 0 < len(deltas) < 12
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with pytest.raises(openai.InternalServerError):  # a JSON answer gets the overload status
        client.responses.create(model="gpt-5.4", input="x", extra_headers={"x-sim-error": "error-event"})


def test_cut_and_stall(client, sim):
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="sim-error-cut", input="x", stream=True))
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(model="gpt-5.4", input="x", extra_headers={"x-sim-error": "cut"})
    slow = client.with_options(timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        list(slow.responses.create(model="gpt-5.4", input="x", stream=True,
                                   extra_headers={"x-sim-error": "stall"}))
    stored = client.responses.create(model="gpt-5.4", input="x")
    with pytest.raises(openai.APITimeoutError):
        slow.responses.retrieve(stored.id, extra_headers={"x-sim-error": "slow-head"})
