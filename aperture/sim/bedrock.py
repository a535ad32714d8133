"""AWS Bedrock Runtime as AWS answers it (reference/wire-formats.md §6): Claude
through InvokeModel, and the Converse API, with the binary event-stream.

Routes (the model id is one path segment, percent-decoded: an ARN arrives as
`arn%3Aaws%3Abedrock%3A...%2F...`):

=============================================  =========================================
``POST /model/{id}/invoke``                    an Anthropic `Message` JSON, with usage
                                               also in `x-amzn-bedrock-*` headers
``POST /model/{id}/invoke-with-response-stream``  event-stream of `chunk` events, each
                                               `{"bytes": base64(one Anthropic stream
                                               event JSON), "p": filler}`
``POST /model/{id}/converse``                  a `ConverseResponse`
``POST /model/{id}/converse-stream``           event-stream: messageStart,
                                               [contentBlockStart], contentBlockDelta…,
                                               contentBlockStop, messageStop, metadata
``POST /model/{id}/count-tokens``              ``{"inputTokens": N}``
=============================================  =========================================

InvokeModel bodies are Anthropic Messages bodies without `model` and `stream`
(either is a 400 `ValidationException`), with `anthropic_version` required
("bedrock-2023-05-31", reference §6.3, or an Anthropic API version date, which
the anthropic SDK 2.x sends) and `anthropic_beta` allowed as an array of
strings. Every InvokeModel body is taken for a Claude body, whatever the model
id. The inner stream is Anthropic's (`aperture.sim.anthropic`) without pings;
the inner `message_stop` carries `amazon-bedrock-invocationMetrics`
{inputTokenCount, outputTokenCount, invocationLatency, firstByteLatency}, and
cacheRead/WriteInputTokenCount when the prompt uses cache_control.

Usage. InvokeModel: Anthropic's rules exactly (`expected_usage("bedrock_invoke",
body)` is the `usage` of the Message); the headers
`x-amzn-bedrock-input-token-count` / `-output-token-count` carry input_tokens
and output_tokens, and `x-amzn-bedrock-cache-read-input-token-count` /
`-cache-write-input-token-count` the cache counts when cache_control is used.
Converse: W = words of `system`, `messages` and `toolConfig.tools`; without a
`cachePoint` block anywhere `inputTokens` = W; with one,
`cacheReadInputTokens` = W // 2, `cacheWriteInputTokens` = W // 4 and
`inputTokens` the rest (both cache fields appear only then). `outputTokens` =
the answer length capped by `inferenceConfig.maxTokens`, or the tool call's
tokens. `totalTokens` = input + output + cache read + cache write (Bedrock's
total counts the cached prompt). CountTokens: the whole prompt W (Converse
rule for `input.converse`, Anthropic's for the base64 `input.invokeModel.body`).

A tool call (`toolUse`) is made when `toolConfig.tools` has a `toolSpec` and
the last user text contains "tool" (with no `system`), or `toolChoice` is `any` or names a
tool. Latency figures (`x-amzn-bedrock-invocation-latency`, `metrics.latencyMs`,
the invocation metrics) are the simulator's head delay plus, in streams paced
by a token rate, the time the output takes at that rate.

Errors are rest-json: `{"message": ...}` with `x-amzn-errortype:
<Name>:http://internal.amazon.com/coral/com.amazon.bedrock/` and the status
of §6.6 (400 ValidationException, 403 AccessDeniedException, 404
ResourceNotFoundException, 408 ModelTimeoutException, 424 ModelErrorException,
429 ThrottlingException, 500 InternalServerException, 503
ServiceUnavailableException, and Anthropic's 529 as the 503). A refused
credential is AWS's 403 `UnrecognizedClientException`. The `error-event`
fault ends a stream with a `modelStreamErrorException` exception message.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

import orjson

from aperture.sim import anthropic, eventstream
from aperture.sim.common import (Answer, EventStream, answer_text, answer_words, anthropic_version_ok,
                                 count_words, make_answer, split_fragments)
from aperture.sim.routes import Call, Reject, Reply, Route, Streamed

NAME = "bedrock"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
JSON = b"application/json"
EVENT_STREAM = b"application/vnd.amazon.eventstream"
_FILLER = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_CORAL = "http://internal.amazon.com/coral/com.amazon.coral.service/"


def request_id(seq: int) -> str:
    return "00000000-0000-4000-8000-%012d" % seq


def tool_use_id(seq: int) -> str:
    return "tooluse_Sim%014d" % seq


def filler(n: int) -> str:
    """The `p` padding of the n-th message of a stream."""
    return _FILLER[:1 + (n * 7) % len(_FILLER)]


def latencies(call: Call, output_tokens: int) -> tuple[int, int]:
    """(first byte, whole invocation) in milliseconds."""
    first = call.latency_ms
    if call.token_rate > 0:
        return first, first + round(output_tokens * 1000 / call.token_rate)
    return first, first


# -- InvokeModel ------------------------------------------------------------------------


def _malformed(detail: str) -> Reject:
    return Reject(400, "Malformed input request: %s, please reformat your input and try again." % detail)


def validate_invoke(request: dict) -> None:
    for key in ("model", "stream"):
        if key in request:
            raise _malformed("#: extraneous key [%s] is not permitted" % key)
    for key in ("anthropic_version", "max_tokens", "messages"):
        if key not in request:
            raise _malformed("#: required key [%s] not found" % key)
    if not anthropic_version_ok(request["anthropic_version"], ANTHROPIC_VERSION):
        raise _malformed("#/anthropic_version: %s is not a valid enum value"
                         % orjson.dumps(request["anthropic_version"]).decode())
    betas = request.get("anthropic_beta")
    if betas is not None and not (isinstance(betas, list) and all(isinstance(b, str) for b in betas)):
        raise _malformed("#/anthropic_beta: expected type: JSONArray of strings")
    if type(request["max_tokens"]) is not int:
        raise _malformed("#/max_tokens: expected type: Integer")
    if not isinstance(request["messages"], list):
        raise _malformed("#/messages: expected type: JSONArray")


def invoke_plan(call: Call) -> anthropic.Plan:
    return anthropic.plan({**call.request, "model": call.model_param()}, call.length)


def usage_headers(plan: anthropic.Plan) -> list[tuple[bytes, bytes]]:
    out = [(b"x-amzn-bedrock-output-token-count", b"%d" % plan.answer.output_tokens),
           (b"x-amzn-bedrock-input-token-count", b"%d" % plan.input_tokens)]
    if plan.cache_read_input_tokens or plan.cache_creation_input_tokens:
        out.append((b"x-amzn-bedrock-cache-read-input-token-count", b"%d" % plan.cache_read_input_tokens))
        out.append((b"x-amzn-bedrock-cache-write-input-token-count",
                    b"%d" % plan.cache_creation_input_tokens))
    return out


def invoke_headers(plan: anthropic.Plan, seq: int, latency_ms: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", JSON), (b"x-amzn-requestid", request_id(seq).encode()),
            (b"x-amzn-bedrock-invocation-latency", b"%d" % latency_ms), *usage_headers(plan)]


def invocation_metrics(plan: anthropic.Plan, first_byte: int, invocation: int) -> dict:
    metrics = {"inputTokenCount": plan.input_tokens, "outputTokenCount": plan.answer.output_tokens,
               "invocationLatency": invocation, "firstByteLatency": first_byte}
    if plan.cache_read_input_tokens or plan.cache_creation_input_tokens:
        metrics["cacheReadInputTokenCount"] = plan.cache_read_input_tokens
        metrics["cacheWriteInputTokenCount"] = plan.cache_creation_input_tokens
    return metrics


def chunk(event_json: bytes, n: int) -> bytes:
    """The `chunk` event-stream message wrapping one Anthropic event's JSON."""
    payload = b'{"bytes":"' + base64.b64encode(event_json) + b'","p":"' + filler(n).encode() + b'"}'
    return eventstream.event("chunk", payload)


def _sse_data(part: bytes) -> list[tuple[bytes, bytes]]:
    """(event name, data JSON) of each SSE event in `part` (the simulator's own framing)."""
    out = []
    for block in part.split(b"\n\n"):
        if block:
            name, _, data = block.partition(b"\ndata: ")
            out.append((name[len(b"event: "):], data))
    return out


def invoke_stream(plan: anthropic.Plan, seq: int, first_byte: int, invocation: int) -> EventStream:
    """Anthropic's stream of `plan`, each event (pings dropped) in one `chunk`."""
    sse = anthropic.stream(plan, seq)
    metrics = invocation_metrics(plan, first_byte, invocation)
    n = 0

    def wrap(parts) -> tuple[bytes, ...]:
        nonlocal n
        out = []
        for part in parts:
            for name, data in _sse_data(part):
                if name == b"ping":
                    continue
                if name == b"message_stop":
                    data = orjson.dumps({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics})
                out.append(chunk(data, n))
                n += 1
        return tuple(out)

    return EventStream(wrap(sse.head), wrap(sse.deltas), wrap(sse.tail))


def stream_headers(seq: int, invoke: bool) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", EVENT_STREAM), (b"x-amzn-requestid", request_id(seq).encode())]
    if invoke:
        out.append((b"x-amzn-bedrock-content-type", JSON))
    return out


STREAM_ERROR = eventstream.exception("modelStreamErrorException", orjson.dumps({
    "message": "The model encountered an error while streaming its response: Overloaded",
    "originalStatusCode": 529, "originalMessage": "Overloaded"}))


def stream_failure(sent: int) -> bytes:
    return STREAM_ERROR


def check_invoke(call: Call) -> None:
    validate_invoke(call.request)


def invoke(call: Call) -> Reply:
    plan = invoke_plan(call)
    headers = invoke_headers(plan, call.seq, latencies(call, 0)[1])
    return Reply(headers, anthropic.message_body(plan, call.seq))


def invoke_with_response_stream(call: Call) -> Streamed:
    plan = invoke_plan(call)
    first, total = latencies(call, plan.answer.output_tokens)
    return Streamed(stream_headers(call.seq, True), invoke_stream(plan, call.seq, first, total),
                    stream_failure)


# -- Converse --------------------------------------------------------------------------------


class ConversePlan(NamedTuple):
    model: str
    input_tokens: int
    cache_read: int
    cache_write: int
    cached: bool
    answer: Answer

    @property
    def stop_reason(self) -> str:
        if self.answer.tool is not None:
            return "tool_use"
        return "max_tokens" if self.answer.truncated else "end_turn"

    @property
    def usage(self) -> dict:
        output = self.answer.output_tokens
        usage = {"inputTokens": self.input_tokens, "outputTokens": output,
                 "totalTokens": self.input_tokens + output + self.cache_read + self.cache_write}
        if self.cached:
            usage["cacheReadInputTokens"] = self.cache_read
            usage["cacheWriteInputTokens"] = self.cache_write
        return usage


def _tools(request: dict) -> list[dict]:
    config = request.get("toolConfig")
    tools = config.get("tools") if isinstance(config, dict) else None
    return tools if isinstance(tools, list) else []


def converse_words(request: dict) -> tuple[int, bool]:
    """(W, whether a cachePoint is used)."""
    words, marked = count_words(request.get("system"), request.get("messages"), _tools(request),
                                marker="cachePoint")
    return max(words, 1), marked


def last_user_text(messages: object) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return " ".join(b["text"] for b in content
                                    if isinstance(b, dict) and isinstance(b.get("text"), str))
                return ""
    return ""


def chosen_tool(request: dict) -> tuple[str, object] | None:
    specs = [t["toolSpec"] for t in _tools(request)
             if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)
             and isinstance(t["toolSpec"].get("name"), str)]
    if not specs:
        return None
    config = request.get("toolConfig")
    choice = config.get("toolChoice") if isinstance(config, dict) else None
    choice = choice if isinstance(choice, dict) else {}
    if isinstance(choice.get("tool"), dict):
        name = choice["tool"].get("name")
        specs = [s for s in specs if s["name"] == name] or specs
    elif "any" not in choice and (request.get("system")
                                  or "tool" not in last_user_text(request.get("messages")).lower()):
        return None
    schema = specs[0].get("inputSchema")
    return specs[0]["name"], schema.get("json") if isinstance(schema, dict) else None


def converse_plan(request: dict, output_tokens: int, model: str = "") -> ConversePlan:
    words, cached = converse_words(request)
    read = words // 2 if cached else 0
    write = words // 4 if cached else 0
    config = request.get("inferenceConfig")
    cap = config.get("maxTokens") if isinstance(config, dict) else None
    answer = make_answer(chosen_tool(request), output_tokens, cap if type(cap) is int else None)
    return ConversePlan(model, words - read - write, read, write, cached, answer)


def validate_converse(request: dict) -> None:
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Reject(400, "A conversation must start with a user message. Try again with a conversation "
                          "that starts with a user message.")


def converse_content(plan: ConversePlan, seq: int) -> list[dict]:
    tool = plan.answer.tool
    if tool is not None:
        return [{"toolUse": {"toolUseId": tool_use_id(seq), "name": tool.name, "input": tool.arguments}}]
    return [{"text": answer_text(plan.answer.words)}]


def converse_body(plan: ConversePlan, seq: int, latency_ms: int = 0) -> bytes:
    return orjson.dumps({
        "output": {"message": {"role": "assistant", "content": converse_content(plan, seq)}},
        "stopReason": plan.stop_reason,
        "usage": plan.usage,
        "metrics": {"latencyMs": latency_ms},
    })


def converse_stream(plan: ConversePlan, seq: int, latency_ms: int = 0) -> EventStream:
    n = 0

    def event(kind: str, fields: dict) -> bytes:
        nonlocal n
        fields["p"] = filler(n)
        n += 1
        return eventstream.event(kind, orjson.dumps(fields))

    head = [event("messageStart", {"role": "assistant"})]
    tool = plan.answer.tool
    if tool is None:
        deltas = [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                  for piece in answer_words(plan.answer.words)]
    else:
        head.append(event("contentBlockStart", {"contentBlockIndex": 0, "start": {
            "toolUse": {"toolUseId": tool_use_id(seq), "name": tool.name}}}))
        deltas = [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}})
                  for piece in split_fragments(orjson.dumps(tool.arguments).decode())]
    tail = [event("contentBlockStop", {"contentBlockIndex": 0}),
            event("messageStop", {"stopReason": plan.stop_reason}),
            event("metadata", {"usage": plan.usage, "metrics": {"latencyMs": latency_ms}})]
    return EventStream(tuple(head), tuple(deltas), tuple(tail))


def check_converse(call: Call) -> None:
    validate_converse(call.request)


def converse(call: Call) -> Reply:
    plan = converse_plan(call.request, call.length, call.model_param())
    headers = [(b"content-type", JSON), (b"x-amzn-requestid", request_id(call.seq).encode())]
    return Reply(headers, converse_body(plan, call.seq, latencies(call, 0)[1]))


def converse_stream_answer(call: Call) -> Streamed:
    plan = converse_plan(call.request, call.length, call.model_param())
    latency = latencies(call, plan.answer.output_tokens)[1]
    return Streamed(stream_headers(call.seq, False), converse_stream(plan, call.seq, latency),
                    stream_failure)


# -- CountTokens -------------------------------------------------------------------------------


def count_input(request: dict) -> int:
    """The prompt size of a CountTokens input, or a `Reject`."""
    source = request.get("input")
    if not isinstance(source, dict):
        raise Reject(400, "1 validation error detected: Value null at 'input' failed to satisfy "
                          "constraint: Member must not be null")
    invoke_input = source.get("invokeModel")
    if isinstance(invoke_input, dict):
        try:
            body = orjson.loads(base64.b64decode(invoke_input.get("body") or "", validate=True))
        except (binascii.Error, ValueError):
            raise _malformed("#: the body is not base64-encoded JSON") from None
        if not isinstance(body, dict):
            raise _malformed("#: expected type: JSONObject")
        return anthropic.prompt_words(body)[0]
    converse_input = source.get("converse")
    if isinstance(converse_input, dict):
        return converse_words(converse_input)[0]
    raise Reject(400, "input must name exactly one of invokeModel or converse")


def check_count_tokens(call: Call) -> None:
    count_input(call.request)


def count_tokens(call: Call) -> Reply:
    headers = [(b"content-type", JSON), (b"x-amzn-requestid", request_id(call.seq).encode())]
    return Reply(headers, orjson.dumps({"inputTokens": count_input(call.request)}))


# -- errors ---------------------------------------------------------------------------------

EXCEPTIONS = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    424: ("ModelErrorException", "The model returned an error. Try your request again."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The system encountered an unexpected error during processing. "
                                     "Try your request again."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}


def error_response(status: int, message: str | None, seq: int, param: str | None = None,
                   code: str | None = None) -> tuple[int, list, bytes]:
    """(status, headers, body) of a rest-json error; `code` names the exception."""
    namespace = _NAMESPACE
    if status == 529:
        status = 503
    if status == 401:
        status, name, default = 403, "UnrecognizedClientException", "The security token included in the " \
                                                                     "request is invalid."
        namespace = _CORAL
    else:
        name, default = EXCEPTIONS.get(status) or (
            ("InternalServerException", EXCEPTIONS[500][1]) if status >= 500 else
            ("ValidationException", EXCEPTIONS[400][1]))
    headers = [(b"content-type", JSON), (b"x-amzn-requestid", request_id(seq).encode()),
               (b"x-amzn-errortype", ("%s:%s" % (code or name, namespace)).encode())]
    return status, headers, orjson.dumps({"message": message or default})


def owns(headers: dict, query: dict) -> bool:
    """AWS clients sign with SigV4 (or send x-amz-* headers)."""
    return headers.get("authorization", "").startswith("AWS4-HMAC-SHA256") or "x-amz-date" in headers


def _route(verb: str, action, check) -> Route:
    return Route("POST", "/model/{model}/" + verb, action, check, model="model")


ROUTES = (
    _route("invoke", invoke, check_invoke),
    _route("invoke-with-response-stream", invoke_with_response_stream, check_invoke),
    _route("converse", converse, check_converse),
    _route("converse-stream", converse_stream_answer, check_converse),
    _route("count-tokens", count_tokens, check_count_tokens),
)


def _invoke_usage(request: dict, output_tokens: int) -> dict:
    return anthropic.plan(request, output_tokens).usage


def _converse_usage(request: dict, output_tokens: int) -> dict:
    return converse_plan(request, output_tokens).usage


USAGE = {"bedrock_invoke": _invoke_usage, "bedrock_converse": _converse_usage}
