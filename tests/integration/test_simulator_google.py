"""The simulator's Gemini API and Vertex AI over real sockets, driven by the
official `google-genai` SDK (Gemini API and vertexai=True) and
`anthropic.AnthropicVertex`; raw sockets for the JSON-array stream bytes,
`?key=` credentials and faults."""

from __future__ import annotations

import json
import socket

import anthropic
import httpx2
import orjson
import pytest
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from aperture.sim import anthropic as sim_anthropic
from aperture.sim import expected_usage, gemini
from aperture.sim.common import answer_text, answer_words, tool_call_tokens

from .conftest import SimHandle, dechunk, keep, serve_simulator

STOCK = types.FunctionDeclaration(
    name="check_stock", description="Stock level for a SKU",
    parameters=types.Schema(type="OBJECT", properties={"sku": types.Schema(type="STRING")}, required=["sku"]))
NO_AUTO_CALLS = types.AutomaticFunctionCallingConfig(disable=True)
PROJECT, REGION = "proj-1", "us-east5"
CLAUDE = "claude-sonnet-4-5@20250929"
USER = [{"role": "user", "content": "How many X-91 are left?"}]


@pytest.fixture(scope="module")
def sim(loop_thread):
    with serve_simulator(loop_thread) as sim:
        yield sim


@pytest.fixture(scope="module")
def keyed(loop_thread):
    with serve_simulator(loop_thread, require_key="gk-right") as sim:
        yield sim




def client(sim: SimHandle, key: str = "gk-test", **options) -> genai.Client:
    """A Gemini API client, kept until the test ends (a dropped genai.Client
    closes its connection pool under the calls still using it)."""
    return keep(genai.Client(api_key=key, http_options={"base_url": sim.url, "timeout": 10_000,
                                                            **options}))


def vertex_client(sim: SimHandle, project: str = PROJECT, **options) -> genai.Client:
    return keep(genai.Client(vertexai=True, project=project, location=REGION,
                                 credentials=Credentials("ya29.token"),
                                 http_options={"base_url": sim.url, "timeout": 10_000, **options}))


def claude(sim: SimHandle, project: str = PROJECT, region: str = REGION, **kw) -> anthropic.AnthropicVertex:
    kw.setdefault("timeout", 10.0)
    return keep(anthropic.AnthropicVertex(base_url=sim.url + "/v1", project_id=project, region=region,
                                              access_token="ya29.token", max_retries=0, **kw))


def sent(sim: SimHandle) -> dict:
    """The JSON body of the last request the simulator saw."""
    return json.loads(sim.sim.seen[-1].body)


def usage(metadata) -> dict:
    """The SDK's usage metadata in the wire's spelling."""
    dumped = metadata.model_dump(mode="json", exclude_none=True)
    return {"".join(w.capitalize() if i else w for i, w in enumerate(key.split("_"))): value
            for key, value in dumped.items()} | {
        "promptTokensDetails": [{"modality": d["modality"], "tokenCount": d["token_count"]}
                                for d in dumped.get("prompt_tokens_details", [])]}


# -- Gemini API ----------------------------------------------------------------------


def test_generate_content(sim):
    config = types.GenerateContentConfig(system_instruction="Be brief.",
                                         thinking_config=types.ThinkingConfig(thinking_budget=256))
    response = client(sim).models.generate_content(model="gemini-2.5-flash", contents="How many are left?",
                                                   config=config)
    assert response.text == answer_text(12)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    seen = sim.sim.seen[-1]
    assert seen.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == "gk-test"
    expected = expected_usage("gemini", sent(sim))
    assert expected["thoughtsTokenCount"] == 6 and usage(response.usage_metadata) == expected


def test_generate_content_stream(sim):
    chunks = list(client(sim).models.generate_content_stream(model="gemini-2.5-flash", contents="Hello there"))
    assert [c.text for c in chunks] == answer_words(12)
    assert sim.sim.seen[-1].path == "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert [c.usage_metadata.candidates_token_count for c in chunks] == list(range(1, 13))
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert usage(chunks[-1].usage_metadata) == expected_usage("gemini", sent(sim))


def test_function_call(sim):
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[STOCK])],
                                         automatic_function_calling=NO_AUTO_CALLS)
    response = client(sim).models.generate_content(model="gemini-2.5-pro", contents="Use the tool for X-91",
                                                   config=config)
    call = response.function_calls[0]
    assert (call.name, call.args) == ("check_stock", {"sku": "x"})
    assert response.usage_metadata.candidates_token_count == tool_call_tokens({"sku": "x"})
    assert usage(response.usage_metadata) == expected_usage("gemini", sent(sim))
    streamed = list(client(sim).models.generate_content_stream(
        model="gemini-2.5-pro", contents="Use the tool", config=config))
    assert [c.function_calls[0].name for c in streamed] == ["check_stock"]


def test_count_tokens_embeddings_and_models(sim):
    c = client(sim)
    counted = c.models.count_tokens(model="gemini-2.5-flash", contents="four words right here")
    assert counted.total_tokens == expected_usage("gemini", sent(sim))["promptTokenCount"] == 5
    embedded = c.models.embed_content(model="gemini-embedding-001", contents=["one two", "three"],
                                      config=types.EmbedContentConfig(output_dimensionality=4))
    assert sim.sim.seen[-1].path.endswith(":batchEmbedContents")
    assert [len(e.values) for e in embedded.embeddings] == [4, 4]
    assert embedded.usage_metadata.prompt_token_count == 2 + 1 + 2  # "user" is a word of each content
    assert "models/gemini-2.5-flash" in [m.name for m in c.models.list()]
    assert c.models.get(model="gemini-2.5-pro").display_name == "Gemini 2.5 Pro"


def test_v1beta_query_key_and_the_json_array_stream(keyed):
    """The raw spelling (`?key=`, v1beta, no alt=sse): one JSON array, an element per write when paced."""
    body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()
    head, chunks, complete = raw_chunks(keyed.port, post(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=gk-right", body,
        b"x-sim-token-rate: 1000\r\nx-sim-tokens: 3\r\n"))
    assert head.startswith(b"HTTP/1.1 200 ") and complete
    assert b"content-type: application/json; charset=UTF-8\r\n" in head
    plan = gemini.plan(json.loads(body), 3, "gemini-2.5-flash")
    elements = gemini.chunks(plan, 1)
    assert chunks[0].startswith(b"[{") and chunks[-1].endswith(b"]")
    assert b"".join(chunks) == (b"[" + orjson.dumps(elements[0]) + b",\r\n" + orjson.dumps(elements[1])
                                + b",\r\n" + orjson.dumps(elements[2]) + b"]")
    assert len(chunks) >= 3 and chunks[1] == b",\r\n" + orjson.dumps(elements[1])
    assert json.loads(b"".join(chunks))[-1]["usageMetadata"] == expected_usage("gemini", json.loads(body), 3)
    sse_head, sse_body = raw_exchange(keyed.port, post(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=gk-right", body))
    assert b"content-type: text/event-stream\r\n" in sse_head
    assert sse_body.startswith(b"data: {") and sse_body.endswith(b"}\r\n\r\n") and sse_body.count(b"\r\n\r\n") == 12


def test_require_key_takes_the_query_or_the_header(keyed):
    body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()
    head, data = raw_exchange(keyed.port, post("/v1beta/models/m:generateContent?key=gk-wrong", body))
    error = json.loads(data)["error"]
    assert head.startswith(b"HTTP/1.1 400 ") and error["details"][0]["reason"] == "API_KEY_INVALID"
    assert b"gk-wrong" not in data
    assert client(keyed, key="gk-right").models.generate_content(model="m", contents="hi").text
    with pytest.raises(errors.ClientError) as err:
        client(keyed, key="gk-wrong").models.generate_content(model="m", contents="hi")
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"


# -- Gemini on Vertex -------------------------------------------------------------------


def test_vertex_gemini(sim):
    c = vertex_client(sim)
    response = c.models.generate_content(model="gemini-2.5-flash", contents="Hello there")
    seen = sim.sim.seen[-1]
    assert seen.path == ("/v1beta1/projects/%s/locations/%s/publishers/google/models/gemini-2.5-flash:"
                         "generateContent" % (PROJECT, REGION))
    assert seen.headers["authorization"] == "Bearer ya29.token"
    assert response.text == answer_text(12)
    assert usage(response.usage_metadata) == expected_usage("vertex_gemini", sent(sim))
    assert response.usage_metadata.traffic_type == types.TrafficType.ON_DEMAND
    chunks = list(c.models.generate_content_stream(model="gemini-2.5-flash", contents="Hello there"))
    assert "".join(ch.text for ch in chunks) == answer_text(12)
    assert usage(chunks[-1].usage_metadata) == expected_usage("vertex_gemini", sent(sim))
    counted = c.models.count_tokens(model="gemini-2.5-flash", contents="Hello there",
                                    config=types.CountTokensConfig(system_instruction="Be brief."))
    assert counted.total_tokens == expected_usage("vertex_gemini", sent(sim))["promptTokenCount"]


def test_vertex_refuses_the_placeholder_project(sim):
    c = vertex_client(sim, project="_aperture_auto_vertex_project_id_")
    with pytest.raises(errors.ClientError) as err:
        c.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert err.value.code == 403 and err.value.status == "PERMISSION_DENIED"
    assert "_aperture_auto_vertex_project_id_" in err.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as cerr:
        claude(sim, region="_aperture_auto_vertex_region_").messages.create(model=CLAUDE, max_tokens=8,
                                                                            messages=USER)
    assert cerr.value.body["error"]["status"] == "PERMISSION_DENIED"


# -- Claude on Vertex -------------------------------------------------------------------


def test_claude_create_and_count(sim):
    c = claude(sim)
    message = c.messages.create(model=CLAUDE, max_tokens=256, system="You are terse.", messages=USER)
    seen = sim.sim.seen[-1]
    assert seen.path == ("/v1/projects/%s/locations/%s/publishers/anthropic/models/%s:rawPredict"
                         % (PROJECT, REGION, CLAUDE))
    body = sent(sim)
    assert "model" not in body and body["anthropic_version"]
    assert message.model == CLAUDE and message.content[0].text == answer_text(12)
    expected = expected_usage("vertex_anthropic", body)
    assert {k: getattr(message.usage, k) for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                                   "cache_creation_input_tokens")} == {
        k: expected[k] for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                 "cache_creation_input_tokens")}
    counted = c.messages.count_tokens(model=CLAUDE, messages=USER)
    assert sim.sim.seen[-1].path.endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert counted.input_tokens == expected_usage("vertex_anthropic", {"messages": USER})["input_tokens"]


def test_claude_stream_is_anthropics_bytes(sim):
    c = claude(sim)
    with c.messages.stream(model=CLAUDE, max_tokens=5, messages=USER,
                           system=[{"type": "text", "text": "Cached instructions here.",
                                    "cache_control": {"type": "ephemeral"}}]) as stream:
        pieces = list(stream.text_stream)
        message = stream.get_final_message()
    assert sim.sim.seen[-1].path.endswith(":streamRawPredict")
    assert pieces == answer_words(5) and message.stop_reason == "max_tokens"
    expected = expected_usage("vertex_anthropic", sent(sim))
    assert expected["cache_read_input_tokens"] > 0
    assert message.usage.cache_read_input_tokens == expected["cache_read_input_tokens"]
    assert message.usage.output_tokens == 5

    body = json.dumps({"anthropic_version": "vertex-2023-10-16", "max_tokens": 8, "stream": True,
                       "messages": USER}).encode()
    path = "/v1/projects/p/locations/l/publishers/anthropic/models/%s:streamRawPredict" % CLAUDE
    head, data = raw_exchange(sim.port, post(path, body))
    seq = int(head.split(b"request-id: req_011Sim")[1][:14])
    plan = sim_anthropic.plan({**json.loads(body), "model": CLAUDE}, 12)
    assert data == sim_anthropic.stream(plan, seq).joined()


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault, status, name", [
    ("429", 429, "RESOURCE_EXHAUSTED"), ("500", 500, "INTERNAL"), ("529", 503, "UNAVAILABLE"),
    ("403", 403, "PERMISSION_DENIED")])
def test_gemini_status_faults(sim, fault, status, name):
    kind = errors.ClientError if status < 500 else errors.ServerError
    with pytest.raises(kind) as err:
        client(sim).models.generate_content(model="gemini-2.5-flash-sim-error-" + fault, contents="x")
    assert (err.value.code, err.value.status) == (status, name)
    with pytest.raises(kind):
        vertex_client(sim, headers={"x-sim-error": fault}).models.generate_content(
            model="gemini-2.5-flash", contents="x")


def test_gemini_error_event(sim):
    c = client(sim, headers={"x-sim-error": "error-event"})
    seen = []
    with pytest.raises(errors.ServerError) as err:
        for chunk in c.models.generate_content_stream(model="gemini-2.5-flash", contents="x"):
            seen.append(chunk.text)
    assert err.value.status == "UNAVAILABLE" and seen == answer_words(6)
    body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()
    head, data = raw_exchange(sim.port, post("/v1beta/models/m-sim-error-error-event:streamGenerateContent",
                                             body))
    elements = json.loads(data)
    assert len(elements) == 7 and elements[-1]["error"]["code"] == 503


def test_gemini_cut_and_stall(sim):
    with pytest.raises(httpx2.RemoteProtocolError):
        list(client(sim).models.generate_content_stream(model="gemini-2.5-flash-sim-error-cut", contents="x"))
    with pytest.raises(httpx2.RemoteProtocolError):
        client(sim).models.generate_content(model="gemini-2.5-flash-sim-error-cut", contents="x")
    with pytest.raises(httpx2.ReadTimeout):
        list(client(sim, timeout=500).models.generate_content_stream(
            model="gemini-2.5-flash-sim-error-stall", contents="x"))


def test_claude_on_vertex_faults(sim):
    with pytest.raises(anthropic.RateLimitError) as err:
        claude(sim).messages.create(model=CLAUDE + "-sim-error-429", max_tokens=8, messages=USER)
    assert err.value.body["error"]["status"] == "RESOURCE_EXHAUSTED"  # the platform's quota
    with pytest.raises(anthropic.OverloadedError) as over:
        claude(sim).messages.create(model=CLAUDE, max_tokens=8, messages=USER,
                                    extra_headers={"x-sim-error": "529"})
    assert over.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.APIStatusError) as mid:
        with claude(sim).messages.stream(model=CLAUDE, max_tokens=8, messages=USER,
                                         extra_headers={"x-sim-error": "error-event"}) as stream:
            stream.get_final_message()
    assert mid.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.APIConnectionError):
        with claude(sim).messages.stream(model=CLAUDE, max_tokens=8, messages=USER,
                                         extra_headers={"x-sim-error": "cut"}) as stream:
            stream.get_final_message()
    with pytest.raises(anthropic.APITimeoutError):
        claude(sim, timeout=0.5).messages.create(model=CLAUDE, max_tokens=8, messages=USER,
                                                 extra_headers={"x-sim-error": "stall"})


# -- raw HTTP helpers ------------------------------------------------------------------------


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def read_all(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    head, _, rest = read_all(port, request).partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        rest, complete = dechunk(rest)
        assert complete
    return head, rest


def raw_chunks(port: int, request: bytes) -> tuple[bytes, list[bytes], bool]:
    """The head and each chunk of a chunked body (one chunk per server write)."""
    head, _, rest = read_all(port, request).partition(b"\r\n\r\n")
    chunks = []
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return head, chunks, False
        size = int(line, 16)
        if size == 0:
            return head, chunks, True
        chunks.append(rest[:size])
        rest = rest[size + 2:]
