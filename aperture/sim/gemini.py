"""The Gemini API as Google answers it (reference/wire-formats.md §4), and the
Gemini side of Vertex AI (§5.2), whose bodies are the same.

Routes, with `{v}` = `v1beta` or `v1` (the google-genai SDK uses v1):

=================================================  ==================================
``POST /{v}/models/{model}:generateContent``       a `GenerateContentResponse`
``POST /{v}/models/{model}:streamGenerateContent`` with `?alt=sse`: SSE, one `data:`
                                                   line per chunk, events separated
                                                   by CRLF blank lines; without it:
                                                   ONE JSON array streamed element
                                                   by element, `[{…}`, `,\\r\\n{…}`…,
                                                   then `]`
``POST /{v}/models/{model}:countTokens``           ``{"totalTokens": N, …}``
``POST /{v}/models/{model}:embedContent``          ``{"embedding": {"values": […]}}``
``POST /{v}/models/{model}:batchEmbedContents``    ``{"embeddings": [{"values": […]}]}``
``GET /{v}/models``, ``GET /{v}/models/{model}``   the model list, one model (under
                                                   `/v1` only for requests carrying a
                                                   Google key: it is OpenAI's path too)
=================================================  ==================================

Vertex AI serves the first three under
`/{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:…`
(declared in `aperture.sim.vertex`, answered here with `vertex=True`).

The credential is the `x-goog-api-key` header or the `key` query parameter
(Vertex: `Authorization: Bearer`). Errors are Google's
`{"error": {"code", "message", "status"}}`, indented as Google sends them; a
refused key is a 400 `INVALID_ARGUMENT` (reason `API_KEY_INVALID`) in the
Gemini API, a 401 `UNAUTHENTICATED` on Vertex; Anthropic's 529 (overloaded)
is a 503 `UNAVAILABLE`.

Request fields are read in either spelling the API accepts (`systemInstruction`
or `system_instruction`...).

Usage (the word rule of `aperture.sim.common`): `promptTokenCount` = words of
`contents`, `systemInstruction` and `tools` (at least 1); it includes the
cached part. When the request names `cachedContent`,
`cachedContentTokenCount` = promptTokenCount // 2. `candidatesTokenCount` =
the answer length capped by `generationConfig.maxOutputTokens` (finishReason
"MAX_TOKENS"), or the tool call's tokens. When
`generationConfig.thinkingConfig` asks for thinking (it is set and its
`thinkingBudget` is not 0), `thoughtsTokenCount` = max(1,
candidatesTokenCount // 2), outside the candidates. `totalTokenCount` =
prompt + candidates + thoughts. `promptTokensDetails` = one TEXT entry with
the prompt count. Vertex adds `trafficType: "ON_DEMAND"`.

Streams carry one word per chunk, each with the CUMULATIVE `usageMetadata`
(candidatesTokenCount counts the words so far; prompt, cache and thoughts
are whole from the first chunk); the last chunk has `finishReason` and the
final usage. A function call arrives whole, in one chunk.

A function call (`parts[].functionCall = {name, args}`) is made when `tools`
has `functionDeclarations` and the last user text contains "tool" (with no
`systemInstruction`; a coding agent uses the marker of `aperture.sim.agent`), or
`toolConfig.functionCallingConfig.mode` is "ANY" (the first of
`allowedFunctionNames` when given); mode "NONE" never calls.

The `error-event` fault ends a stream with Google's error object: in SSE raw
indented JSON lines (the SDK gathers non-`data:` lines by brace balance), in
the JSON array one more element `{"error": …}` before the `]`.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import orjson

from aperture.sim import agent
from aperture.sim.common import (Answer, EventStream, as_count, count_words, example_value,
                                 make_answer, pieces_of, text_of)
from aperture.sim.openai_chat import embedding_vector
from aperture.sim.routes import Call, Reject, Reply, Route, Streamed

NAME = "gemini"
JSON = b"application/json; charset=UTF-8"
EVENT_STREAM = b"text/event-stream"
EMBEDDING_DIMENSIONS = 8
VERSIONS = "v1|v1beta"

#: (id, display name, input limit, output limit, thinking)
MODELS = (
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1048576, 65536, True),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1048576, 65536, True),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1048576, 65536, True),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1048576, 8192, False),
    ("gemini-embedding-001", "Gemini Embedding 001", 2048, 1, False),
)


def response_id(seq: int) -> str:
    return "SimGemResp%013d" % seq


# -- reading a request (camelCase or snake_case, as the API accepts both) --------------


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def get(obj: object, name: str) -> object:
    """`obj[name]`, or its snake_case spelling, or None."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def last_user_text(contents: object) -> str:
    """The text parts of the last user turn (a turn without a role is the user's)."""
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list):
        return ""
    for content in reversed(contents):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            parts = content.get("parts")
            if isinstance(parts, list):
                return " ".join(p["text"] for p in parts
                                if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def declarations(request: dict) -> list[dict]:
    out = []
    tools = get(request, "tools")
    for tool in tools if isinstance(tools, list) else ():
        found = get(tool, "functionDeclarations")
        if isinstance(found, list):
            out.extend(d for d in found if isinstance(d, dict) and isinstance(d.get("name"), str))
    return out


def chosen_tool(request: dict) -> tuple[str, object] | None:
    """(name, parameters schema) of the function the answer calls, or None."""
    functions = declarations(request)
    if not functions:
        return None
    config = get(get(request, "toolConfig"), "functionCallingConfig")
    mode = get(config, "mode")
    mode = mode.upper() if isinstance(mode, str) else "AUTO"
    if mode == "NONE":
        return None
    if mode == "ANY":
        allowed = get(config, "allowedFunctionNames")
        if isinstance(allowed, list) and allowed:
            functions = [f for f in functions if f["name"] in allowed] or functions
    elif get(request, "systemInstruction") or "tool" not in last_user_text(request.get("contents")).lower():
        return None
    fn = functions[0]
    schema = get(fn, "parameters")
    if schema is None:
        schema = get(fn, "parametersJsonSchema")
    return fn["name"], schema


def agent_turn(request: dict) -> Answer | None:
    """The answer of a coding agent's marked exchange (aperture.sim.agent), or None."""
    contents = request.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents or not isinstance(contents[-1], dict):
        return None

    def texts(content: dict) -> str:
        parts = content.get("parts")
        return " ".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)) \
            if isinstance(parts, list) else ""

    user_texts = [texts(c) for c in contents if isinstance(c, dict) and c.get("role", "user") == "user"]
    last = contents[-1]
    parts = last.get("parts") if isinstance(last.get("parts"), list) else []
    responses = [get(p, "functionResponse") for p in parts if get(p, "functionResponse") is not None]
    result = None
    last_text = ""
    if responses:
        result = "\n".join(agent.result_text(get(r, "response")) for r in responses)
    elif last.get("role", "user") == "user":
        last_text = texts(last)
    else:
        return None
    tools = []
    for fn in declarations(request):
        schema = get(fn, "parameters")
        tools.append((fn["name"], get(fn, "parametersJsonSchema") if schema is None else schema))
    return agent.agent_answer(user_texts, last_text, result, tools)


def json_answer(request: dict) -> Answer | None:
    """For `responseMimeType: application/json`: one JSON value that fits
    the response schema (`example_value`), as one piece of text; None otherwise."""
    config = get(request, "generationConfig")
    if get(config, "responseMimeType") != "application/json":
        return None
    schema = get(config, "responseJsonSchema")
    if schema is None:
        schema = get(config, "responseSchema")
    value = example_value(schema) if schema is not None else {}
    return agent.text_answer(orjson.dumps(value).decode())


def thinking(request: dict) -> bool:
    config = get(get(request, "generationConfig"), "thinkingConfig")
    return isinstance(config, dict) and get(config, "thinkingBudget") != 0


def prompt_tokens(request: dict) -> int:
    words = count_words(request.get("contents"), get(request, "systemInstruction"), get(request, "tools"))[0]
    return max(words, 1)


# -- the plan ---------------------------------------------------------------------------


class Plan(NamedTuple):
    model: str
    prompt: int
    cached: int | None  # None: the request names no cached content
    thoughts: int | None  # None: no thinking asked for
    answer: Answer
    vertex: bool

    @property
    def finish_reason(self) -> str:
        return "MAX_TOKENS" if self.answer.truncated else "STOP"

    def usage(self, candidates: int | None = None) -> dict:
        """`usageMetadata`, with `candidates` tokens so far (default: all)."""
        if candidates is None:
            candidates = self.answer.output_tokens
        usage = {"promptTokenCount": self.prompt, "candidatesTokenCount": candidates,
                 "totalTokenCount": self.prompt + candidates + (self.thoughts or 0)}
        if self.cached is not None:
            usage["cachedContentTokenCount"] = self.cached
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.prompt}]
        if self.cached is not None:
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached}]
        if self.thoughts is not None:
            usage["thoughtsTokenCount"] = self.thoughts
        if self.vertex:
            usage["trafficType"] = "ON_DEMAND"
        return usage


def plan(request: dict, output_tokens: int, model: str = "", vertex: bool = False) -> Plan:
    """The answer to a valid generateContent request; `output_tokens` is the
    answer length before `maxOutputTokens`."""
    prompt = prompt_tokens(request)
    cached_content = get(request, "cachedContent")
    cached = prompt // 2 if isinstance(cached_content, str) and cached_content else None
    cap = as_count(get(get(request, "generationConfig"), "maxOutputTokens"))
    answer = agent_turn(request) or json_answer(request) or make_answer(chosen_tool(request),
                                                                         output_tokens, cap)
    thoughts = max(1, answer.output_tokens // 2) if thinking(request) else None
    return Plan(model, prompt, cached, thoughts, answer, vertex)


def validate(request: dict) -> str | None:
    """The message of the 400 the API would answer, or None."""
    contents = request.get("contents")
    if not isinstance(contents, (list, dict)) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    return None


# -- bodies -----------------------------------------------------------------------------


def _chunk(plan: Plan, seq: int, parts: list, usage: dict, finish: bool) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = plan.finish_reason
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": plan.model,
            "responseId": response_id(seq)}


def parts(plan: Plan) -> list[dict]:
    tool = plan.answer.tool
    if tool is not None:
        return [{"functionCall": {"name": tool.name, "args": tool.arguments}}]
    return [{"text": text_of(plan.answer)}]


def response(plan: Plan, seq: int) -> dict:
    return _chunk(plan, seq, parts(plan), plan.usage(), True)


def response_body(plan: Plan, seq: int) -> bytes:
    return orjson.dumps(response(plan, seq))


def chunks(plan: Plan, seq: int) -> list[dict]:
    """The stream's chunks: one per word with running usage, or the one call."""
    if plan.answer.tool is not None:
        return [response(plan, seq)]
    pieces = pieces_of(plan.answer) or [""]
    last = len(pieces) - 1
    return [_chunk(plan, seq, [{"text": piece}], plan.usage(n + 1 if n < last else None), n == last)
            for n, piece in enumerate(pieces)]


SSE_END = b"\r\n\r\n"


def stream(plan: Plan, seq: int, sse: bool) -> EventStream:
    """The stream: SSE `data:` events, or the elements of one JSON array."""
    items = chunks(plan, seq)
    if sse:
        return EventStream((), tuple(b"data: " + orjson.dumps(c) + SSE_END for c in items), ())
    deltas = [b"[" + orjson.dumps(items[0])]
    deltas.extend(b",\r\n" + orjson.dumps(c) for c in items[1:])
    return EventStream((), tuple(deltas), (b"]",))


def stream_failure(sse: bool):
    """The `error-event` ending: Google's error object, as the framing carries it."""
    error = _error_document(503, None, None)

    def failure(sent: int) -> bytes:
        if sse:
            return error + b"\n"
        return (b"[" if sent == 0 else b",\r\n") + error + b"]"

    return failure


def headers(streaming_sse: bool = False) -> list[tuple[bytes, bytes]]:
    if streaming_sse:
        return [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache")]
    return [(b"content-type", JSON)]


# -- countTokens and embeddings ------------------------------------------------------------


def _text_characters(*values) -> int:
    """Characters of every string value, whitespace excluded (Vertex bills characters)."""
    total = 0
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += sum(1 for c in value if not c.isspace())
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return total


def count_tokens_body(request: dict, vertex: bool = False) -> bytes:
    """`:countTokens`: the prompt count of `contents` (with systemInstruction
    and tools on Vertex), or of the whole `generateContentRequest`."""
    inner = request.get("generateContentRequest") or request.get("generate_content_request")
    source = inner if isinstance(inner, dict) else request
    total = prompt_tokens(source)
    body: dict = {"totalTokens": total}
    cached = get(source, "cachedContent")
    if isinstance(cached, str) and cached:
        body["cachedContentTokenCount"] = total // 2
    if vertex:
        body["totalBillableCharacters"] = _text_characters(
            source.get("contents"), get(source, "systemInstruction"), get(source, "tools"))
    body["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": total}]
    return orjson.dumps(body)


def _embedding(content: object, index: int, dimensions: object) -> tuple[dict, int]:
    dims = as_count(dimensions) or EMBEDDING_DIMENSIONS
    return {"values": embedding_vector(index, dims)}, count_words(content)[0]


def embed_body(request: dict) -> bytes:
    """`:embedContent`: one vector; usage counts the words of the content."""
    embedding, words = _embedding(request.get("content"), 0, get(request, "outputDimensionality"))
    return orjson.dumps({"embedding": embedding,
                         "usageMetadata": {"promptTokenCount": words, "totalTokenCount": words}})


def batch_embed_body(request: dict) -> bytes:
    """`:batchEmbedContents`: one vector per request, in order."""
    embeddings = []
    total = 0
    for index, item in enumerate(request.get("requests") or ()):
        embedding, words = _embedding(get(item, "content"), index, get(item, "outputDimensionality"))
        embeddings.append(embedding)
        total += words
    return orjson.dumps({"embeddings": embeddings,
                         "usageMetadata": {"promptTokenCount": total, "totalTokenCount": total}})


# -- models -------------------------------------------------------------------------------


def _model_item(model_id: str, display: str, limit_in: int, limit_out: int, thinks: bool) -> dict:
    methods = (["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"]
               if "embedding" in model_id else
               ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"])
    item = {"name": "models/" + model_id, "version": "001", "displayName": display,
            "description": display + ", simulated", "inputTokenLimit": limit_in,
            "outputTokenLimit": limit_out, "supportedGenerationMethods": methods}
    if "embedding" not in model_id:
        item.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2})
    if thinks:
        item["thinking"] = True
    return item


MODEL_LIST = orjson.dumps({"models": [_model_item(*m) for m in MODELS]})


def model_body(model_id: str) -> bytes:
    for m in MODELS:
        if m[0] == model_id:
            return orjson.dumps(_model_item(*m))
    return orjson.dumps(_model_item(model_id, model_id, 1048576, 65536, False))


# -- errors --------------------------------------------------------------------------------

STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
            409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
            501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
MESSAGES = {
    400: "Request contains an invalid argument.",
    401: ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
          "or other valid authentication credential. See "
          "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_KEY_INVALID = "API key not valid. Please pass a valid API key."


def _error_document(status: int, message: str | None, code: str | None,
                    details: list | None = None) -> bytes:
    error: dict = {"code": status, "message": message or MESSAGES.get(status, "Error."),
                   "status": code or STATUSES.get(status) or ("INTERNAL" if status >= 500 else
                                                              "FAILED_PRECONDITION")}
    if details:
        error["details"] = details
    return json.dumps({"error": error}, indent=2).encode()


def google_error(status: int, message: str | None, code: str | None = None,
                 vertex: bool = False) -> tuple[int, list, bytes]:
    """(status, headers, body) of a Google API error."""
    details = None
    if status == 529:
        status = 503
    if status == 401 and not vertex:
        status, message = 400, message or _KEY_INVALID
        details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"}}]
    elif status == 429:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
    return status, [(b"content-type", JSON)], _error_document(status, message, code, details)


def error_response(status: int, message: str | None, seq: int, param: str | None = None,
                   code: str | None = None) -> tuple[int, list, bytes]:
    return google_error(status, message, code)


def vertex_error_response(status: int, message: str | None, seq: int, param: str | None = None,
                          code: str | None = None) -> tuple[int, list, bytes]:
    return google_error(status, message, code, vertex=True)


def owns(headers: dict, query: dict) -> bool:
    """A Google API key marks a Gemini API request."""
    return "x-goog-api-key" in headers or "key" in query


# -- routes -------------------------------------------------------------------------------


def check_generate(call: Call) -> None:
    problem = validate(call.request)
    if problem is not None:
        raise Reject(400, problem)


def generate(call: Call, vertex: bool = False) -> Reply:
    the_plan = plan(call.request, call.length, call.model_param(), vertex)
    return Reply(headers(), response_body(the_plan, call.seq))


def stream_generate(call: Call, vertex: bool = False) -> Streamed:
    the_plan = plan(call.request, call.length, call.model_param(), vertex)
    sse = call.query.get("alt") == "sse"
    return Streamed(headers(sse), stream(the_plan, call.seq, sse), stream_failure(sse))


def count_tokens(call: Call, vertex: bool = False) -> Reply:
    return Reply(headers(), count_tokens_body(call.request, vertex))


def check_embed(call: Call) -> None:
    if not isinstance(call.request.get("content"), dict):
        raise Reject(400, "* EmbedContentRequest.content: content is not specified\n")


def embed(call: Call) -> Reply:
    return Reply(headers(), embed_body(call.request))


def check_batch_embed(call: Call) -> None:
    requests = call.request.get("requests")
    if not isinstance(requests, list) or not requests:
        raise Reject(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")


def batch_embed(call: Call) -> Reply:
    return Reply(headers(), batch_embed_body(call.request))


def list_models(call: Call) -> Reply:
    return Reply(headers(), MODEL_LIST)


def get_model(call: Call) -> Reply:
    return Reply(headers(), model_body(call.model_param()))


def _model_route(action, check, verb: str) -> Route:
    return Route("POST", "/{version:%s}/models/{model}:%s" % (VERSIONS, verb), action, check, model="model")


def _listing(shape: str, action, when=None) -> Route:
    return Route("GET", shape, action, model=None, body=False, faults=False, when=when)


ROUTES = (
    _model_route(generate, check_generate, "generateContent"),
    _model_route(stream_generate, check_generate, "streamGenerateContent"),
    _model_route(count_tokens, None, "countTokens"),
    _model_route(embed, check_embed, "embedContent"),
    _model_route(batch_embed, check_batch_embed, "batchEmbedContents"),
    _listing("/v1beta/models", list_models),
    _listing("/v1beta/models/{model}", get_model),
    # /v1/models is OpenAI's and Anthropic's path too.
    _listing("/v1/models", list_models, owns),
    _listing("/v1/models/{model}", get_model, owns),
)


def usage(request: dict, output_tokens: int) -> dict:
    return plan(request, output_tokens).usage()


def vertex_usage(request: dict, output_tokens: int) -> dict:
    return plan(request, output_tokens, vertex=True).usage()


USAGE = {"gemini": usage}
