"""The Gemini API and Vertex AI as pure functions: usage rules, cumulative
stream usage, both stream framings byte for byte, function calls, errors, and
Claude on Vertex."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture.sim import anthropic, expected_usage, gemini, vertex
from aperture.sim.common import answer_text, answer_words, tool_call_tokens
from aperture.sim.routes import Call, Reject, Reply, Streamed

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECLARATION = {"name": "check_stock", "description": "Stock level",
               "parameters": {"type": "OBJECT", "properties": {"sku": {"type": "STRING"},
                                                               "count": {"type": "INTEGER"}}}}
ARGS = {"sku": "x", "count": 1}


def request(text: str = "How many are left?", **extra) -> dict:
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    body.update(extra)
    return body


def call(body: dict | None, path: str = "/v1beta/models/gemini-2.5-flash:generateContent",
         params: dict | None = None, query: dict | None = None, seq: int = 1, length: int = 12) -> Call:
    if params is None:
        params = {"version": "v1beta", "model": "gemini-2.5-flash"}
    return Call("POST", path, query or {}, {}, params, body, seq, None, length)


def sse(data: bytes) -> list[dict]:
    """The `data:` payloads of a Gemini SSE body; asserts CRLF framing, no event lines."""
    assert data.endswith(b"\r\n\r\n")
    out = []
    for block in data[:-4].split(b"\r\n\r\n"):
        assert block.startswith(b"data: ") and b"\n" not in block
        out.append(orjson.loads(block[len(b"data: "):]))
    return out


# -- usage ---------------------------------------------------------------------------


def test_usage_counts_contents_system_and_tools():
    body = request(systemInstruction={"parts": [{"text": "Be brief."}]},
                   tools=[{"functionDeclarations": [DECLARATION]}])
    # "user" + 4 words, system 2, tool: name 1, description 2, OBJECT STRING INTEGER 3
    assert expected_usage("gemini", body) == {
        "promptTokenCount": 13, "candidatesTokenCount": 12, "totalTokenCount": 25,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 13}]}
    assert expected_usage("gemini", {"contents": []}, 0)["promptTokenCount"] == 1


def test_cached_content_and_thinking():
    body = request(cachedContent="cachedContents/abc",
                   generationConfig={"maxOutputTokens": 7, "thinkingConfig": {"thinkingBudget": 1024}})
    usage = expected_usage("gemini", body)
    assert usage["promptTokenCount"] == 5 and usage["cachedContentTokenCount"] == 2
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 2}]
    assert usage["candidatesTokenCount"] == 7 and usage["thoughtsTokenCount"] == 3
    assert usage["totalTokenCount"] == 5 + 7 + 3
    off = request(generation_config={"thinking_config": {"thinking_budget": 0}})
    assert "thoughtsTokenCount" not in expected_usage("gemini", off)
    snake = request(system_instruction={"parts": [{"text": "one two"}]}, cached_content="c",
                    generation_config={"max_output_tokens": 2, "thinking_config": {"include_thoughts": True}})
    usage = expected_usage("gemini", snake)
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"], usage["thoughtsTokenCount"]) == (7, 2, 1)
    assert expected_usage("vertex_gemini", request())["trafficType"] == "ON_DEMAND"


def test_response_body():
    plan = gemini.plan(request(generationConfig={"maxOutputTokens": 3}), 12, "gemini-2.5-flash")
    body = orjson.loads(gemini.response_body(plan, 4))
    assert body == {
        "candidates": [{"content": {"parts": [{"text": "Lorem ipsum dolor"}], "role": "model"},
                        "finishReason": "MAX_TOKENS", "index": 0}],
        "usageMetadata": expected_usage("gemini", request(generationConfig={"maxOutputTokens": 3})),
        "modelVersion": "gemini-2.5-flash", "responseId": gemini.response_id(4)}


@pytest.mark.parametrize("config, text, expected", [
    (None, "hello", None), (None, "use the Tool", "check_stock"),
    ({"mode": "AUTO"}, "hello", None), ({"mode": "ANY"}, "hello", "check_stock"),
    ({"mode": "any", "allowedFunctionNames": ["other"]}, "hello", "other"),
    ({"mode": "NONE"}, "tool", None),
])
def test_function_calling_modes(config, text, expected):
    other = {"name": "other", "parametersJsonSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}
    body = request(text, tools=[{"googleSearch": {}}, {"functionDeclarations": [DECLARATION, other]}])
    if config is not None:
        body["toolConfig"] = {"functionCallingConfig": config}
    tool = gemini.plan(body, 12).answer.tool
    assert (tool.name if tool else None) == expected
    if expected == "other":
        assert tool.arguments == {"q": "x"}


def test_function_call_answer_and_stream():
    body = request("use the tool", tools=[{"function_declarations": [DECLARATION]}])
    plan = gemini.plan(body, 12, "gemini-2.5-pro")
    whole = orjson.loads(gemini.response_body(plan, 2))
    assert whole["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "check_stock", "args": ARGS}}]
    assert whole["candidates"][0]["finishReason"] == "STOP"
    assert whole["usageMetadata"]["candidatesTokenCount"] == tool_call_tokens(ARGS)
    assert sse(gemini.stream(plan, 2, sse=True).joined()) == [whole]  # arrives whole, in one chunk


# -- streams ---------------------------------------------------------------------------


def test_sse_chunks_carry_cumulative_usage():
    body = request(cachedContent="c", generationConfig={"thinkingConfig": {"thinkingBudget": -1}})
    plan = gemini.plan(body, 4, "gemini-2.5-flash")
    chunks = sse(gemini.stream(plan, 3, sse=True).joined())
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == answer_words(4)
    assert [c["usageMetadata"]["candidatesTokenCount"] for c in chunks] == [1, 2, 3, 4]
    assert all(c["usageMetadata"]["promptTokenCount"] == plan.prompt and
               c["usageMetadata"]["thoughtsTokenCount"] == 2 and c["usageMetadata"]["cachedContentTokenCount"] ==
               plan.prompt // 2 for c in chunks)
    totals = [c["usageMetadata"]["totalTokenCount"] for c in chunks]
    assert totals == sorted(totals) and chunks[-1]["usageMetadata"] == expected_usage("gemini", body, 4)
    assert ["finishReason" in c["candidates"][0] for c in chunks] == [False, False, False, True]
    assert {c["responseId"] for c in chunks} == {gemini.response_id(3)}


def test_json_array_stream_bytes():
    plan = gemini.plan(request(), 3, "gemini-2.5-flash")
    stream = gemini.stream(plan, 5, sse=False)
    chunks = gemini.chunks(plan, 5)
    assert stream.head == () and stream.tail == (b"]",)
    assert stream.deltas == (b"[" + orjson.dumps(chunks[0]), b",\r\n" + orjson.dumps(chunks[1]),
                             b",\r\n" + orjson.dumps(chunks[2]))
    assert json.loads(stream.joined()) == chunks == sse(gemini.stream(plan, 5, sse=True).joined())
    empty = gemini.stream(gemini.plan(request(), 0), 1, sse=False)
    assert json.loads(empty.joined())[0]["candidates"][0] == {
        "content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}


@SETTINGS
@given(st.integers(0, 20), st.one_of(st.none(), st.integers(0, 20)), st.booleans(), st.booleans())
def test_streams_rebuild_the_response(length, cap, tools, thinks):
    body = request("tool please" if tools else "hello")
    if tools:
        body["tools"] = [{"functionDeclarations": [DECLARATION]}]
    config: dict = {}
    if cap is not None:
        config["maxOutputTokens"] = cap
    if thinks:
        config["thinkingConfig"] = {"thinkingBudget": 512}
    body["generationConfig"] = config
    plan = gemini.plan(body, length, "m")
    whole = orjson.loads(gemini.response_body(plan, 7))
    chunks = json.loads(gemini.stream(plan, 7, sse=False).joined())
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    calls = [p["functionCall"] for c in chunks for p in c["candidates"][0]["content"]["parts"]
             if "functionCall" in p]
    if calls:
        assert calls == [whole["candidates"][0]["content"]["parts"][0]["functionCall"]]
    else:
        assert text == whole["candidates"][0]["content"]["parts"][0]["text"]
    assert chunks[-1]["usageMetadata"] == whole["usageMetadata"] == expected_usage("gemini", body, length)
    assert chunks[-1]["candidates"][0]["finishReason"] == whole["candidates"][0]["finishReason"]


def test_stream_failures():
    error = {"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                       "status": "UNAVAILABLE"}}
    raw = gemini.stream_failure(sse=True)(2)
    assert raw.startswith(b"{\n  \"error\": {\n") and json.loads(raw) == error
    plan = gemini.plan(request(), 4)
    stream = gemini.stream(plan, 1, sse=False)
    failure = gemini.stream_failure(sse=False)
    cut = b"".join(stream.deltas[:2]) + failure(2)
    assert json.loads(cut)[-1] == error and len(json.loads(cut)) == 3
    assert json.loads(failure(0)) == [error]


# -- countTokens, embeddings, models ------------------------------------------------------------


def test_count_tokens():
    body = request(systemInstruction={"parts": [{"text": "Be brief."}]})
    assert orjson.loads(gemini.count_tokens_body({"contents": body["contents"]})) == {
        "totalTokens": 5, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}]}
    wrapped = {"generateContentRequest": {"model": "models/m", **body, "cachedContent": "c"}}
    assert orjson.loads(gemini.count_tokens_body(wrapped))["totalTokens"] == \
        expected_usage("gemini", body)["promptTokenCount"] == 7
    assert orjson.loads(gemini.count_tokens_body(wrapped))["cachedContentTokenCount"] == 3
    on_vertex = orjson.loads(gemini.count_tokens_body(body, vertex=True))  # contents 5 + system 2
    assert on_vertex["totalTokens"] == 7 and on_vertex["totalBillableCharacters"] == len(
        "userHowmanyareleft?Bebrief.")


def test_embeddings_and_models():
    one = orjson.loads(gemini.embed_body({"content": {"parts": [{"text": "a b c"}]}, "outputDimensionality": 4}))
    assert len(one["embedding"]["values"]) == 4
    assert one["usageMetadata"] == {"promptTokenCount": 3, "totalTokenCount": 3}
    batch = orjson.loads(gemini.batch_embed_body({"requests": [
        {"model": "models/e", "content": {"parts": [{"text": "a b"}]}},
        {"model": "models/e", "content": {"parts": [{"text": "c"}]}}]}))
    assert [len(e["values"]) for e in batch["embeddings"]] == [8, 8]
    assert batch["embeddings"][0] != batch["embeddings"][1] and batch["usageMetadata"]["promptTokenCount"] == 3
    listing = orjson.loads(gemini.MODEL_LIST)
    assert all(m["name"].startswith("models/") for m in listing["models"])
    assert orjson.loads(gemini.model_body("gemini-x"))["name"] == "models/gemini-x"


# -- errors ------------------------------------------------------------------------------


def test_google_errors():
    status, headers, body = gemini.error_response(429, None, 1)
    assert status == 429 and (b"content-type", gemini.JSON) in headers
    error = json.loads(body)["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["details"][0]["retryDelay"] == "1s" and body.startswith(b'{\n  "error": {\n    "code": 429')
    status, _, body = gemini.error_response(401, None, 1)
    error = json.loads(body)["error"]
    assert (status, error["status"], error["details"][0]["reason"]) == (400, "INVALID_ARGUMENT", "API_KEY_INVALID")
    status, _, body = gemini.vertex_error_response(401, None, 1)
    assert (status, json.loads(body)["error"]["status"]) == (401, "UNAUTHENTICATED")
    assert gemini.error_response(529, None, 1)[0] == 503
    assert json.loads(gemini.error_response(418, "odd", 1)[2])["error"] == {
        "code": 418, "message": "odd", "status": "FAILED_PRECONDITION"}
    with pytest.raises(Reject) as err:
        gemini.check_generate(call({"contents": []}))
    assert err.value.status == 400 and "contents" in err.value.message


# -- Vertex ---------------------------------------------------------------------------------

VERTEX_CLAUDE = "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929"


def vertex_call(body: dict, suffix: str = ":rawPredict", project: str = "proj",
                location: str = "us-east5", seq: int = 3) -> Call:
    path = VERTEX_CLAUDE.replace("proj", project).replace("us-east5", location) + suffix
    params = {"version": "v1", "project": project, "location": location, "model": "claude-sonnet-4-5@20250929"}
    return Call("POST", path, {}, {}, params, body, seq, None, 12)


CLAUDE_BODY = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64,
               "messages": [{"role": "user", "content": "Hello there"}]}


def test_claude_on_vertex_answers_as_anthropic():
    answer = vertex.raw_predict(vertex_call(CLAUDE_BODY))
    same = anthropic.message_body(anthropic.plan({**CLAUDE_BODY, "model": "claude-sonnet-4-5@20250929"}, 12), 3)
    assert type(answer) is Reply and answer.body == same
    assert orjson.loads(answer.body)["usage"] == expected_usage("vertex_anthropic", CLAUDE_BODY)
    streamed = vertex.raw_predict(vertex_call({**CLAUDE_BODY, "stream": True}, ":streamRawPredict"))
    assert type(streamed) is Streamed
    plan = anthropic.plan({**CLAUDE_BODY, "stream": True, "model": "claude-sonnet-4-5@20250929"}, 12)
    assert streamed.events.joined() == anthropic.stream(plan, 3).joined()
    assert streamed.failure(1) == anthropic.stream_error(3)


@pytest.mark.parametrize("body, message", [
    ({**CLAUDE_BODY, "model": "claude"}, "model: Extra inputs are not permitted"),
    ({k: v for k, v in CLAUDE_BODY.items() if k != "anthropic_version"}, "anthropic_version: Field required"),
    ({**CLAUDE_BODY, "anthropic_version": "bedrock-2023-05-31"}, "anthropic_version: Input should be"),
    ({k: v for k, v in CLAUDE_BODY.items() if k != "max_tokens"}, "max_tokens: Field required"),
])
def test_claude_on_vertex_refuses_bad_bodies(body, message):
    with pytest.raises(Reject) as err:
        vertex.check_claude(vertex_call(body))
    assert err.value.status == 400 and err.value.message.startswith(message)
    status, _, data = vertex.error_response(400, err.value.message, 1)
    assert status == 400 and orjson.loads(data)["error"]["type"] == "invalid_request_error"


def test_anthropic_api_version_dates_are_accepted():
    vertex.check_claude(vertex_call({**CLAUDE_BODY, "anthropic_version": "2023-06-01"}))
    with pytest.raises(Reject):
        vertex.check_claude(vertex_call({**CLAUDE_BODY, "anthropic_version": "latest"}))


@pytest.mark.parametrize("project, location", [
    (vertex.PLACEHOLDER_PROJECT, "us-east5"), ("proj", vertex.PLACEHOLDER_REGION)])
def test_placeholders_are_refused_as_an_unknown_project(project, location):
    with pytest.raises(Reject) as err:
        vertex.check_claude(vertex_call(CLAUDE_BODY, project=project, location=location))
    assert err.value.status == 403 and project in err.value.message and location in err.value.message
    status, _, data = vertex.error_response(403, err.value.message, 1, code=err.value.code)
    assert status == 403 and json.loads(data)["error"]["status"] == "PERMISSION_DENIED"


def test_vertex_error_shapes():
    assert json.loads(vertex.error_response(429, None, 1)[2])["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert json.loads(vertex.error_response(404, None, 1)[2])["error"]["status"] == "NOT_FOUND"
    status, _, data = vertex.error_response(529, None, 1)
    assert status == 529 and orjson.loads(data)["error"]["type"] == "overloaded_error"
    count = vertex_call({**CLAUDE_BODY, "model": "claude-sonnet-4-5"}, "")
    vertex.check_count_tokens(count)
    assert orjson.loads(vertex.count_tokens(count).body) == {"input_tokens": 3}


def test_gemini_on_vertex():
    params = {"version": "v1beta1", "project": "p", "location": "global", "model": "gemini-2.5-flash"}
    path = "/v1beta1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"
    answer = gemini.generate(call(request(), path, params), vertex=True)
    assert orjson.loads(answer.body)["usageMetadata"] == expected_usage("vertex_gemini", request())
    bad = dict(params, project=vertex.PLACEHOLDER_PROJECT)
    with pytest.raises(Reject) as err:
        vertex.check_gemini(call(request(), path.replace("/p/", "/%s/" % vertex.PLACEHOLDER_PROJECT), bad))
    assert "publishers/google/models/gemini-2.5-flash" in err.value.message
    assert answer_text(12) in answer.body.decode()
