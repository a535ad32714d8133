"""OpenAI Responses as the provider answers it (reference/wire-formats.md §3).

Routes (a baseurl prefix before `/v1` is allowed, as for every format):

===========================================  =====================================
``POST /v1/responses``                       a `Response`, or with `stream: true`
                                             SSE with `event:` lines, no `[DONE]`
``GET /v1/responses/{id}``                   a stored response
``DELETE /v1/responses/{id}``                ``{"id", "object": "response.deleted",
                                             "deleted": true}``
``POST /v1/responses/{id}/cancel``           the stored response (background only)
``GET /v1/responses/{id}/input_items``       a list object of the response's input
``POST /v1/responses/input_tokens``          ``{"object": "response.input_tokens",
                                             "input_tokens": N}``
``POST /v1/responses/compact``               a `CompactedResponse`
===========================================  =====================================

The stream: `response.created`, `response.in_progress`, then per output
item `response.output_item.added` ... `response.output_item.done`; a text
answer has `content_part.added`, one `output_text.delta` per word,
`output_text.done`, `content_part.done`; a tool call is one `function_call`
item (added with empty arguments) whose arguments arrive in
`function_call_arguments.delta` fragments, then `function_call_arguments.done`. With reasoning on, a
`reasoning` item comes first. The stream ends with `response.completed`, or
`response.incomplete` when `max_output_tokens` cut the answer. Every event's
JSON repeats its `type` and has a `sequence_number` counting from 0; delta
events carry an `obfuscation` filler unless
`stream_options.include_obfuscation` is false. The `error-event` fault ends
the stream with `response.failed` (status "failed", `error.code`
"server_error", usage null).

Usage (the word rule of `aperture.sim.common`): `input_tokens` = words of
`instructions`, `input` and `tools` of this request (at least 1; the context
a `previous_response_id` names is not counted);
`input_tokens_details.cached_tokens` = input_tokens // 2 when
`prompt_cache_key` is set, else 0; `cache_write_tokens` = 0. `output_tokens`
= the answer length, capped by `max_output_tokens`; with `reasoning.effort`
set and not "none", `output_tokens_details.reasoning_tokens` =
output_tokens // 2 and the visible text is the rest, and a tool call counts
twice its own tokens, half of them reasoning (the rules of `openai_chat`).
`total_tokens` = input + output. `compact` counts words of `instructions`
and `input` in, the answer length out, and no reasoning.

A tool call is made when `tools` has a function tool and the last user input
text contains "tool" (with no instructions nor system or developer message; a
coding agent uses the marker of `aperture.sim.agent`), or `tool_choice` is
"required" or names a function. An answer may be a freeform
(`custom_tool_call`) call of a custom tool (Codex's `exec`).

Stored responses: `store` defaults to true; stored responses (the finished
ones, with their input items) are kept in a bounded in-memory map per
simulator (`STORE_LIMIT`, oldest dropped first). An unknown id is a 404, a
`previous_response_id` that names no stored response a 400
(`previous_response_not_found`). `background: true` answers at once with the
response "queued" (no output, no usage) and stores it finished; cancelling
such a response returns it as it is (there is nothing left to cancel), and
cancelling one that was not created in the background is a 400.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from typing import NamedTuple

import orjson

from aperture.sim import agent, openai_chat
from aperture.sim.common import Answer, EventStream, answer_text, as_count, count_words
from aperture.sim.common import make_answer, message_text, pieces_of, split_fragments, text_of
from aperture.sim.openai_chat import EVENT_STREAM, JSON, request_id
from aperture.sim.routes import Call, Reject, Reply, Route, Streamed

NAME = "openai_responses"
STORE_LIMIT = 1024
FAILURE_MESSAGE = ("An error occurred while processing your request. You can retry your request, or "
                   "contact us through our help center at help.openai.com if the error persists.")
_FILLER = b"Qm8xT2vL5nR7cW1z"

#: errors are Chat Completions' (`{"error": {message, type, param, code}}`)
error_response = openai_chat.error_response


def response_id(seq: int) -> str:
    return "resp_sim%040d" % seq


def message_id(seq: int) -> str:
    return "msg_sim%040d" % seq


def function_item_id(seq: int) -> str:
    return "fc_sim%040d" % seq


def call_id(seq: int) -> str:
    return "call_Sim%016d" % seq


def reasoning_id(seq: int) -> str:
    return "rs_sim%040d" % seq


# -- the plan -------------------------------------------------------------------------


class Plan(NamedTuple):
    request: dict
    model: str
    #: the token numbers, by the rules Chat Completions uses
    counts: openai_chat.Plan
    obfuscation: bool

    @property
    def answer(self) -> Answer:
        return self.counts.answer

    @property
    def status(self) -> str:
        return "incomplete" if self.answer.truncated else "completed"

    @property
    def usage(self) -> dict:
        counts = self.counts
        output = counts.completion_tokens
        return {
            "input_tokens": counts.prompt_tokens,
            "input_tokens_details": {"cached_tokens": counts.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": counts.reasoning_tokens},
            "total_tokens": counts.prompt_tokens + output,
        }


def input_words(request: dict, tools: bool = True) -> int:
    """Words of instructions, input (and tools), at least 1."""
    return max(count_words(request.get("instructions"), request.get("input"),
                           request.get("tools") if tools else None)[0], 1)


def last_user_text(items: object) -> str:
    """The text of the last user message of `input` (a string is one)."""
    if isinstance(items, str):
        return items
    if isinstance(items, list):
        for item in reversed(items):
            if (isinstance(item, dict) and item.get("role") == "user"
                    and item.get("type", "message") == "message"):
                return message_text(item.get("content"))
    return ""


def function_tools(request: dict) -> list[dict]:
    tools = request.get("tools")
    if not isinstance(tools, list):
        return []
    return [t for t in tools if isinstance(t, dict) and t.get("type") == "function"
            and isinstance(t.get("name"), str)]


def chosen_tool(request: dict) -> tuple[str, object] | None:
    """(name, parameters schema) of the function the answer calls, or None."""
    functions = function_tools(request)
    choice = request.get("tool_choice")
    if choice == "none":
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        for fn in functions:
            if fn["name"] == name:
                return name, fn.get("parameters")
        return (name, None) if isinstance(name, str) else None
    if not functions:
        return None
    if choice != "required" and (has_instructions(request)
                                 or "tool" not in last_user_text(request.get("input")).lower()):
        return None
    return functions[0]["name"], functions[0].get("parameters")


def has_instructions(request: dict) -> bool:
    """Whether the request carries a system prompt (`instructions`, or a
    system or developer message in `input`)."""
    if request.get("instructions"):
        return True
    items = request.get("input")
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("role") in ("system", "developer") for i in items)


def offered_tools(request: dict) -> list[tuple[str, object]]:
    """(name, parameters schema) of every tool offered: `tools`, and those of
    `additional_tools` input items (Codex), namespaces flattened; a freeform
    (custom) tool's schema is {"freeform": its description}."""
    out: list[tuple[str, object]] = []

    def add(tools: object) -> None:
        for tool in tools if isinstance(tools, list) else ():
            if not isinstance(tool, dict):
                continue
            kind = tool.get("type")
            if kind == "namespace":
                add(tool.get("tools"))
            elif isinstance(tool.get("name"), str):
                if kind == "function":
                    out.append((tool["name"], tool.get("parameters")))
                elif kind == "custom":
                    out.append((tool["name"], {"freeform": tool.get("description", "")}))

    add(request.get("tools"))
    items = request.get("input")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            add(item.get("tools"))
    return out


_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})


def agent_turn(request: dict) -> Answer | None:
    """The answer of a coding agent's marked exchange (aperture.sim.agent), or None."""
    items = request.get("input")
    if isinstance(items, str):
        return agent.agent_answer([items], items, None, offered_tools(request))
    if not isinstance(items, list) or not items:
        return None
    messages = [i for i in items if isinstance(i, dict) and i.get("role") not in ("system", "developer")
                and i.get("type") != "additional_tools"]
    user_texts = [message_text(i.get("content")) for i in messages
                  if i.get("role") == "user" and i.get("type", "message") == "message"]
    last = messages[-1] if messages else {}
    result = None
    last_text = ""
    if last.get("type") in _OUTPUTS:
        result = agent.result_text(last.get("output"))
    elif last.get("role") == "user":
        last_text = message_text(last.get("content"))
    else:
        return None
    return agent.agent_answer(user_texts, last_text, result, offered_tools(request))


def reasoning_effort(request: dict) -> str | None:
    reasoning = request.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return effort if isinstance(effort, str) else None


def plan(request: dict, output_tokens: int) -> Plan:
    """The answer to a valid create request; `output_tokens` is the answer
    length before `max_output_tokens`."""
    words = input_words(request)
    cached = words // 2 if request.get("prompt_cache_key") is not None else 0
    effort = reasoning_effort(request)
    answer = agent_turn(request) or make_answer(chosen_tool(request), output_tokens,
                                                as_count(request.get("max_output_tokens")))
    model = request.get("model")
    model = model if isinstance(model, str) else ""
    counts = openai_chat.Plan(model, words, cached, effort is not None and effort != "none", answer,
                              False, False)
    options = request.get("stream_options")
    obfuscation = not (isinstance(options, dict) and options.get("include_obfuscation") is False)
    return Plan(request, model, counts, obfuscation)


def validate(request: dict) -> tuple[str, str] | None:
    """(message, param) of the 400 the API would answer, or None."""
    if not isinstance(request.get("model"), str):
        return "Missing required parameter: 'model'.", "model"
    return None


# -- the Response object ----------------------------------------------------------------


def reasoning_item(seq: int) -> dict:
    return {"id": reasoning_id(seq), "type": "reasoning", "summary": []}


def output_text(text: str) -> dict:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def message_item(seq: int, text: str | None, status: str) -> dict:
    """The assistant message item; `text` None for the in-progress one, with no content yet."""
    return {"id": message_id(seq), "type": "message", "status": status,
            "content": [] if text is None else [output_text(text)], "role": "assistant"}


def function_item(plan: Plan, seq: int, arguments: str, status: str) -> dict:
    """The call item: a `function_call`, or a `custom_tool_call` (whose
    `input` is freeform) for a tool with a raw input."""
    tool = plan.answer.tool
    assert tool is not None
    if tool.raw is not None:
        return {"id": function_item_id(seq), "type": "custom_tool_call", "status": status,
                "call_id": call_id(seq), "name": tool.name, "input": arguments}
    return {"id": function_item_id(seq), "type": "function_call", "status": status,
            "arguments": arguments, "call_id": call_id(seq), "name": tool.name}


def arguments_text(plan: Plan) -> str:
    tool = plan.answer.tool
    assert tool is not None
    return orjson.dumps(tool.arguments).decode() if tool.raw is None else tool.raw


def output_items(plan: Plan, seq: int) -> list[dict]:
    """The finished `output` array."""
    items = [reasoning_item(seq)] if plan.counts.reasoning else []
    if plan.answer.tool is not None:
        items.append(function_item(plan, seq, arguments_text(plan), "completed"))
    else:
        items.append(message_item(seq, text_of(plan.answer, plan.counts.text_words), plan.status))
    return items


def response_object(plan: Plan, seq: int, created: int, status: str, output: list,
                    usage: dict | None, error: dict | None = None) -> dict:
    """A `Response` with the request's settings echoed, as the API returns it."""
    request = plan.request
    effort = reasoning_effort(request)
    text = request.get("text")
    metadata = request.get("metadata")
    return {
        "id": response_id(seq),
        "object": "response",
        "created_at": created,
        "status": status,
        "background": request.get("background") is True,
        "completed_at": created if status in ("completed", "incomplete") else None,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": as_count(request.get("max_output_tokens")),
        "max_tool_calls": as_count(request.get("max_tool_calls")),
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": effort, "summary": None},
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": "default",
        "store": request.get("store") is not False,
        "temperature": request.get("temperature", 1.0),
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") if isinstance(request.get("tools"), list) else [],
        "top_logprobs": request.get("top_logprobs", 0),
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": usage,
        "user": request.get("user"),
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


def final_response(plan: Plan, seq: int, created: int) -> dict:
    return response_object(plan, seq, created, plan.status, output_items(plan, seq), plan.usage)


def response_body(plan: Plan, seq: int, created: int | None = None) -> bytes:
    return orjson.dumps(final_response(plan, seq, int(time.time()) if created is None else created))


# -- streaming ----------------------------------------------------------------------


class _Events:
    """Numbers the events of one stream as they are built."""

    __slots__ = ("n", "obfuscation")

    def __init__(self, obfuscation: bool) -> None:
        self.n = 0
        self.obfuscation = obfuscation

    def __call__(self, kind: str, fields: dict, filler: bool = False) -> bytes:
        data = {"type": kind, "sequence_number": self.n}
        data.update(fields)
        if filler and self.obfuscation:
            data["obfuscation"] = _FILLER[:1 + (self.n * 5) % len(_FILLER)].decode()
        self.n += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream(plan: Plan, seq: int, created: int | None = None) -> EventStream:
    """The SSE events of a streamed answer."""
    created = int(time.time()) if created is None else created
    event = _Events(plan.obfuscation)
    snapshot = response_object(plan, seq, created, "in_progress", [], None)
    head = [event("response.created", {"response": snapshot}),
            event("response.in_progress", {"response": snapshot})]
    index = 0
    if plan.counts.reasoning:
        item = reasoning_item(seq)
        head.append(event("response.output_item.added", {"output_index": 0, "item": item}))
        head.append(event("response.output_item.done", {"output_index": 0, "item": item}))
        index = 1
    if plan.answer.tool is not None:
        item_id = function_item_id(seq)
        arguments = arguments_text(plan)
        head.append(event("response.output_item.added", {
            "output_index": index, "item": function_item(plan, seq, "", "in_progress")}))
        if plan.answer.tool.raw is None:
            delta_kind, done_kind = ("response.function_call_arguments.delta",
                                     "response.function_call_arguments.done")
            done = {"item_id": item_id, "output_index": index, "name": plan.answer.tool.name,
                    "arguments": arguments}
        else:
            delta_kind, done_kind = ("response.custom_tool_call_input.delta",
                                     "response.custom_tool_call_input.done")
            done = {"item_id": item_id, "output_index": index, "input": arguments}
        deltas = [event(delta_kind, {"item_id": item_id, "output_index": index, "delta": piece}, True)
                  for piece in split_fragments(arguments)]
        tail = [event(done_kind, done),
                event("response.output_item.done", {
                    "output_index": index, "item": function_item(plan, seq, arguments, "completed")})]
    else:
        item_id = message_id(seq)
        words = plan.counts.text_words
        text = text_of(plan.answer, words)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        head.append(event("response.output_item.added", {
            "output_index": index, "item": message_item(seq, None, "in_progress")}))
        head.append(event("response.content_part.added", {**where, "part": output_text("")}))
        deltas = [event("response.output_text.delta", {**where, "delta": piece, "logprobs": []}, True)
                  for piece in pieces_of(plan.answer, words)]
        tail = [event("response.output_text.done", {**where, "text": text, "logprobs": []}),
                event("response.content_part.done", {**where, "part": output_text(text)}),
                event("response.output_item.done", {
                    "output_index": index, "item": message_item(seq, text, plan.status)})]
    terminal = "response.completed" if plan.status == "completed" else "response.incomplete"
    tail.append(event(terminal, {"response": final_response(plan, seq, created)}))
    return EventStream(tuple(head), tuple(deltas), tuple(tail))


def failure_event(plan: Plan, seq: int, sequence_number: int, created: int) -> bytes:
    """`response.failed`, numbered after the events that went out."""
    response = response_object(plan, seq, created, "failed", [], None,
                               {"code": "server_error", "message": FAILURE_MESSAGE})
    data = {"type": "response.failed", "sequence_number": sequence_number, "response": response}
    return b"event: response.failed\ndata: " + orjson.dumps(data) + b"\n\n"


def headers(seq: int, streaming: bool) -> list[tuple[bytes, bytes]]:
    rid = request_id(seq).encode()
    if streaming:
        return [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache"), (b"x-request-id", rid)]
    return [(b"content-type", JSON), (b"x-request-id", rid)]


# -- input items -----------------------------------------------------------------------

_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
                "reasoning": "rs"}


def input_items(request: dict, seq: int) -> list[dict]:
    """The request's `input` as the items `input_items` lists, each with an id."""
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        return []
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        item = dict(item)
        kind = item.setdefault("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": content}]
            item.setdefault("status", "completed")
        item.setdefault("id", "%s_sim%030d%010d" % (_ITEM_PREFIX.get(kind, "item"), seq, n))
        out.append(item)
    return out


def item_list(items: list[dict], query: dict) -> bytes:
    """A list page of input items: `order` (default desc), `after`, `limit` (default 20)."""
    if query.get("order", "desc") != "asc":
        items = items[::-1]
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    try:
        limit = max(1, min(int(query.get("limit", "20")), 100))
    except ValueError:
        raise Reject(400, "Invalid 'limit': expected an integer.", "limit") from None
    page = items[:limit]
    return orjson.dumps({"object": "list", "data": page,
                         "first_id": page[0]["id"] if page else None,
                         "last_id": page[-1]["id"] if page else None,
                         "has_more": len(items) > limit})


# -- stored responses -------------------------------------------------------------------


class Stored(NamedTuple):
    response: dict  # the finished Response object
    items: list  # its input items


class Store:
    """The responses kept for retrieval: a bounded map, oldest dropped first."""

    __slots__ = ("_items", "limit")

    def __init__(self, limit: int = STORE_LIMIT) -> None:
        self._items: OrderedDict[str, Stored] = OrderedDict()
        self.limit = limit

    def put(self, key: str, stored: Stored) -> None:
        self._items[key] = stored
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, key: str) -> Stored | None:
        return self._items.get(key)

    def pop(self, key: str) -> Stored | None:
        return self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


def new_state() -> Store:
    return Store()


# -- routes -------------------------------------------------------------------------


def check_create(call: Call) -> None:
    problem = validate(call.request)
    if problem is not None:
        raise Reject(400, *problem)
    previous = call.request.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or call.state.get(previous) is None):
        raise Reject(400, "Previous response with id '%s' not found." % previous, "previous_response_id",
                     "previous_response_not_found")


def create(call: Call) -> Reply | Streamed:
    request, seq = call.request, call.seq
    the_plan = plan(request, call.length)
    created = int(time.time())
    if request.get("store") is not False:
        call.state.put(response_id(seq), Stored(final_response(the_plan, seq, created),
                                                input_items(request, seq)))
    if request.get("stream") is True:
        events = stream(the_plan, seq, created)
        head = len(events.head)
        return Streamed(headers(seq, True), events,
                        lambda sent: failure_event(the_plan, seq, head + sent, created))
    if request.get("background") is True:
        queued = response_object(the_plan, seq, created, "queued", [], None)
        return Reply(headers(seq, False), orjson.dumps(queued))
    return Reply(headers(seq, False), response_body(the_plan, seq, created))


def _not_found(key: str) -> Reject:
    return Reject(404, "Response with id '%s' not found." % key, code="not_found")


def check_stored(call: Call) -> None:
    if call.state.get(call.params["response_id"]) is None:
        raise _not_found(call.params["response_id"])


def retrieve(call: Call) -> Reply:
    stored = call.state.get(call.params["response_id"])
    if stored is None:  # deleted since the check (a slow head)
        raise _not_found(call.params["response_id"])
    return Reply(headers(call.seq, False), orjson.dumps(stored.response))


def delete(call: Call) -> Reply:
    key = call.params["response_id"]
    if call.state.pop(key) is None:
        raise _not_found(key)
    return Reply(headers(call.seq, False),
                 orjson.dumps({"id": key, "object": "response.deleted", "deleted": True}))


def check_cancel(call: Call) -> None:
    check_stored(call)
    if not call.state.get(call.params["response_id"]).response["background"]:
        raise Reject(400, "Only responses created with background=true can be cancelled.")


def cancel(call: Call) -> Reply:
    return retrieve(call)


def list_input_items(call: Call) -> Reply:
    stored = call.state.get(call.params["response_id"])
    if stored is None:
        raise _not_found(call.params["response_id"])
    return Reply(headers(call.seq, False), item_list(stored.items, call.query))


def check_model(call: Call) -> None:
    problem = validate(call.request)
    if problem is not None:
        raise Reject(400, *problem)


def input_tokens(call: Call) -> Reply:
    return Reply(headers(call.seq, False), orjson.dumps(
        {"object": "response.input_tokens", "input_tokens": input_words(call.request)}))


def compact_usage(request: dict, output_tokens: int) -> dict:
    words = input_words(request, tools=False)
    cached = words // 2 if request.get("prompt_cache_key") is not None else 0
    output = max(output_tokens, 0)
    return {"input_tokens": words, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": words + output}


def compact_body(request: dict, seq: int, output_tokens: int, created: int | None = None) -> bytes:
    """The user messages of the input, then one compaction item whose opaque
    content stands for the answer."""
    kept = [item for item in input_items(request, seq)
            if item.get("type") == "message" and item.get("role") == "user"]
    summary = base64.b64encode(answer_text(max(output_tokens, 0)).encode()).decode()
    kept.append({"id": "cmp_sim%040d" % seq, "type": "compaction", "encrypted_content": summary})
    return orjson.dumps({"id": response_id(seq), "object": "response.compaction",
                         "created_at": int(time.time()) if created is None else created,
                         "output": kept, "usage": compact_usage(request, output_tokens)})


def compact(call: Call) -> Reply:
    return Reply(headers(call.seq, False), compact_body(call.request, call.seq, call.length))


def _stored_route(method: str, shape: str, action, check=check_stored) -> Route:
    return Route(method, shape, action, check, model=None, body=False)


ROUTES = (
    Route("POST", "/v1/responses", create, check_create),
    Route("POST", "/v1/responses/input_tokens", input_tokens, check_model),
    Route("POST", "/v1/responses/compact", compact, check_model),
    _stored_route("GET", "/v1/responses/{response_id}", retrieve),
    _stored_route("DELETE", "/v1/responses/{response_id}", delete),
    _stored_route("POST", "/v1/responses/{response_id}/cancel", cancel, check_cancel),
    _stored_route("GET", "/v1/responses/{response_id}/input_items", list_input_items),
)

USAGE = {"openai_responses": lambda request, output_tokens: plan(request, output_tokens).usage,
         "openai_responses_compact": compact_usage}
