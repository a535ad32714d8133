"""OpenAI Chat Completions as the provider answers it (reference/wire-formats.md §2).

Pure functions from a parsed request to the bytes OpenAI would send: the
`chat.completion` body, the `chat.completion.chunk` stream ending in
`data: [DONE]` (with the `choices: []` usage chunk only when
`stream_options.include_usage` is set), errors, embeddings and the model list.

Usage (see `aperture.sim.common` for the word rule): `prompt_tokens` = words
of `messages` and `tools`; `prompt_tokens_details.cached_tokens` =
prompt_tokens // 2 when the request sets `prompt_cache_key`, else 0.
`completion_tokens` = the answer length (capped by `max_completion_tokens`,
or else `max_tokens`). With `reasoning_effort` set (and not "none"),
`completion_tokens_details.reasoning_tokens` = completion_tokens // 2 and the
visible text is the other part; a tool call then counts twice its own tokens,
half of them reasoning.

Chunks carry an `obfuscation` filler field, as the API does by default,
unless `stream_options.include_obfuscation` is false.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import NamedTuple

import orjson

from aperture.sim import agent
from aperture.sim.common import (CACHED_LENGTHS, MODELS, Answer, EventStream,
                                 answer_words, as_count, count_words, last_user_text, make_answer,
                                 message_text, split_fragments, text_of)
from aperture.sim.routes import Call, Reject, Reply, Route, Streamed

API = "openai_chat"
NAME = API
JSON = b"application/json"
EVENT_STREAM = b"text/event-stream; charset=utf-8"
FINGERPRINT = "fp_sim0001"
DONE = b"data: [DONE]\n\n"


def request_id(seq: int) -> str:
    return "req_sim%025d" % seq


def completion_id(seq: int) -> str:
    return "chatcmpl-Sim%017d" % seq


def call_id(seq: int) -> str:
    return "call_Sim%016d" % seq


class Plan(NamedTuple):
    model: str
    prompt_tokens: int
    cached_tokens: int
    reasoning: bool
    answer: Answer
    include_usage: bool
    obfuscation: bool

    @property
    def reasoning_tokens(self) -> int:
        if not self.reasoning:
            return 0
        return self.answer.output_tokens if self.answer.tool is not None else self.answer.output_tokens // 2

    @property
    def completion_tokens(self) -> int:
        if self.answer.tool is not None:
            return self.answer.output_tokens + self.reasoning_tokens
        return self.answer.output_tokens

    @property
    def text_words(self) -> int:
        """Words of visible text (the completion minus its reasoning share)."""
        return self.answer.words - self.reasoning_tokens if self.answer.tool is None else 0

    @property
    def finish_reason(self) -> str:
        if self.answer.tool is not None:
            return "tool_calls"
        return "length" if self.answer.truncated else "stop"

    @property
    def usage(self) -> dict:
        completion = self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }


def has_system(messages: object) -> bool:
    """Whether a message list starts with instructions (a system or developer message)."""
    return isinstance(messages, list) and any(
        isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages)


def agent_turn(request: dict) -> Answer | None:
    """The answer of a coding agent's marked exchange (aperture.sim.agent), or None."""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return None
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant", "tool")]
    if not turns:
        return None
    user_texts = [message_text(m.get("content")) for m in turns if m.get("role") == "user"]
    last = turns[-1]
    result = last_text = None
    if last.get("role") == "tool":
        result = agent.result_text(last.get("content"))
    elif last.get("role") == "user":
        last_text = message_text(last.get("content"))
    else:
        return None
    tools = [(t["function"]["name"], t["function"].get("parameters"))
             for t in request.get("tools") or () if isinstance(t, dict)
             and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)] \
        if isinstance(request.get("tools"), list) else []
    return agent.agent_answer(user_texts, last_text or "", result, tools)


def chosen_tool(request: dict) -> tuple[str, object] | None:
    """(name, parameters schema) of the function the answer calls, or None."""
    tools = request.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = request.get("tool_choice")
    if choice == "none":
        return None
    functions = [t["function"] for t in tools
                 if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
                 and isinstance(t["function"].get("name"), str)]
    if isinstance(choice, dict) and choice.get("type") == "function":
        wanted = choice.get("function")
        name = wanted.get("name") if isinstance(wanted, dict) else None
        for fn in functions:
            if fn["name"] == name:
                return name, fn.get("parameters")
        return (name, None) if isinstance(name, str) else None
    if choice != "required" and (has_system(request.get("messages"))
                                 or "tool" not in last_user_text(request.get("messages")).lower()):
        return None
    if functions:
        return functions[0]["name"], functions[0].get("parameters")
    return None


def plan(request: dict, output_tokens: int) -> Plan:
    """The answer to a valid request; `output_tokens` is the answer length
    before the request's cap."""
    words = max(count_words(request.get("messages"), request.get("tools"))[0], 1)
    cached = words // 2 if request.get("prompt_cache_key") is not None else 0
    effort = request.get("reasoning_effort")
    cap = as_count(request.get("max_completion_tokens"))
    if cap is None:
        cap = as_count(request.get("max_tokens"))
    options = request.get("stream_options")
    if not isinstance(options, dict):
        options = {}
    model = request.get("model")
    return Plan(model if isinstance(model, str) else "", words, cached,
                effort is not None and effort != "none",
                agent_turn(request) or make_answer(chosen_tool(request), output_tokens, cap),
                options.get("include_usage") is True, options.get("include_obfuscation") is not False)


def validate(request: dict) -> tuple[str, str] | None:
    """(message, param) of the 400 the API would answer, or None."""
    if not isinstance(request.get("model"), str):
        return "you must provide a model parameter", "model"
    if not isinstance(request.get("messages"), list):
        return "Missing required parameter: 'messages'.", "messages"
    return None


# -- non-streaming ----------------------------------------------------------------


def tool_call(plan: Plan, seq: int) -> dict:
    tool = plan.answer.tool
    assert tool is not None
    return {"id": call_id(seq), "type": "function",
            "function": {"name": tool.name, "arguments": orjson.dumps(tool.arguments).decode()}}


def completion_body(plan: Plan, seq: int, created: int | None = None) -> bytes:
    if plan.answer.tool is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [tool_call(plan, seq)],
                   "refusal": None, "annotations": []}
    else:
        message = {"role": "assistant", "content": text_of(plan.answer, plan.text_words), "refusal": None,
                   "annotations": []}
    return orjson.dumps({
        "id": completion_id(seq),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": plan.finish_reason}],
        "usage": plan.usage,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    })


# -- streaming ----------------------------------------------------------------------

_OPEN_CHOICE = b',"choices":[{"index":0,"delta":'
_RUNNING = b',"logprobs":null,"finish_reason":null}]'
_FILLER = b"Xk3pQ7vR2mZ9aB4c"


_CONTENT_DELTAS: dict[int, tuple[bytes, ...]] = {}


def content_deltas(words: int) -> tuple[bytes, ...]:
    """The `delta` objects of a text answer, the same in every stream: prebuilt per length."""
    deltas = _CONTENT_DELTAS.get(words)
    if deltas is None:
        deltas = tuple(b'{"content":' + orjson.dumps(piece) + b"}" for piece in answer_words(words))
        if words <= CACHED_LENGTHS:
            _CONTENT_DELTAS[words] = deltas
    return deltas


def stream(plan: Plan, seq: int, created: int | None = None) -> EventStream:
    """The `data:` chunks of a streamed answer, ending in `data: [DONE]`.

    Every chunk starts with the same prebuilt prefix (id, object, created,
    model, service tier, fingerprint); only the delta is serialized per chunk.
    """
    base = orjson.dumps({
        "id": completion_id(seq), "object": "chat.completion.chunk",
        "created": int(time.time()) if created is None else created,
        "model": plan.model, "service_tier": "default", "system_fingerprint": FINGERPRINT,
    })[:-1]
    prefix = b"data: " + base + _OPEN_CHOICE
    usage_null = b',"usage":null' if plan.include_usage else b""
    obfuscate = plan.obfuscation
    count = 0

    def chunk(delta: bytes, finish: bytes = _RUNNING) -> bytes:
        nonlocal count
        count += 1
        end = usage_null
        if obfuscate:
            end += b',"obfuscation":"' + _FILLER[:1 + (count * 5) % len(_FILLER)] + b'"'
        return prefix + delta + finish + end + b"}\n\n"

    tool = plan.answer.tool
    if tool is None:
        first = chunk(b'{"role":"assistant","content":"","refusal":null}')
        deltas = [chunk(delta) for delta in (
            content_deltas(plan.text_words) if plan.answer.text is None else
            [b'{"content":' + orjson.dumps(piece) + b"}" for piece in plan.answer.text])]
    else:
        call = {"index": 0, "id": call_id(seq), "type": "function",
                "function": {"name": tool.name, "arguments": ""}}
        first = chunk(b'{"role":"assistant","content":null,"tool_calls":[' + orjson.dumps(call) + b"]}")
        deltas = [chunk(b'{"tool_calls":[{"index":0,"function":{"arguments":' + orjson.dumps(piece) + b"}}]}")
                  for piece in split_fragments(orjson.dumps(tool.arguments).decode())]
    tail = [chunk(b"{}", b',"logprobs":null,"finish_reason":"' + plan.finish_reason.encode() + b'"}]')]
    if plan.include_usage:
        end = b',"obfuscation":"' + _FILLER[:3] + b'"' if obfuscate else b""
        tail.append(b"data: " + base + b',"choices":[],"usage":' + orjson.dumps(plan.usage) + end + b"}\n\n")
    tail.append(DONE)
    return EventStream((first,), tuple(deltas), tuple(tail))


# -- errors -------------------------------------------------------------------------

# status -> (message, type, code)
ERRORS = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", "model_not_found"),
    404: ("The requested resource does not exist.", "invalid_request_error", "unknown_url"),
    429: ("Rate limit reached for requests per min (RPM). Please try again in 1s.", "requests",
          "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}


def error_response(status: int, message: str | None, seq: int, param: str | None = None,
                   code: str | None = None) -> tuple[int, list, bytes]:
    """(status, headers, body) of an error answer; `code` overrides the
    status's usual error code. Anthropic's 529 (overloaded) is a 503 here."""
    if status == 529:
        status = 503
    default_message, kind, default_code = ERRORS.get(
        status, ("Error.", "server_error" if status >= 500 else "invalid_request_error", None))
    body = orjson.dumps({"error": {"message": message or default_message, "type": kind,
                                   "param": param, "code": code or default_code}})
    headers = [(b"content-type", JSON), (b"x-request-id", request_id(seq).encode())]
    if status == 429:
        headers.append((b"retry-after", b"1"))
    return status, headers, body


def stream_error(seq: int) -> bytes:
    """A mid-stream error: a `data:` payload with an `error` key."""
    return b"data: " + orjson.dumps({"error": {"message": ERRORS[503][0], "type": "server_error",
                                               "param": None, "code": None}}) + b"\n\n"


def headers(seq: int, streaming: bool) -> list[tuple[bytes, bytes]]:
    rid = request_id(seq).encode()
    if streaming:
        return [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache"), (b"x-request-id", rid)]
    return [(b"content-type", JSON), (b"x-request-id", rid)]


# -- embeddings and models -------------------------------------------------------------

EMBEDDING_DIMENSIONS = 8


def embedding_vector(index: int, dimensions: int) -> list[float]:
    """A fixed unit-ish vector per input position (exact in float32)."""
    return [((index + i) % 8 - 3.5) / 8.0 for i in range(dimensions)]


def embeddings_body(request: dict) -> bytes | None:
    """`/v1/embeddings`; None when `input` is missing. `prompt_tokens` = words
    of the string inputs plus the count of token-id inputs."""
    items = request.get("input")
    if isinstance(items, str) or (isinstance(items, list) and items and type(items[0]) is int):
        items = [items]
    if not isinstance(items, list) or not items:
        return None
    tokens = 0
    for item in items:
        tokens += len(item.split()) if isinstance(item, str) else len(item) if isinstance(item, list) else 0
    dims = as_count(request.get("dimensions")) or EMBEDDING_DIMENSIONS
    as_base64 = request.get("encoding_format") == "base64"
    data = []
    for index in range(len(items)):
        vector = embedding_vector(index, dims)
        value: object = vector
        if as_base64:
            value = base64.b64encode(struct.pack("<%df" % dims, *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    model = request.get("model")
    return orjson.dumps({"object": "list", "data": data, "model": model if isinstance(model, str) else "",
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _model_item(model_id: str, owner: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


MODEL_LIST = orjson.dumps({"object": "list",
                           "data": [_model_item(m, owner, created) for m, owner, _, created in MODELS]})


def model_body(model_id: str) -> bytes:
    for m, owner, _, created in MODELS:
        if m == model_id:
            return orjson.dumps(_model_item(m, owner, created))
    return orjson.dumps(_model_item(model_id, "system", MODELS[0][3]))


# -- routes -------------------------------------------------------------------------


def check_completion(call: Call) -> None:
    problem = validate(call.request)
    if problem is not None:
        raise Reject(400, *problem)


STREAM_ERROR = stream_error(0)


def stream_failure(sent: int) -> bytes:
    return STREAM_ERROR


def completions(call: Call) -> Reply | Streamed:
    seq = call.seq
    the_plan = plan(call.request, call.length)
    if call.request.get("stream") is True:
        return Streamed(headers(seq, True), stream(the_plan, seq), stream_failure)
    return Reply(headers(seq, False), completion_body(the_plan, seq))


def check_embeddings(call: Call) -> None:
    items = call.request.get("input")
    if not isinstance(items, (str, list)) or not items:
        raise Reject(400, "Missing required parameter: 'input'.", "input")


def embeddings(call: Call) -> Reply:
    data = embeddings_body(call.request)
    if data is None:
        raise Reject(400, "Missing required parameter: 'input'.", "input")
    return Reply(headers(call.seq, False), data)


def list_models(call: Call) -> Reply:
    return Reply(headers(call.seq, False), MODEL_LIST)


def get_model(call: Call) -> Reply:
    return Reply(headers(call.seq, False), model_body(call.params["model_id"]))


ROUTES = (
    Route("POST", "/v1/chat/completions", completions, check_completion),
    Route("POST", "/v1/embeddings", embeddings, check_embeddings),
    Route("GET", "/v1/models", list_models, model=None, body=False, faults=False),
    Route("GET", "/v1/models/{model_id}", get_model, model=None, body=False, faults=False),
)

USAGE = {"openai": lambda request, output_tokens: plan(request, output_tokens).usage,
         "openai_chat": lambda request, output_tokens: plan(request, output_tokens).usage}
