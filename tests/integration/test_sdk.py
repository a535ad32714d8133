"""The official SDKs as clients, aperture in between, the simulator upstream."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import urllib.request

import anthropic
import openai
import pytest

from aperture.sim import expected_usage

from .conftest import provider_config, raw_request

TOOLS_ANTHROPIC = [{"name": "check_stock", "description": "Stock level for a SKU",
                    "input_schema": {"type": "object", "properties": {"sku": {"type": "string"}},
                                     "required": ["sku"]}}]
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "check_stock", "description": "Stock level for a SKU",
    "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}]


@pytest.fixture
def claude(gateway):
    with anthropic.Anthropic(base_url=gateway.url, api_key="placeholder", max_retries=0) as client:
        yield client


@pytest.fixture
def gpt(gateway):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="placeholder", max_retries=0) as client:
        yield client


def last_seen(simulator):
    return simulator.sim.seen[-1]


def test_anthropic_non_streaming(claude, simulator):
    msg = claude.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                                 messages=[{"role": "user", "content": "Hello there"}])
    assert msg.type == "message" and msg.content[0].type == "text" and msg.content[0].text
    seen = last_seen(simulator)
    assert seen.headers["x-api-key"] == "sk-ant-provider"  # the provider's key, injected
    assert "authorization" not in seen.headers
    assert seen.headers["anthropic-version"]  # forwarded as the SDK sent it
    assert json.loads(seen.body)["messages"][0]["content"] == "Hello there"
    usage = expected_usage("anthropic", json.loads(seen.body))
    assert msg.usage.input_tokens == usage["input_tokens"]


def test_anthropic_streaming(claude, simulator):
    with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=64,
                                messages=[{"role": "user", "content": "Stream please"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.usage.output_tokens > 0


def test_anthropic_tool_call_streaming(claude):
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=256, tools=TOOLS_ANTHROPIC,
                                messages=[{"role": "user", "content": "use the tool for X-91"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "check_stock" and isinstance(call.input, dict)


def test_openai_non_streaming_and_tools(gpt, simulator):
    out = gpt.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content
    assert last_seen(simulator).headers["authorization"] == "Bearer sk-openai-provider"
    out = gpt.chat.completions.create(model="gpt-5.4-mini", tools=TOOLS_OPENAI,
                                      messages=[{"role": "user", "content": "call the tool"}])
    assert out.choices[0].finish_reason == "tool_calls"
    assert out.choices[0].message.tool_calls[0].function.name == "check_stock"


def test_openai_streaming_with_usage(gpt):
    stream = gpt.chat.completions.create(model="gpt-5.4", stream=True,
                                         stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "count to three"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_streaming_tool_call(gpt):
    stream = gpt.chat.completions.create(model="gpt-5.4", stream=True, tools=TOOLS_OPENAI,
                                         messages=[{"role": "user", "content": "use a tool"}])
    args, names = "", []
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                if tc.function.name:
                    names.append(tc.function.name)
                args += tc.function.arguments or ""
    assert names == ["check_stock"]
    assert isinstance(json.loads(args), dict)


def test_fully_qualified_model_is_forwarded_without_prefix(claude, simulator):
    claude.messages.create(model="anthropic/claude-sonnet-4-6", max_tokens=8,
                           messages=[{"role": "user", "content": "x"}])
    seen = last_seen(simulator)
    assert json.loads(seen.body)["model"] == "claude-sonnet-4-6"
    assert int(seen.headers["content-length"]) == len(seen.body)


def test_unknown_model_in_each_format(claude, gpt):
    with pytest.raises(anthropic.NotFoundError) as exc:
        claude.messages.create(model="claude-nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["error"]["type"] == "not_found_error"
    assert "model claude-nope not found" in exc.value.body["error"]["message"]
    with pytest.raises(openai.NotFoundError) as exc2:
        gpt.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert "model gpt-nope not found" in exc2.value.body["message"]


def test_model_of_other_format_is_refused(gpt):
    with pytest.raises(openai.BadRequestError, match="does not speak the openai_chat API format"):
        gpt.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}])


def test_upstream_errors_pass_through_in_provider_format(claude, gpt):
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=8, extra_headers={"x-sim-error": "429"},
                               messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.InternalServerError) as exc:
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=8, extra_headers={"x-sim-error": "529"},
                               messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 529
    with pytest.raises(openai.InternalServerError):
        gpt.chat.completions.create(model="gpt-5.4", extra_headers={"x-sim-error": "500"},
                                    messages=[{"role": "user", "content": "x"}])


def test_cut_stream_raises_in_sdk(claude):
    # The stream starts (a 200 and the first events), then the gateway closes
    # the connection without finishing the chunked body: the SDK reports an
    # incomplete read.
    seen = []
    with pytest.raises(anthropic.APIConnectionError, match=r"incomplete chunked read"):
        with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=64, extra_headers={"x-sim-error": "cut"},
                                    messages=[{"role": "user", "content": "x"}]) as stream:
            for event in stream:
                seen.append(event.type)
    assert seen[:2] == ["message_start", "content_block_start"] and "message_stop" not in seen


BAD_BODIES = [
    (b'{"model": "claude-sonnet-4-6", "messages": [', 400, "not valid JSON"),
    (b'{"max_tokens": 5, "messages": []}', 400, 'no top-level "model"'),
    (b'{"model": 5, "messages": []}', 400, '"model" must be a string'),
    (b'{"messages": [{"model": "claude-sonnet-4-6"}]}', 400, 'no top-level "model"'),
    (b'{"model": "claude-sonnet-4-6", "model": "claude-opus-4-7"}', 400, "more than one"),
    (b'["model", "claude-sonnet-4-6"]', 400, "JSON object"),
]


@pytest.mark.parametrize("body, status, message", BAD_BODIES)
def test_bad_bodies_answered_in_callers_format(gateway, simulator, body, status, message):
    before = len(simulator.sim.seen)
    out = raw_request(gateway.port, b"POST /v1/messages HTTP/1.1\r\nHost: ai\r\nConnection: close\r\n"
                                    b"Content-Length: %d\r\n\r\n" % len(body) + body)
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d" % status)
    err = json.loads(payload)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert message in err["error"]["message"]
    assert len(simulator.sim.seen) == before  # nothing reached the provider


def test_body_too_large_is_413(gateway_factory, simulator):
    gw = gateway_factory(provider_config(simulator.url), "--max-body-size", "1KiB")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "x" * 5000}])
    assert exc.value.status_code == 413
    client.close()


@pytest.mark.parametrize("capture", [True, False], ids=["capture", "no-capture"])
def test_a_streamed_body_past_the_limit_is_413(gateway_factory, simulator, capture):
    """Chunked, the model first: the request is on its way upstream when the
    limit is passed, whether or not the bodies are kept for captures."""
    gw = gateway_factory(provider_config(simulator.url), "--max-body-size", "4KiB", capture=capture)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: ai\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    first = b'{"model": "gpt-5.4", "messages": [{"role": "user", "content": "'
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(head + b"%x\r\n%s\r\n" % (len(first), first))
        time.sleep(0.2)
        try:
            for _ in range(6):
                s.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the rest was sent
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"request body exceeds the limit of 4096 bytes" in answer


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def test_models_and_whoami(gateway):
    models = json.loads(get(gateway.url + "/v1/models"))
    ids = {m["id"] for m in models["data"]}
    assert {"claude-sonnet-4-6", "gpt-5.4"} <= ids
    who = json.loads(get(gateway.url + "/api/whoami"))
    assert who["login"] == "alice@example.com" and who["role"] == "admin"
    assert get(gateway.url + "/healthz") == b"ok\n"


def test_sigterm_lets_inflight_stream_finish(gateway_factory, simulator):
    gw = gateway_factory(provider_config(simulator.url), "--drain-timeout", "20")
    client = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    result = {}

    def consume():
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=64,
                                    extra_headers={"x-sim-token-rate": "20", "x-sim-tokens": "30"},
                                    messages=[{"role": "user", "content": "slow"}]) as stream:
            result["text"] = "".join(stream.text_stream)
            result["final"] = stream.get_final_message()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)  # the stream is running
    gw.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert result["final"].stop_reason == "end_turn"
    assert len(result["text"].split()) == 30
    assert gw.proc.wait(10) == 0
    client.close()


def test_two_workers_share_the_port(gateway_factory, simulator):
    gw = gateway_factory(provider_config(simulator.url), "--workers", "2")
    deadline = time.monotonic() + 10
    while gw.log().count("listening on") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.log().count("listening on") == 2
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0) as client:
        for _ in range(10):
            assert client.chat.completions.create(
                model="gpt-5.4", messages=[{"role": "user", "content": "x"}]).choices
    assert gw.stop() == 0
