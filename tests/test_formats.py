"""API formats: what each path means (its Route), the upstream path, errors."""

from __future__ import annotations

import orjson
import pytest

from aperture.config import parse_config
from aperture.errors import BadRequest, Forbidden, GatewayError, MethodNotAllowed, NotFound
from aperture.formats import BY_NAME
from aperture.formats.base import BODY_ANY, BODY_JSON, BODY_MODEL, decode_segment

ANTHROPIC, CHAT, RESPONSES = BY_NAME["anthropic_messages"], BY_NAME["openai_chat"], BY_NAME["openai_responses"]
GEMINI, VERTEX, BEDROCK = BY_NAME["gemini"], BY_NAME["vertex"], BY_NAME["bedrock"]

CONFIG = parse_config("""{"providers": {
  "vertex": {"baseurl": "https://aiplatform.googleapis.com", "apikey": "t", "models": ["m"],
             "vertex_project": "proj-1", "vertex_region": "us-east5",
             "compatibility": {"vertex": true}},
  "bare": {"baseurl": "https://aiplatform.googleapis.com", "apikey": "t", "models": ["m"],
           "compatibility": {"vertex": true}},
}}""")


def route(fmt, path, method="POST", query=""):
    return fmt.match(method, path, query)


@pytest.mark.parametrize("fmt, path, flags, dialect", [
    (ANTHROPIC, "/v1/messages", ("anthropic_messages",), "anthropic"),
    (ANTHROPIC, "/v1/messages/count_tokens", ("anthropic_messages",), None),
    (CHAT, "/v1/chat/completions", ("openai_chat",), "openai_chat"),
    (CHAT, "/v1/embeddings", ("openai_chat",), "openai_chat"),
    (RESPONSES, "/v1/responses", ("openai_responses",), "openai_responses"),
    (RESPONSES, "/v1/responses/compact", ("openai_responses",), "openai_responses"),
    (RESPONSES, "/v1/responses/input_tokens", ("openai_responses",), None),
])
def test_body_model_routes(fmt, path, flags, dialect):
    r = route(fmt, path)
    assert (r.flags, r.model, r.body, r.dialect, r.path) == (flags, None, BODY_MODEL, dialect, None)
    assert fmt.upstream_path(r, path, None, "any-model") == path


@pytest.mark.parametrize("fmt, path", [(ANTHROPIC, "/v1/messages"), (CHAT, "/v1/chat/completions"),
                                       (RESPONSES, "/v1/responses"),
                                       (GEMINI, "/v1beta/models/gemini-2.5-pro:generateContent"),
                                       (BEDROCK, "/bedrock/model/m/converse")])
def test_wrong_method(fmt, path):
    with pytest.raises(MethodNotAllowed, match="GET is not allowed on .*; use POST"):
        route(fmt, path, "GET")


@pytest.mark.parametrize("method, path, response_id", [
    ("GET", "/v1/responses/resp_123", "resp_123"),
    ("DELETE", "/v1/responses/resp_123", "resp_123"),
    ("POST", "/v1/responses/resp_123/cancel", "resp_123"),
    ("GET", "/v1/responses/resp_123/input_items", "resp_123"),
])
def test_responses_sub_resources(method, path, response_id):
    r = route(RESPONSES, path, method)
    assert (r.flags, r.model, r.body, r.dialect, r.response_id) == (
        ("openai_responses",), None, BODY_ANY, None, response_id)
    assert RESPONSES.upstream_path(r, path, None, "") == path


@pytest.mark.parametrize("method, path, error", [
    ("POST", "/v1/responses/resp_1", MethodNotAllowed),
    ("GET", "/v1/responses/resp_1/cancel", MethodNotAllowed),
    ("GET", "/v1/responses/resp_1/other", NotFound),
    ("GET", "/v1/responses/", NotFound),
    ("GET", "/v1/responses/%zz", BadRequest),
])
def test_responses_bad_paths(method, path, error):
    with pytest.raises(error):
        route(RESPONSES, path, method)


@pytest.mark.parametrize("path, query, action, model, array", [
    ("/v1beta/models/gemini-2.5-pro:generateContent", "", "generateContent", "gemini-2.5-pro", False),
    ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", "alt=sse", "streamGenerateContent",
     "gemini-2.5-pro", False),
    ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", "", "streamGenerateContent",
     "gemini-2.5-pro", True),
    ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", "key=k&alt=json", "streamGenerateContent",
     "gemini-2.5-pro", True),
    ("/v1/models/gemini-2.5-flash:countTokens", "", "countTokens", "gemini-2.5-flash", False),
    ("/v1beta/models/gemini/gemini-2.5-pro:generateContent", "", "generateContent",
     "gemini/gemini-2.5-pro", False),
    ("/v1beta/models/gemini%2Fgemini-2.5-pro:embedContent", "", "embedContent",
     "gemini/gemini-2.5-pro", False),
    ("/v1beta/models/text-embedding-004:batchEmbedContents", "", "batchEmbedContents",
     "text-embedding-004", False),
])
def test_gemini_routes(path, query, action, model, array):
    r = route(GEMINI, path, query=query)
    assert (r.flags, r.model, r.body, r.array_stream) == (("gemini_generate_content",), model,
                                                          BODY_JSON, array)
    assert r.dialect == ("gemini" if action in ("generateContent", "streamGenerateContent") else None)
    # The path goes up as written, unless routing renamed the model.
    assert GEMINI.upstream_path(r, path, None, model) == path
    prefix = path[:path.index("/models/") + len("/models/")]
    assert GEMINI.upstream_path(r, path, None, "gemini-2.5-pro") == prefix + "gemini-2.5-pro:" + action


@pytest.mark.parametrize("path, error, message", [
    ("/v1beta/models/:generateContent", BadRequest, "the model in the path is empty"),
    ("/v1beta/models/%20:generateContent", BadRequest, "the model in the path is empty"),
    ("/v1beta/models/gem%zzini:generateContent", BadRequest, "not decodable"),
    ("/v1beta/models/gem%ffini:generateContent", BadRequest, "not UTF-8"),
    ("/v1beta/models/gem%0aini:generateContent", BadRequest, "control characters"),
    ("/v1beta/models/gemini-2.5-pro:fly", NotFound, "no route for POST"),
    ("/v1beta/models/gemini-2.5-pro", NotFound, "expected .../MODEL:ACTION"),
])
def test_gemini_bad_paths(path, error, message):
    with pytest.raises(error, match=message):
        route(GEMINI, path)


def test_decode_segment():
    assert decode_segment("a%2Fb%3Ac") == "a/b:c"
    assert decode_segment("caf%C3%A9") == "café"
    assert decode_segment("plain") == "plain"


V = "/v1/projects/proj-x/locations/us-east5/publishers"
AUTO = "/v1/projects/_aperture_auto_vertex_project_id_/locations/_aperture_auto_vertex_region_/publishers"


@pytest.mark.parametrize("path, flags, model, body, dialect", [
    (V + "/google/models/gemini-2.5-pro:generateContent", ("google_generate_content",),
     "gemini-2.5-pro", BODY_JSON, "gemini"),
    (V + "/google/models/gemini-2.5-pro:streamGenerateContent", ("google_generate_content",),
     "gemini-2.5-pro", BODY_JSON, "gemini"),
    (V.replace("v1", "v1beta1") + "/google/models/gemini-2.5-pro:countTokens",
     ("google_generate_content",), "gemini-2.5-pro", BODY_JSON, None),
    ("/v1/publishers/google/models/gemini-2.5-flash:generateContent", ("google_generate_content",),
     "gemini-2.5-flash", BODY_JSON, "gemini"),
    (V + "/anthropic/models/claude-sonnet-4-5@20250929:rawPredict", ("google_raw_predict",),
     "claude-sonnet-4-5@20250929", BODY_JSON, "anthropic"),
    (V + "/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict", ("google_raw_predict",),
     "claude-sonnet-4-5@20250929", BODY_JSON, "anthropic"),
    (V + "/anthropic/models/count-tokens:rawPredict", ("google_raw_predict",), None, BODY_MODEL, None),
])
def test_vertex_routes(path, flags, model, body, dialect):
    r = route(VERTEX, path)
    assert (r.flags, r.model, r.body, r.dialect) == (flags, model, body, dialect)
    assert VERTEX.upstream_path(r, path, CONFIG.providers["vertex"], model or "m") == path


def test_vertex_errors_follow_the_publisher():
    claude = route(VERTEX, V + "/anthropic/models/claude-sonnet-4-6:rawPredict")
    body, _ = claude.errors(NotFound("nope"), "req_1")
    assert orjson.loads(body)["error"] == {"type": "not_found_error", "message": "nope"}
    gemini = route(VERTEX, V + "/google/models/gemini-2.5-pro:generateContent")
    assert gemini.errors is None  # the format's own: Google's shape
    body, _ = VERTEX.error_body(Forbidden("no"), "req_1")
    assert orjson.loads(body) == {"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}


def test_vertex_placeholders_are_replaced():
    path = AUTO + "/anthropic/models/claude-sonnet-4-6:streamRawPredict"
    r = route(VERTEX, path)
    up = VERTEX.upstream_path(r, path, CONFIG.providers["vertex"], "claude-sonnet-4-6")
    assert up == "/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6:streamRawPredict"
    renamed = VERTEX.upstream_path(r, path, CONFIG.providers["vertex"], "claude-sonnet-4-6@2026")
    assert renamed.endswith("/models/claude-sonnet-4-6@2026:streamRawPredict")
    assert "_aperture_auto_" not in renamed
    with pytest.raises(GatewayError, match="provider bare has no vertex_project in the configuration"):
        VERTEX.upstream_path(r, path, CONFIG.providers["bare"], "claude-sonnet-4-6")


@pytest.mark.parametrize("path", [
    "/v1/projects/p/locations/l/publishers/meta/models/llama:rawPredict",
    "/v1/projects/p/locations/l/publishers/anthropic/models/claude:predict",
    "/v1/projects/p/regions/l/publishers/google/models/g:generateContent",
    "/v1/projects/p/locations/l/publishers/google/endpoints/g:generateContent",
    "/v1/publishers/anthropic/models/claude:rawPredict",
])
def test_vertex_unknown_paths(path):
    with pytest.raises(NotFound):
        route(VERTEX, path)


ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile%2Fus.anthropic.claude-sonnet-4-6"


@pytest.mark.parametrize("action, flags, dialect", [
    ("invoke", ("bedrock_model_invoke",), "anthropic"),
    ("invoke-with-response-stream", ("bedrock_model_invoke",), "anthropic"),
    ("converse", ("bedrock_converse",), "converse"),
    ("converse-stream", ("bedrock_converse",), "converse"),
    ("count-tokens", ("bedrock_model_invoke", "bedrock_converse"), None),
])
@pytest.mark.parametrize("raw, model", [
    ("us.anthropic.claude-sonnet-4-6", "us.anthropic.claude-sonnet-4-6"),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    (ARN, ARN.replace("%2F", "/")),
])
def test_bedrock_routes(action, flags, dialect, raw, model):
    path = "/bedrock/model/%s/%s" % (raw, action)
    r = route(BEDROCK, path)
    assert (r.flags, r.model, r.body, r.dialect) == (flags, model, BODY_JSON, dialect)
    # The prefix goes, the id stays exactly as encoded ("%2F" never becomes "/").
    assert BEDROCK.upstream_path(r, path, None, model) == "/model/%s/%s" % (raw, action)


def test_bedrock_renamed_model_is_encoded_as_the_sdk_does():
    r = route(BEDROCK, "/bedrock/model/bedrock%2F" + ARN + "/invoke")
    assert r.model == "bedrock/" + ARN.replace("%2F", "/")
    assert BEDROCK.upstream_path(r, "", None, ARN.replace("%2F", "/")) == "/model/" + ARN + "/invoke"


@pytest.mark.parametrize("path", ["/bedrock/inference-profiles", "/bedrock/model/m",
                                  "/bedrock/model/m/invoke/x", "/bedrock/model/m/apply"])
def test_bedrock_unknown_paths(path):
    with pytest.raises(NotFound):
        route(BEDROCK, path)


def test_bedrock_errors_and_header_usage():
    body, headers = BEDROCK.error_body(Forbidden("access denied: no role granted"), "req_1")
    assert orjson.loads(body) == {"message": "access denied: no role granted"}
    assert dict(headers)[b"x-amzn-errortype"] == b"AccessDeniedException"
    assert dict(BEDROCK.error_body(GatewayError("x", status=502), "r")[1])[b"x-amzn-errortype"] == \
        b"ServiceUnavailableException"
    usage = BEDROCK.usage_from_headers([(b"x-amzn-bedrock-input-token-count", b"120"),
                                        (b"x-amzn-bedrock-output-token-count", b"7"),
                                        (b"content-type", b"application/json")])
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (120, 7, 0)
    assert BEDROCK.usage_from_headers([(b"content-type", b"application/json")]) is None
    assert BEDROCK.upstream_error(429, [(b"x-amzn-errortype", b"ThrottlingException:http://internal")]) \
        == "ThrottlingException (upstream answered 429)"


@pytest.mark.parametrize("fmt, shape", [
    (ANTHROPIC, {"type": "error", "error": {"type": "permission_error", "message": "no"},
                 "request_id": "req_1"}),
    (CHAT, {"error": {"message": "no", "type": "permission_error", "param": None, "code": None}}),
    (RESPONSES, {"error": {"message": "no", "type": "permission_error", "param": None, "code": None}}),
    (GEMINI, {"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}),
])
def test_error_shapes(fmt, shape):
    body, headers = fmt.error_body(Forbidden("no"), "req_1")
    assert orjson.loads(body) == shape
    assert dict(headers)[b"content-type"] == b"application/json"
