"""Anthropic Messages as the provider answers it (reference/wire-formats.md §1).

Pure functions from a parsed request to the bytes Anthropic would send: the
non-streaming `Message`, the SSE event flow (`message_start`,
`content_block_start`, `ping`, `content_block_delta`..., `content_block_stop`,
`message_delta`, `message_stop`), errors, `count_tokens` and the model list.

Usage (see `aperture.sim.common` for the word rule): W = words of `system`,
`messages` and `tools`. Without any `cache_control` (top level or on any
block) `input_tokens` = W and both cache counts are 0. With one, the prompt is
split the way a cache hit with a fresh write would be:
`cache_read_input_tokens` = W // 2, `cache_creation_input_tokens` = W // 4,
`input_tokens` = the rest (always >= 1), so the three add up to W, as the
Anthropic total does. `output_tokens` is the answer length.
"""

from __future__ import annotations

import datetime
import json
from typing import NamedTuple

import orjson

from aperture.sim import agent
from aperture.sim.common import (CACHED_LENGTHS, MODELS, Answer, EventStream,
                                 answer_words, as_count, count_words, last_user_text, make_answer,
                                 message_text, text_of,
                                 split_fragments)
from aperture.sim.routes import Call, Reject, Reply, Route, Streamed

API = "anthropic_messages"
NAME = API
JSON = b"application/json"
EVENT_STREAM = b"text/event-stream; charset=utf-8"

# -- identifiers (from the simulator's request counter, so tests can predict them)


def request_id(seq: int) -> str:
    return "req_011Sim%014d" % seq


def message_id(seq: int) -> str:
    return "msg_01Sim%015d" % seq


def tool_use_id(seq: int) -> str:
    return "toolu_01Sim%015d" % seq


# -- the plan: every number of the answer, decided once --------------------------


class Plan(NamedTuple):
    model: str
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    answer: Answer

    @property
    def stop_reason(self) -> str:
        answer = self.answer
        if answer.tool is not None:
            return "tool_use"
        return "max_tokens" if answer.truncated else "end_turn"

    @property
    def usage(self) -> dict:
        """The `usage` object of the non-streaming `Message`."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": self.cache_creation_input_tokens,
                               "ephemeral_1h_input_tokens": 0},
            "output_tokens": self.answer.output_tokens,
            "service_tier": "standard",
        }


def prompt_words(request: dict) -> tuple[int, bool]:
    """(W, whether any cache_control is set)."""
    words, marked = count_words(request.get("system"), request.get("messages"), request.get("tools"))
    return max(words, 1), marked or "cache_control" in request


def input_counts(request: dict) -> tuple[int, int, int]:
    """(input_tokens, cache_creation_input_tokens, cache_read_input_tokens)."""
    words, marked = prompt_words(request)
    if not marked:
        return words, 0, 0
    read = words // 2
    creation = words // 4
    return words - read - creation, creation, read


def chosen_tool(request: dict) -> tuple[str, object] | None:
    """(name, input_schema) of the tool the answer calls, or None for text."""
    tools = request.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = request.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "none":
        return None
    if kind == "tool":
        name = choice.get("name")  # type: ignore[union-attr]
        for tool in tools:
            if isinstance(tool, dict) and tool.get("name") == name:
                return name, tool.get("input_schema")
        return (name, None) if isinstance(name, str) else None
    if kind != "any" and (request.get("system")
                          or "tool" not in last_user_text(request.get("messages")).lower()):
        return None
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            return tool["name"], tool.get("input_schema")
    return None


def agent_turn(request: dict) -> Answer | None:
    """The answer of a coding agent's marked exchange (aperture.sim.agent), or None."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    # The conversation's last turn; instructions after it (a "system"
    # message, as Claude Code sends) are not a turn.
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    if not turns:
        return None
    user_texts = [message_text(m.get("content")) for m in turns if m.get("role") == "user"]
    last = turns[-1]
    result = None
    last_text = ""
    if isinstance(last, dict) and last.get("role") == "user":
        content = last.get("content")
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
            if isinstance(content, list) else []
        if results:
            result = "\n".join(agent.result_text(b.get("content")) for b in results)
        else:
            last_text = message_text(content)
    tools = [(t["name"], t.get("input_schema")) for t in request.get("tools") or ()
             if isinstance(t, dict) and isinstance(t.get("name"), str)] \
        if isinstance(request.get("tools"), list) else []
    return agent.agent_answer(user_texts, last_text, result, tools)


def plan(request: dict, output_tokens: int) -> Plan:
    """The answer to a valid `/v1/messages` request; `output_tokens` is the
    answer length before the request's `max_tokens` cap."""
    model = request.get("model")
    answer = agent_turn(request)
    if answer is None:
        answer = make_answer(chosen_tool(request), output_tokens, as_count(request.get("max_tokens")))
    return Plan(model if isinstance(model, str) else "", *input_counts(request), answer)


def validate(request: dict, count_tokens: bool = False) -> str | None:
    """The message of the 400 the API would answer, or None."""
    if not isinstance(request.get("model"), str):
        return "model: Field required"
    if not isinstance(request.get("messages"), list):
        return "messages: Field required"
    if not count_tokens and as_count(request.get("max_tokens")) is None:
        return "max_tokens: Field required"
    return None


# -- non-streaming ----------------------------------------------------------------


def content_block(plan: Plan, seq: int) -> dict:
    tool = plan.answer.tool
    if tool is not None:
        return {"type": "tool_use", "id": tool_use_id(seq), "name": tool.name, "input": tool.arguments}
    return {"type": "text", "text": text_of(plan.answer)}


def message_body(plan: Plan, seq: int) -> bytes:
    return orjson.dumps({
        "id": message_id(seq),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [content_block(plan, seq)],
        "stop_reason": plan.stop_reason,
        "stop_sequence": None,
        "usage": plan.usage,
    })


def count_tokens_body(request: dict) -> bytes:
    """`/v1/messages/count_tokens`: the whole prompt, cached or not."""
    return orjson.dumps({"input_tokens": prompt_words(request)[0]})


# -- streaming ----------------------------------------------------------------------

# Constant events, prebuilt. The ping keeps the space after the colon, as the API sends it.
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
TEXT_BLOCK_START = (b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                    b'"content_block":{"type":"text","text":""}}\n\n')
_TEXT_DELTA = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
               b'"delta":{"type":"text_delta","text":')
_JSON_DELTA = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
               b'"delta":{"type":"input_json_delta","partial_json":')
_DELTA_END = b"}}\n\n"


# Text deltas are the same bytes in every answer: prebuilt per answer length.
_TEXT_DELTAS: dict[int, tuple[bytes, ...]] = {}


def text_deltas(words: int) -> tuple[bytes, ...]:
    deltas = _TEXT_DELTAS.get(words)
    if deltas is None:
        deltas = tuple(_TEXT_DELTA + orjson.dumps(piece) + _DELTA_END for piece in answer_words(words))
        if words <= CACHED_LENGTHS:
            _TEXT_DELTAS[words] = deltas
    return deltas


def event(name: bytes, data: dict) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream(plan: Plan, seq: int, ping_every: int = 0) -> EventStream:
    """The SSE events of a streamed answer. One ping follows the first
    `content_block_start`, as the API sends it; with `ping_every` = N > 0
    another follows every N-th content delta."""
    usage = plan.usage
    output_tokens = usage["output_tokens"]
    usage["output_tokens"] = min(output_tokens, 1)
    start = event(b"message_start", {
        "type": "message_start",
        "message": {"id": message_id(seq), "type": "message", "role": "assistant",
                    "model": plan.model, "content": [], "stop_reason": None,
                    "stop_sequence": None, "usage": usage},
    })
    tool = plan.answer.tool
    if tool is None:
        block_start = TEXT_BLOCK_START
        deltas = text_deltas(plan.answer.words) if plan.answer.text is None else tuple(
            _TEXT_DELTA + orjson.dumps(piece) + _DELTA_END for piece in plan.answer.text)
    else:
        block_start = event(b"content_block_start", {
            "type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": tool_use_id(seq), "name": tool.name,
                              "input": {}}})
        # The API's partial JSON is spaced like Python's json.dumps; the first
        # fragment is empty, as recorded streams show.
        text = json.dumps(tool.arguments, ensure_ascii=False)
        deltas = [_JSON_DELTA + orjson.dumps(piece) + _DELTA_END
                  for piece in ["", *split_fragments(text)]]
    if ping_every > 0:
        deltas = list(deltas)
        for i in range(ping_every - 1, len(deltas), ping_every):
            deltas[i] += PING
    delta = event(b"message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None},
        "usage": {"input_tokens": plan.input_tokens,
                  "cache_creation_input_tokens": plan.cache_creation_input_tokens,
                  "cache_read_input_tokens": plan.cache_read_input_tokens,
                  "output_tokens": output_tokens}})
    return EventStream((start, block_start, PING), tuple(deltas), (BLOCK_STOP, delta, MESSAGE_STOP))


# -- errors -------------------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error",
}
ERROR_MESSAGES = {
    401: "invalid x-api-key", 403: "Your API key does not have permission to use the specified resource.",
    404: "Not found", 429: "Number of requests has exceeded your per-minute rate limit",
    500: "Internal server error", 504: "Request timed out", 529: "Overloaded",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_response(status: int, message: str | None, seq: int, param: str | None = None,
                   code: str | None = None) -> tuple[int, list, bytes]:
    """(status, headers, body) of an error answer; `code` overrides the error type."""
    rid = request_id(seq)
    body = orjson.dumps({
        "type": "error",
        "error": {"type": code or error_type(status),
                  "message": message or ERROR_MESSAGES.get(status, "Error")},
        "request_id": rid,
    })
    headers = [(b"content-type", JSON), (b"request-id", rid.encode())]
    if status == 429:
        headers.append((b"retry-after", b"1"))
    return status, headers, body


def stream_error(seq: int) -> bytes:
    """The mid-stream `error` event (an overload, as the API documents)."""
    return event(b"error", {"type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"}})


def headers(seq: int, streaming: bool) -> list[tuple[bytes, bytes]]:
    rid = request_id(seq).encode()
    if streaming:
        return [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache"), (b"request-id", rid)]
    return [(b"content-type", JSON), (b"request-id", rid)]


# -- models -------------------------------------------------------------------------


def _model_item(model_id: str, display: str, created: int) -> dict:
    stamp = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
    return {"type": "model", "id": model_id, "display_name": display,
            "created_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}


MODEL_LIST = orjson.dumps({
    "data": [_model_item(m, display, created) for m, _, display, created in MODELS],
    "has_more": False,
    "first_id": MODELS[0][0],
    "last_id": MODELS[-1][0],
})


def model_body(model_id: str) -> bytes:
    for m, _, display, created in MODELS:
        if m == model_id:
            return orjson.dumps(_model_item(m, display, created))
    return orjson.dumps(_model_item(model_id, model_id, MODELS[0][3]))


# -- routes -------------------------------------------------------------------------


def check_messages(call: Call) -> None:
    problem = validate(call.request)
    if problem is not None:
        raise Reject(400, problem)


def check_count_tokens(call: Call) -> None:
    problem = validate(call.request, count_tokens=True)
    if problem is not None:
        raise Reject(400, problem)


STREAM_ERROR = stream_error(0)


def stream_failure(sent: int) -> bytes:
    return STREAM_ERROR


def answer(request: dict, call: Call) -> Reply | Streamed:
    """A Messages answer (JSON, or SSE when `stream` is true); also the answer
    of Claude on Vertex, whose bytes are the same."""
    seq = call.seq
    the_plan = plan(request, call.length)
    if request.get("stream") is True:
        return Streamed(headers(seq, True), stream(the_plan, seq, call.ping_every), stream_failure)
    return Reply(headers(seq, False), message_body(the_plan, seq))


def messages(call: Call) -> Reply | Streamed:
    return answer(call.request, call)


def count_tokens(call: Call) -> Reply:
    return Reply(headers(call.seq, False), count_tokens_body(call.request))


def owns(headers: dict, query: dict) -> bool:
    """Anthropic's SDKs (and Claude Code) always send anthropic-version."""
    return "anthropic-version" in headers


def _when(headers: dict, query: dict) -> bool:
    return "anthropic-version" in headers


def list_models(call: Call) -> Reply:
    return Reply(headers(call.seq, False), MODEL_LIST)


def get_model(call: Call) -> Reply:
    return Reply(headers(call.seq, False), model_body(call.params["model_id"]))


ROUTES = (
    Route("POST", "/v1/messages", messages, check_messages),
    Route("POST", "/v1/messages/count_tokens", count_tokens, check_count_tokens),
    # /v1/models is OpenAI's path too: Anthropic clients send anthropic-version.
    Route("GET", "/v1/models", list_models, model=None, body=False, faults=False, when=_when),
    Route("GET", "/v1/models/{model_id}", get_model, model=None, body=False, faults=False, when=_when),
)

USAGE = {"anthropic": lambda request, output_tokens: plan(request, output_tokens).usage,
         "anthropic_messages": lambda request, output_tokens: plan(request, output_tokens).usage}
