"""Every API format through aperture, with the official clients: the OpenAI
Responses API (`openai`), the Gemini API and Vertex AI (`google-genai`,
`anthropic.AnthropicVertex`), Bedrock (`boto3`, `anthropic.AnthropicBedrock`),
and raw sockets for the bytes no SDK shows.

One gateway serves the module: two workers, `serve-headers` identity (each
test speaks as its own user and finds its records by that user), providers
of every kind in front of the simulator. Each test checks what reached the
simulator (the provider's credential, never the client's; the path as the
provider must see it) and what was captured: the model, token counts equal
to what the simulator declared, tool calls, and no client credential.
"""

from __future__ import annotations

import json
import socket

import anthropic
import boto3
import botocore.exceptions
import openai
import pytest
from botocore.config import Config
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from google.oauth2.credentials import Credentials

from aperture.capture.schema import env_path
from aperture.sim import expected_usage
from aperture.sim.common import answer_text, answer_words

from .conftest import keep, launch_gateway, provider_config, wait_for
from .test_capture import LOGIN, get_capture, new_user, post, read_response, tokens, wait_records

CLIENT_SECRET = "client-SECRET-must-not-travel"
KEYS = {"openai": "sk-openai-provider", "azure": "azure-provider-key", "gemini": "gk-provider",
        "vertex": "ya29.provider-token", "bedrock": "bedrock-api-key-provider"}
PROJECT, REGION = "proj-42", "us-east5"
AUTO = "/v1/projects/_aperture_auto_vertex_project_id_/locations/_aperture_auto_vertex_region_"
FUNCTION = {"type": "function", "name": "check_stock", "description": "Stock level for a SKU",
            "parameters": {"type": "object", "properties": {"sku": {"type": "string"}},
                           "required": ["sku"], "additionalProperties": False}, "strict": True}
STOCK = types.FunctionDeclaration(
    name="check_stock", description="Stock level for a SKU",
    parameters=types.Schema(type="OBJECT", properties={"sku": types.Schema(type="STRING")},
                            required=["sku"]))
NO_AUTO_CALLS = types.AutomaticFunctionCallingConfig(disable=True)
BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6"
INVOKE = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256,
          "messages": [{"role": "user", "content": "How many X-91 are left?"}]}
CONVERSE_USER = [{"role": "user", "content": [{"text": "How many X-91 are left?"}]}]
SPEC = {"toolSpec": {"name": "check_stock", "description": "Stock level for a SKU", "inputSchema": {
    "json": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}}


def config(sim_url: str) -> dict:
    providers = {
        "openai": {"baseurl": sim_url, "apikey": KEYS["openai"], "models": ["gpt-5.4", "gpt-5.4-mini"],
                   "compatibility": {"openai_chat": True, "openai_responses": True}},
        # A second Responses provider under a path prefix, so a stored
        # response's requests must find the right one.
        "azure": {"baseurl": sim_url + "/azure", "apikey": KEYS["azure"], "models": ["gpt-5.4-azure"],
                  "compatibility": {"openai_responses": True}},
        "gemini": {"baseurl": sim_url, "apikey": KEYS["gemini"], "authorization": "x-goog-api-key",
                   "models": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-secret"],
                   "compatibility": {"gemini": True}},
        "vertex": {"baseurl": sim_url, "apikey": KEYS["vertex"], "vertex_project": PROJECT,
                   "vertex_region": REGION, "compatibility": {"vertex": True},
                   "models": ["gemini-2.5-pro", "claude-sonnet-4-6", "claude-sonnet-4-5@20250929"]},
        "bedrock": {"baseurl": sim_url, "apikey": KEYS["bedrock"], "compatibility": {"bedrock": True},
                    "models": [BEDROCK_MODEL, PROFILE_ARN, "amazon.nova-pro-v1:0", "anthropic.secret-v1:0"]},
    }
    grants = [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [
        {"role": "user"}, {"models": ["openai/**", "azure/**", "gemini/gemini-2.5-*", "vertex/**",
                                        "bedrock/*.claude-sonnet-*", "bedrock/amazon.*", "bedrock/arn:**"]}]}}]
    return provider_config(sim_url, providers=providers, grants=grants)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, simulator):
    tmp = tmp_path_factory.mktemp("formats")
    gateway = launch_gateway(tmp, config(simulator.url), "--workers", "2",
                             identity="serve-headers")
    wait_for(lambda: gateway.log().count("listening on") >= 2)
    yield gateway
    gateway.stop()




def gpt(gw, user: str) -> openai.OpenAI:
    return keep(openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_SECRET, max_retries=0,
                              timeout=15, default_headers={LOGIN: user}))


def gemini(gw, user: str) -> genai.Client:
    return keep(genai.Client(api_key=CLIENT_SECRET, http_options={
        "base_url": gw.url, "timeout": 15_000, "headers": {LOGIN: user}}))


def vertex_gemini(gw, user: str) -> genai.Client:
    return keep(genai.Client(vertexai=True, project="_aperture_auto_vertex_project_id_",
                             location="_aperture_auto_vertex_region_",
                             credentials=Credentials(CLIENT_SECRET),
                             http_options={"base_url": gw.url, "timeout": 15_000,
                                           "headers": {LOGIN: user}}))


def vertex_claude(gw, user: str) -> anthropic.AnthropicVertex:
    return keep(anthropic.AnthropicVertex(
        base_url=gw.url + "/v1", project_id="_aperture_auto_vertex_project_id_",
        region="_aperture_auto_vertex_region_", access_token=CLIENT_SECRET, max_retries=0,
        timeout=15, default_headers={LOGIN: user}))


def bedrock(gw, user: str):
    """boto3's bedrock-runtime with dummy AWS credentials (aperture removes the
    SigV4 signature and sends its Bedrock API key), pointed at /bedrock."""
    client = boto3.client("bedrock-runtime", endpoint_url=gw.url + "/bedrock", region_name="us-east-1",
                          aws_access_key_id=CLIENT_SECRET, aws_secret_access_key="x",
                          config=Config(retries={"total_max_attempts": 1}, read_timeout=15))

    def mark(request, **kw):
        request.headers[LOGIN] = user
        request.headers["x-test-user"] = user

    client.meta.events.register("before-sign.bedrock-runtime.*", mark)
    return keep(client)


def claude_bedrock(gw, user: str) -> anthropic.AnthropicBedrock:
    return keep(anthropic.AnthropicBedrock(
        base_url=gw.url + "/bedrock", aws_region="us-east-1", aws_access_key=CLIENT_SECRET,
        aws_secret_key="x", max_retries=0, timeout=15,
        default_headers={LOGIN: user, "x-test-user": user}))


def seen_for(simulator, user: str):
    """The requests of `user` that reached the simulator (the identity header
    is not forwarded, so they are told apart by the test's marker header)."""
    return [s for s in simulator.sim.seen if s.headers.get("x-test-user") == user]


def recorded(api: str, usage: dict) -> dict:
    """A provider's usage object as aperture records it: input is input not
    served from cache, output includes reasoning."""
    if api == "openai_responses":
        details = usage.get("input_tokens_details") or {}
        cached, written = details.get("cached_tokens", 0), details.get("cache_write_tokens", 0)
        return {"input_tokens": usage["input_tokens"] - cached - written,
                "output_tokens": usage["output_tokens"], "cache_read_tokens": cached,
                "cache_write_tokens": written,
                "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)}
    if api == "gemini":
        cached = usage.get("cachedContentTokenCount", 0)
        thoughts = usage.get("thoughtsTokenCount", 0)
        return {"input_tokens": usage["promptTokenCount"] - cached + usage.get("toolUsePromptTokenCount", 0),
                "output_tokens": usage.get("candidatesTokenCount", 0) + thoughts,
                "cache_read_tokens": cached, "cache_write_tokens": 0, "reasoning_tokens": thoughts}
    assert api == "anthropic"
    return {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
            "cache_read_tokens": usage["cache_read_input_tokens"],
            "cache_write_tokens": usage["cache_creation_input_tokens"], "reasoning_tokens": 0}


def assert_no_client_secret(gw, row: dict) -> None:
    capture = get_capture(gw.data_dir, row["id"])
    text = json.dumps([capture["request_headers"], capture["response_headers"], capture["path"]])
    assert CLIENT_SECRET not in text
    assert CLIENT_SECRET not in gw.log()


def store_bytes(gw) -> bytes:
    with open(env_path(str(gw.data_dir)) + "/data.mdb", "rb") as f:
        return f.read()


# -- OpenAI Responses ------------------------------------------------------------------


def test_responses_create_and_stream(gw, simulator):
    user = new_user("responses")
    client = gpt(gw, user)
    request = {"model": "gpt-5.4", "input": "How many X-91 are left?", "prompt_cache_key": "t1",
               "reasoning": {"effort": "low"}}
    response = client.responses.create(**request, extra_headers={"x-test-user": user})
    assert response.output_text == answer_text(6)
    events = list(client.responses.create(model="gpt-5.4-mini", input="Say something.", stream=True,
                                          extra_headers={"x-test-user": user}))
    assert events[-1].type == "response.completed"
    first, second = seen_for(simulator, user)
    assert first.headers["authorization"] == "Bearer " + KEYS["openai"]
    assert (first.method, first.path) == ("POST", "/v1/responses")
    streamed, plain = wait_records(gw.data_dir, 2, user=user)
    assert plain["api"] == streamed["api"] == "openai_responses"
    assert (plain["provider"], plain["model"], plain["stream"], plain["state"]) == (
        "openai", "gpt-5.4", False, "complete")
    assert tokens(plain) == recorded("openai_responses", expected_usage("openai_responses", request))
    assert plain["cache_read_tokens"] > 0 and plain["reasoning_tokens"] > 0
    assert (streamed["model"], streamed["stream"], streamed["state"]) == ("gpt-5.4-mini", True, "complete")
    assert tokens(streamed) == recorded("openai_responses", expected_usage(
        "openai_responses", json.loads(second.body)))
    assert_no_client_secret(gw, plain)


def test_responses_stream_helper_with_a_function_tool(gw):
    user = new_user("responses-tool")
    with gpt(gw, user).responses.stream(model="gpt-5.4", input="Use the tool for X-91",
                                        tools=[FUNCTION]) as stream:
        final = stream.get_final_response()
    [call] = [item for item in final.output if item.type == "function_call"]
    assert call.name == "check_stock"
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["tool_calls"] == [{"name": "check_stock", "arguments": call.arguments}]
    assert row["output_tokens"] == final.usage.output_tokens > 0


def test_a_stored_response_is_reached_through_its_provider(gw, simulator):
    user = new_user("stored")
    client = gpt(gw, user)
    made = client.responses.create(model="gpt-5.4-azure", input="Remember this.",
                                   extra_headers={"x-test-user": user})
    again = client.responses.retrieve(made.id, extra_headers={"x-test-user": user})
    assert again.id == made.id and again.output_text == made.output_text
    items = client.responses.input_items.list(made.id, extra_headers={"x-test-user": user})
    assert items.data[0].content[0].text == "Remember this."
    # The other provider never saw them: each went to azure, with azure's key.
    paths = [(s.method, s.path, s.headers["authorization"]) for s in seen_for(simulator, user)]
    assert paths == [("POST", "/azure/v1/responses", "Bearer " + KEYS["azure"]),
                     ("GET", "/azure/v1/responses/" + made.id, "Bearer " + KEYS["azure"]),
                     ("GET", "/azure/v1/responses/%s/input_items" % made.id, "Bearer " + KEYS["azure"])]
    # A follow-up with previous_response_id joins the session of the first request.
    client.responses.create(model="gpt-5.4-azure", input="And now?", previous_response_id=made.id)
    rows = wait_records(gw.data_dir, 4, user=user)
    assert [(r["method"], r["provider"], r["model"]) for r in reversed(rows)] == [
        ("POST", "azure", "gpt-5.4-azure"), ("GET", "azure", "gpt-5.4-azure"),
        ("GET", "azure", "gpt-5.4-azure"), ("POST", "azure", "gpt-5.4-azure")]
    assert all(tokens(r) == dict.fromkeys(tokens(r), 0) for r in rows[1:3])  # not metered twice
    assert rows[0]["session"] == rows[3]["session"]
    # Another user gets the answer of an unknown id.
    with pytest.raises(openai.NotFoundError, match="response %s not found" % made.id):
        gpt(gw, new_user("other")).responses.retrieve(made.id)
    client.responses.delete(made.id, extra_headers={"x-test-user": user})
    last = seen_for(simulator, user)[-1]
    assert (last.method, last.path) == ("DELETE", "/azure/v1/responses/" + made.id)


def test_a_stored_response_survives_a_restart(tmp_path, simulator):
    """Another gateway process on the same data finds the provider in the
    capture store's index."""
    user = new_user("restart")
    first = launch_gateway(tmp_path, config(simulator.url), identity="serve-headers")
    made = gpt(first, user).responses.create(model="gpt-5.4-azure", input="Keep me.")
    wait_records(first.data_dir, 1, user=user)
    assert first.stop() == 0
    second = launch_gateway(tmp_path, config(simulator.url), identity="serve-headers")
    try:
        assert gpt(second, user).responses.retrieve(made.id).id == made.id
        assert simulator.sim.seen[-1].path == "/azure/v1/responses/" + made.id
    finally:
        second.stop()


def test_an_unknown_response_id_is_a_clear_404(gw):
    with pytest.raises(openai.NotFoundError, match="no record of the provider that made it, and 2 "
                                                   "providers serve the openai_responses API format"):
        gpt(gw, new_user("unknown")).responses.retrieve("resp_never_made")


# -- Gemini API --------------------------------------------------------------------------


def test_gemini_generate_and_stream(gw, simulator):
    user = new_user("gemini")
    client = gemini(gw, user)
    headers = {"headers": {"x-test-user": user}}
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=256),
                                         http_options=headers)
    response = client.models.generate_content(model="gemini-2.5-pro", contents="How many are left?",
                                              config=config)
    assert response.text == answer_text(12)
    chunks = list(client.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Hello there", config=types.GenerateContentConfig(
            http_options=headers)))
    assert [c.text for c in chunks] == answer_words(12)
    first, second = seen_for(simulator, user)
    assert first.headers["x-goog-api-key"] == KEYS["gemini"]
    assert first.path == "/v1/models/gemini-2.5-pro:generateContent"
    assert second.path == "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    streamed, plain = wait_records(gw.data_dir, 2, user=user)
    assert (plain["api"], plain["provider"], plain["model"], plain["stream"]) == (
        "gemini_generate_content", "gemini", "gemini-2.5-pro", False)
    usage = expected_usage("gemini", json.loads(first.body))
    assert usage["thoughtsTokenCount"] > 0
    assert tokens(plain) == recorded("gemini", usage)
    # A stream's usage is cumulative: the last one counts, not the sum.
    assert (streamed["model"], streamed["stream"], streamed["state"]) == ("gemini-2.5-flash", True, "complete")
    assert tokens(streamed) == recorded("gemini", expected_usage("gemini", json.loads(second.body)))
    assert_no_client_secret(gw, plain)


def test_gemini_function_call(gw):
    user = new_user("gemini-tool")
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[STOCK])],
                                         automatic_function_calling=NO_AUTO_CALLS)
    response = gemini(gw, user).models.generate_content(
        model="gemini-2.5-pro", contents="Use the tool for X-91", config=config)
    assert response.function_calls[0].name == "check_stock"
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["tool_calls"] == [{"name": "check_stock", "arguments": '{"sku":"x"}'}]


def test_gemini_json_array_stream_is_relayed_and_metered(gw, simulator):
    """Without alt=sse the answer is one JSON array, metered element by element."""
    user = new_user("array")
    body = {"contents": [{"role": "user", "parts": [{"text": "stream it as an array"}]}]}
    resp = post(gw.port, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", body,
                {LOGIN: user, "x-sim-token-rate": "200", "x-test-user": user})
    assert resp.status == 200 and resp.complete
    elements = json.loads(resp.body)
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in elements) == answer_text(12)
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert (row["stream"], row["state"]) == (True, "complete")
    assert tokens(row) == recorded("gemini", elements[-1]["usageMetadata"])
    assert get_capture(gw.data_dir, row["id"])["response_body"] == resp.body


def test_gemini_provider_prefix_in_the_path_and_key_query(gw, simulator):
    user = new_user("prefix")
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    for path in ("/v1beta/models/gemini/gemini-2.5-pro:generateContent",
                 "/v1beta/models/gemini%2Fgemini-2.5-pro:generateContent"):
        resp = post(gw.port, path + "?key=" + CLIENT_SECRET + "&alt=json", body,
                    {LOGIN: user, "x-test-user": user})
        assert resp.status == 200, resp.body
    for seen in seen_for(simulator, user):
        assert seen.path == "/v1beta/models/gemini-2.5-pro:generateContent?alt=json"
        assert seen.headers["x-goog-api-key"] == KEYS["gemini"]
    rows = wait_records(gw.data_dir, 2, user=user)
    assert {r["path"] for r in rows} == {
        "/v1beta/models/gemini/gemini-2.5-pro:generateContent?key=[removed]&alt=json",
        "/v1beta/models/gemini%2Fgemini-2.5-pro:generateContent?key=[removed]&alt=json"}
    assert {r["model"] for r in rows} == {"gemini-2.5-pro"}
    for row in rows:
        assert_no_client_secret(gw, row)
    assert CLIENT_SECRET.encode() not in store_bytes(gw)


def test_gemini_count_tokens_and_embeddings_pass_through(gw):
    user = new_user("count")
    client = gemini(gw, user)
    counted = client.models.count_tokens(model="gemini-2.5-flash", contents="four words right here")
    assert counted.total_tokens == 5
    embedded = client.models.embed_content(model="gemini-2.5-flash", contents="embed me")
    assert embedded.embeddings[0].values
    rows = wait_records(gw.data_dir, 2, user=user)
    assert [r["path"] for r in rows] == ["/v1/models/gemini-2.5-flash:batchEmbedContents",
                                         "/v1/models/gemini-2.5-flash:countTokens"]
    assert all(r["state"] == "complete" and not any(tokens(r).values()) for r in rows)


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1beta/models/gemini-nope:generateContent", b'{"contents":[]}', 404, "model gemini-nope not found"),
    ("/v1beta/models/gemini-secret:generateContent", b'{"contents":[]}', 403,
     "access denied: model gemini/gemini-secret not granted"),
    ("/v1beta/models/gemini-2.5-pro:generateContent", b'{"contents":[', 400,
     "request body is not valid JSON: unexpected end of body at byte 13"),
    ("/v1beta/models/gemini-2.5-pro:generateContent", b'{"contents":[]} {}', 400,
     "unexpected data after the object at byte 16"),
    ("/v1beta/models/:generateContent", b'{}', 400, "the model in the path is empty"),
    ("/v1beta/models/gem%zz:generateContent", b'{}', 400, "the model in the path is not decodable"),
    ("/v1beta/models/gemini-2.5-pro:teleport", b'{}', 404, "no route for POST"),
])
def test_gemini_bad_input_in_googles_shape(gw, simulator, path, body, status, message):
    user = new_user("gemini-bad")
    before = len(simulator.sim.seen)
    resp = post(gw.port, path, body, {LOGIN: user})
    assert resp.status == status
    error = resp.json()["error"]
    assert error["code"] == status and message in error["message"] and error["status"]
    assert len(simulator.sim.seen) == before  # nothing reached a provider
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert (row["state"], row["status"]) == ("refused", status)


def test_gemini_stream_errors(gw):
    """An error element in the JSON array is the provider's error; Google's
    error lines in an SSE stream are not SSE events, so that stream only shows
    as cut short."""
    user = new_user("gemini-err")
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    resp = post(gw.port, "/v1beta/models/gemini-2.5-pro:streamGenerateContent", body,
                {LOGIN: user, "x-sim-error": "error-event"})
    assert resp.status == 200 and "error" in json.loads(resp.body)[-1]
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "upstream_error" and row["error"].startswith("UNAVAILABLE: ")
    resp = post(gw.port, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", body,
                {LOGIN: user, "x-sim-error": "error-event"})
    assert resp.status == 200
    row = wait_records(gw.data_dir, 2, user=user)[0]
    assert (row["state"], row["error"]) == ("incomplete", "stream ended without its final event")
    assert row["output_tokens"] > 0  # what was counted before the error


# -- Vertex AI ----------------------------------------------------------------------------


def test_vertex_gemini_with_placeholders(gw, simulator):
    user = new_user("vertex-gemini")
    client = vertex_gemini(gw, user)
    response = client.models.generate_content(
        model="gemini-2.5-pro", contents="Hello Vertex",
        config=types.GenerateContentConfig(http_options={"headers": {"x-test-user": user}}))
    assert response.text == answer_text(12)
    [seen] = seen_for(simulator, user)
    assert seen.path == ("/v1beta1/projects/%s/locations/%s/publishers/google/models/"
                         "gemini-2.5-pro:generateContent" % (PROJECT, REGION))
    assert seen.headers["authorization"] == "Bearer " + KEYS["vertex"]
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert (row["api"], row["provider"], row["model"]) == ("google_generate_content", "vertex",
                                                           "gemini-2.5-pro")
    assert tokens(row) == recorded("gemini", expected_usage("vertex_gemini", json.loads(seen.body)))
    assert_no_client_secret(gw, row)


def test_claude_on_vertex_create_stream_and_count(gw, simulator):
    user = new_user("vertex-claude")
    client = vertex_claude(gw, user)
    marker = {"x-test-user": user}
    msg = client.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=64, extra_headers=marker,
                                 messages=[{"role": "user", "content": "Hello Claude on Vertex"}])
    assert msg.content[0].text == answer_text(12)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=64, extra_headers=marker,
                                messages=[{"role": "user", "content": "Stream it"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == answer_text(12)
    counted = client.messages.count_tokens(model="claude-sonnet-4-6", extra_headers=marker,
                                           messages=[{"role": "user", "content": "count these words"}])
    created, streamed, count = seen_for(simulator, user)
    assert counted.input_tokens == expected_usage("anthropic", json.loads(count.body))["input_tokens"]
    base = "/v1/projects/%s/locations/%s/publishers/anthropic/models/" % (PROJECT, REGION)
    assert created.path == base + "claude-sonnet-4-5@20250929:rawPredict"
    assert streamed.path == base + "claude-sonnet-4-6:streamRawPredict"
    assert count.path == base + "count-tokens:rawPredict"
    assert created.headers["authorization"] == "Bearer " + KEYS["vertex"]
    rows = wait_records(gw.data_dir, 3, user=user)
    by_path = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    plain = by_path["claude-sonnet-4-5@20250929:rawPredict"]
    assert (plain["api"], plain["model"], plain["stream"]) == ("google_raw_predict",
                                                               "claude-sonnet-4-5@20250929", False)
    assert tokens(plain) == recorded("anthropic", expected_usage("vertex_anthropic", json.loads(created.body)))
    stream_row = by_path["claude-sonnet-4-6:streamRawPredict"]
    assert (stream_row["stream"], stream_row["state"]) == (True, "complete")
    assert tokens(stream_row) == recorded("anthropic", expected_usage("vertex_anthropic",
                                                                      json.loads(streamed.body)))
    assert by_path["count-tokens:rawPredict"]["model"] == "claude-sonnet-4-6"


def test_claude_on_vertex_errors_are_anthropics(gw):
    user = new_user("vertex-bad")
    with pytest.raises(anthropic.NotFoundError) as e:
        vertex_claude(gw, user).messages.create(model="claude-unknown", max_tokens=8,
                                                messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["error"] == {"type": "not_found_error", "message": "model claude-unknown not "
                                     "found (GET /v1/models lists the models you may use)"}
    with pytest.raises(genai_errors.ClientError) as g:
        vertex_gemini(gw, user).models.generate_content(model="gemini-unknown", contents="hi")
    assert g.value.code == 404 and g.value.status == "NOT_FOUND"


# -- Bedrock --------------------------------------------------------------------------------


def test_bedrock_invoke_model_with_an_arn(gw, simulator):
    user = new_user("invoke")
    response = bedrock(gw, user).invoke_model(modelId=PROFILE_ARN, body=json.dumps(INVOKE))
    message = json.loads(response["body"].read())
    assert message["content"] == [{"type": "text", "text": answer_text(12)}]
    [seen] = seen_for(simulator, user)
    # The /bedrock prefix goes; the ARN's "/" stays "%2F", as boto3 encoded it.
    assert seen.path == "/model/%s/invoke" % PROFILE_ARN.replace(":", "%3A").replace("/", "%2F")
    assert seen.headers["authorization"] == "Bearer " + KEYS["bedrock"]
    assert not {"x-amz-date", "x-amz-security-token", "x-amz-content-sha256"} & seen.headers.keys()
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert (row["api"], row["provider"], row["model"], row["stream"]) == (
        "bedrock_model_invoke", "bedrock", PROFILE_ARN, False)
    assert tokens(row) == recorded("anthropic", expected_usage("bedrock_invoke", INVOKE))
    assert_no_client_secret(gw, row)


def test_bedrock_invoke_stream_is_relayed_untouched_and_metered(gw, simulator):
    user = new_user("invoke-stream")
    body = dict(INVOKE, system=[{"type": "text", "text": "Cached.", "cache_control": {"type": "ephemeral"}}])
    response = bedrock(gw, user).invoke_model_with_response_stream(modelId=BEDROCK_MODEL,
                                                                    body=json.dumps(body))
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    events = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == answer_text(12)
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert (row["stream"], row["state"]) == (True, "complete")
    usage = expected_usage("bedrock_invoke", body)
    assert usage["cache_read_input_tokens"] > 0 and tokens(row) == recorded("anthropic", usage)


def test_bedrock_converse_and_stream_with_tools(gw, simulator):
    user = new_user("converse")
    client = bedrock(gw, user)
    request = {"messages": [{"role": "user", "content": [{"text": "Use the tool for X-91."}]}],
               "toolConfig": {"tools": [SPEC]}}
    response = client.converse(modelId="amazon.nova-pro-v1:0", **request)
    use = response["output"]["message"]["content"][0]["toolUse"]
    streamed = list(client.converse_stream(modelId="amazon.nova-pro-v1:0", messages=CONVERSE_USER)["stream"])
    assert "metadata" in streamed[-1]
    plain_seen, stream_seen = seen_for(simulator, user)
    assert plain_seen.path == "/model/amazon.nova-pro-v1%3A0/converse"
    streamed_row, plain = wait_records(gw.data_dir, 2, user=user)
    assert (plain["api"], plain["model"]) == ("bedrock_converse", "amazon.nova-pro-v1:0")
    assert plain["tool_calls"] == [{"name": "check_stock", "arguments": json.dumps(use["input"],
                                                                                   separators=(",", ":"))}]
    def converse_tokens(u):
        return {"input_tokens": u["inputTokens"], "output_tokens": u["outputTokens"],
                "cache_read_tokens": u.get("cacheReadInputTokens", 0),
                "cache_write_tokens": u.get("cacheWriteInputTokens", 0), "reasoning_tokens": 0}
    assert tokens(plain) == converse_tokens(response["usage"])
    assert (streamed_row["stream"], streamed_row["state"]) == (True, "complete")
    assert tokens(streamed_row) == converse_tokens(expected_usage("bedrock_converse",
                                                                  json.loads(stream_seen.body)))
    counted = client.count_tokens(modelId=BEDROCK_MODEL, input={"converse": {"messages": CONVERSE_USER}})
    assert counted["inputTokens"] > 0
    assert wait_records(gw.data_dir, 3, user=user)[0]["path"].endswith("/count-tokens")


def test_anthropic_bedrock_create_and_stream(gw, simulator):
    user = new_user("anthropic-bedrock")
    client = claude_bedrock(gw, user)
    message = client.messages.create(model=BEDROCK_MODEL, max_tokens=64, messages=INVOKE["messages"],
                                     extra_headers={"anthropic-beta": "beta-one"})
    assert message.content[0].text == answer_text(12)
    with client.messages.stream(model=BEDROCK_MODEL, max_tokens=64, messages=[
            {"role": "user", "content": "Use the tool for X-91."}],
            tools=[{"name": "check_stock", "input_schema": SPEC["toolSpec"]["inputSchema"]["json"]}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].name == "check_stock"
    created, streamed = seen_for(simulator, user)
    assert json.loads(created.body)["anthropic_beta"] == ["beta-one"]  # the body goes as it came
    assert streamed.path == "/model/%s/invoke-with-response-stream" % BEDROCK_MODEL  # ":" as sent
    streamed_row, plain = wait_records(gw.data_dir, 2, user=user)
    assert tokens(plain) == recorded("anthropic", expected_usage("bedrock_invoke", json.loads(created.body)))
    assert streamed_row["tool_calls"] == [{"name": "check_stock", "arguments": '{"sku": "x"}'}]
    assert streamed_row["output_tokens"] == final.usage.output_tokens


def test_bedrock_stream_exception_is_an_upstream_error(gw):
    user = new_user("bedrock-exc")
    client = bedrock(gw, user)
    client.meta.events.register("before-sign.bedrock-runtime.*",
                                lambda request, **kw: request.headers.__setitem__("x-sim-error", "error-event"))
    events = client.converse_stream(modelId="amazon.nova-pro-v1:0", messages=CONVERSE_USER)["stream"]
    with pytest.raises(botocore.exceptions.EventStreamError):
        list(events)
    events.close()
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "upstream_error"
    assert row["error"].startswith("modelStreamErrorException: ")


@pytest.mark.parametrize("model, body, exception, status, message", [
    ("anthropic.unknown-v1:0", INVOKE, "ResourceNotFoundException", 404, "model anthropic.unknown-v1:0 not found"),
    ("anthropic.secret-v1:0", INVOKE, "AccessDeniedException", 403,
     "access denied: model bedrock/anthropic.secret-v1:0 not granted"),
    (BEDROCK_MODEL, "{", "ValidationException", 400, "request body is not valid JSON"),
])
def test_bedrock_bad_input_in_bedrocks_shape(gw, simulator, model, body, exception, status, message):
    user = new_user("bedrock-bad")
    before = len(simulator.sim.seen)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        bedrock(gw, user).invoke_model(modelId=model, body=body if isinstance(body, str) else json.dumps(body))
    assert err.value.response["Error"]["Code"] == exception
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert message in err.value.response["Error"]["Message"]
    assert len(simulator.sim.seen) == before
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert (row["state"], row["status"], row["api"]) == ("refused", status, "bedrock_model_invoke")


@pytest.mark.parametrize("path, shape", [
    ("/bedrock/model/amazon.nova-pro-v1:0/converse", "bedrock"),
    ("/v1beta/models/gemini-2.5-pro:generateContent", "google"),
    (AUTO + "/publishers/anthropic/models/claude-sonnet-4-6:rawPredict", "anthropic"),
    ("/v1/responses", "openai"),
])
def test_a_body_over_the_limit_is_413_in_the_callers_shape(gw, path, shape):
    """Announced larger than --max-body-size (32 MiB): refused before any byte is read."""
    user = new_user("too-large")
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(("POST %s HTTP/1.1\r\nHost: ai\r\n%s: %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n{" % (path, LOGIN, user, 40 << 20)).encode())
        resp = read_response(s)
    assert resp.status == 413
    body = resp.json()
    message = body["message"] if shape == "bedrock" else body["error"]["message"]
    assert message == "request body of %d bytes exceeds the limit of %d bytes" % (40 << 20, 32 << 20)
    if shape == "bedrock":
        assert resp.header("x-amzn-errortype") == "ValidationException"
    elif shape == "google":
        assert body["error"]["status"] == "INVALID_ARGUMENT"
    elif shape == "anthropic":
        assert body["error"]["type"] == "request_too_large"
    else:
        assert body["error"]["type"] == "invalid_request_error"
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert (row["state"], row["status"]) == ("refused", 413)
