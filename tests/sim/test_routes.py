"""The simulator's registry: path shapes, which format answers which path, and
the names `expected_usage` knows."""

from __future__ import annotations

import pytest

from aperture.sim import anthropic, bedrock, expected_usage, gemini, openai_chat, openai_responses, registry
from aperture.sim import vertex
from aperture.sim.routes import Route, sort_routes


def nothing(call):
    raise AssertionError("not called")


def test_shapes_match_as_suffixes_at_segment_boundaries():
    route = Route("POST", "/v1/messages", nothing)
    assert route.match("/v1/messages") == {}
    assert route.match("/tenant/anthropic/v1/messages") == {}
    assert route.match("/xv1/messages") is None
    assert route.match("/v1/messages/count_tokens") is None
    shaped = Route("POST", "/model/{model}/invoke", nothing)
    assert shaped.match("/bedrock/model/anthropic.claude-v1:0/invoke") == {"model": "anthropic.claude-v1:0"}
    assert shaped.match("/model/a/b/invoke") is None
    assert shaped.match("/model//invoke") is None


def test_parameters_are_percent_decoded():
    route = Route("POST", "/model/{model}/invoke", nothing)
    arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.anthropic.claude"
    assert route.match("/model/%s/invoke" % arn) == {
        "model": "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude"}


def test_choices_and_verbs():
    route = Route("POST", "/{version:v1|v1beta}/models/{model}:generateContent", nothing)
    assert route.match("/v1beta/models/gemini-2.5-flash:generateContent") == {
        "version": "v1beta", "model": "gemini-2.5-flash"}
    assert route.match("/v2/models/gemini:generateContent") is None
    assert route.match("/v1/models/gemini:streamGenerateContent") is None
    assert route.last == ":generateContent" and Route("GET", "/v1/x/{id}", nothing).last == ""


def test_more_literal_text_wins():
    general = Route("GET", "/v1/responses/{id}", nothing)
    special = Route("POST", "/v1/responses/input_tokens", nothing)
    assert sort_routes([general, special]) == (special, general)


@pytest.mark.parametrize("method, path, headers, query, fmt", [
    ("POST", "/v1/messages", {}, {}, anthropic),
    ("POST", "/p/v1/messages/count_tokens", {}, {}, anthropic),
    ("POST", "/v1/chat/completions", {}, {}, openai_chat),
    ("POST", "/v1/embeddings", {}, {}, openai_chat),
    ("GET", "/v1/models", {}, {}, openai_chat),
    ("GET", "/v1/models", {"anthropic-version": "2023-06-01"}, {}, anthropic),
    ("GET", "/v1/models", {"x-goog-api-key": "k"}, {}, gemini),
    ("GET", "/v1/models/gpt-5.4", {}, {"key": "k"}, gemini),
    ("GET", "/v1beta/models", {}, {}, gemini),
    ("POST", "/v1/responses", {}, {}, openai_responses),
    ("GET", "/v1/responses/resp_1", {}, {}, openai_responses),
    ("DELETE", "/v1/responses/resp_1", {}, {}, openai_responses),
    ("POST", "/v1/responses/resp_1/cancel", {}, {}, openai_responses),
    ("GET", "/v1/responses/resp_1/input_items", {}, {}, openai_responses),
    ("POST", "/v1/responses/input_tokens", {}, {}, openai_responses),
    ("POST", "/v1/responses/compact", {}, {}, openai_responses),
    ("POST", "/v1beta/models/gemini-2.5-flash:generateContent", {}, {}, gemini),
    ("POST", "/v1/models/gemini-2.5-flash:streamGenerateContent", {}, {"alt": "sse"}, gemini),
    ("POST", "/v1beta/models/m:countTokens", {}, {}, gemini),
    ("POST", "/v1beta/models/m:embedContent", {}, {}, gemini),
    ("POST", "/v1beta/models/m:batchEmbedContents", {}, {}, gemini),
    ("POST", "/v1/projects/p/locations/l/publishers/google/models/m:generateContent", {}, {}, vertex),
    ("POST", "/v1beta1/projects/p/locations/l/publishers/google/models/m:streamGenerateContent", {}, {},
     vertex),
    ("POST", "/v1/projects/p/locations/l/publishers/google/models/m:countTokens", {}, {}, vertex),
    ("POST", "/v1/projects/p/locations/l/publishers/anthropic/models/m:rawPredict", {}, {}, vertex),
    ("POST", "/v1/projects/p/locations/l/publishers/anthropic/models/m:streamRawPredict", {}, {}, vertex),
    ("POST", "/v1/projects/p/locations/l/publishers/anthropic/models/count-tokens:rawPredict", {}, {},
     vertex),
    ("POST", "/bedrock/model/m/invoke", {}, {}, bedrock),
    ("POST", "/model/m/invoke-with-response-stream", {}, {}, bedrock),
    ("POST", "/model/m/converse", {}, {}, bedrock),
    ("POST", "/model/m/converse-stream", {}, {}, bedrock),
    ("POST", "/model/m/count-tokens", {}, {}, bedrock),
])
def test_every_path_finds_its_format(method, path, headers, query, fmt):
    found, route, params = registry.match(method, path, headers, query)
    assert found is fmt and route is not None and route.method == method


def test_the_specific_route_wins_over_the_general_one():
    _, route, params = registry.match("POST", "/v1/projects/p/locations/l/publishers/anthropic/models/"
                                              "count-tokens:rawPredict", {}, {})
    assert route.model == "body" and "model" not in params
    _, route, params = registry.match("POST", "/v1/responses/input_tokens", {}, {})
    assert route.action is openai_responses.input_tokens
    _, route, params = registry.match("GET", "/v1/responses/input_tokens", {}, {})
    assert route.action is openai_responses.retrieve and params == {"response_id": "input_tokens"}


def test_known_paths_with_another_method_and_unknown_paths():
    assert registry.match("GET", "/v1/messages", {}, {})[:2] == (anthropic, None)
    assert registry.match("PUT", "/v1/responses/r1", {}, {})[:2] == (openai_responses, None)
    assert registry.match("GET", "/model/m/invoke", {}, {})[:2] == (bedrock, None)
    assert registry.match("POST", "/v2/nothing", {}, {}) == (None, None, {})
    assert registry.guess({"anthropic-version": "x"}, {}) is anthropic
    assert registry.guess({}, {"key": "k"}) is gemini
    assert registry.guess({"authorization": "AWS4-HMAC-SHA256 Credential=x/..."}, {}) is bedrock
    assert registry.guess({"authorization": "Bearer k"}, {}) is openai_chat


def test_every_format_is_complete():
    names = set()
    for fmt in registry.FORMATS:
        assert fmt.NAME not in names and fmt.ROUTES
        names.add(fmt.NAME)
        status, headers, body = fmt.error_response(500, None, 1)
        assert status == 500 and body and headers
    assert names == {"anthropic_messages", "openai_chat", "openai_responses", "gemini", "vertex", "bedrock"}


def test_expected_usage_names():
    assert set(registry.usage_functions()) == {
        "anthropic", "anthropic_messages", "openai", "openai_chat", "openai_responses",
        "openai_responses_compact", "gemini", "vertex_gemini", "vertex_anthropic", "bedrock_invoke",
        "bedrock_converse"}
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "a b"}], "anthropic_version": "x"}
    assert expected_usage("vertex_anthropic", body) == expected_usage("bedrock_invoke", body) == \
        expected_usage("anthropic", {**body, "model": "m"})
    with pytest.raises(ValueError, match="bedrock_converse"):
        expected_usage("bedrock", {})
