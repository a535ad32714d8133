"""The provider simulator over real sockets, driven by the official SDKs: their
parsers and stream helpers accept its bytes, its errors become their
exception classes, and its faults break their streams the way a provider
failure would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import anthropic
import openai
import orjson
import pytest
from click.testing import CliRunner

from aperture.sim import anthropic as sim_anthropic
from aperture.sim import expected_usage
from aperture.sim.cli import simulate
from aperture.sim.common import answer_text, answer_words

from .conftest import dechunk, keep, serve_simulator

TOOL = {"name": "check_stock", "description": "Stock level for a SKU",
        "input_schema": {"type": "object", "properties": {"sku": {"type": "string"},
                                                          "count": {"type": "integer"}},
                         "required": ["sku"]}}
FUNCTION = {"type": "function", "function": {"name": "check_stock", "description": "Stock level",
                                             "parameters": TOOL["input_schema"]}}
ARGS = {"sku": "x", "count": 1}
USER = [{"role": "user", "content": "How many X-91 are left?"}]
TOOL_USER = [{"role": "user", "content": "Use the tool to check X-91."}]


@pytest.fixture
def make_sim(loop_thread):
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(serve_simulator(loop_thread, **settings))




def claude(url: str, key: str = "sk-ant-test", **kw) -> anthropic.Anthropic:
    kw.setdefault("timeout", 10.0)
    kw.setdefault("api_key", key)
    return keep(anthropic.Anthropic(base_url=url, max_retries=0, **kw))


def gpt(url: str, key: str = "sk-openai-test", **kw) -> openai.OpenAI:
    kw.setdefault("timeout", 10.0)
    return keep(openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, **kw))


def credential(headers: dict) -> str | None:
    """The key a request carried, as x-api-key or as a bearer token."""
    auth = headers.get("authorization", "")
    return headers.get("x-api-key") or (auth[7:] if auth.startswith("Bearer ") else None)


def usage_fields(usage, expected: dict) -> dict:
    """The SDK's parsed usage, as plain values, for the keys the simulator sent."""
    dumped = usage.model_dump()
    return {key: ({k: dumped[key][k] for k in value} if isinstance(value, dict) else dumped[key])
            for key, value in expected.items()}


# -- Anthropic ----------------------------------------------------------------------


def test_anthropic_message(simulator):
    client = claude(simulator.url)
    request = {"model": "claude-opus-4-7", "max_tokens": 256, "system": "You are terse.", "messages": USER}
    message = client.messages.create(**request)
    assert message.content[0].type == "text" and message.content[0].text == answer_text(12)
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_")
    expected = expected_usage("anthropic", request)
    assert usage_fields(message.usage, expected) == expected

    method, path, headers, body = simulator.sim.seen[-1]
    assert (method, path) == ("POST", "/v1/messages")
    assert credential(headers) == "sk-ant-test" and headers["anthropic-version"]
    assert json.loads(body) == request


def test_anthropic_stream_helper_accepts_the_stream(simulator):
    client = claude(simulator.url)
    request = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": USER,
               "system": [{"type": "text", "text": "Cached instructions here.",
                           "cache_control": {"type": "ephemeral"}}]}
    with client.messages.stream(**request) as stream:
        pieces = list(stream.text_stream)
        message = stream.get_final_message()
    assert pieces == answer_words(5)
    assert message.content[0].text == answer_text(5) and message.stop_reason == "max_tokens"
    expected = expected_usage("anthropic", request)
    assert expected["cache_read_input_tokens"] > 0
    for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"):
        assert getattr(message.usage, key) == expected[key], key


def test_anthropic_tool_call_streamed(simulator):
    client = claude(simulator.url)
    with client.messages.stream(model="claude-opus-4-7", max_tokens=256, messages=TOOL_USER,
                                tools=[TOOL]) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert "input_json" in kinds
    block = message.content[0]
    assert (block.type, block.name, block.input) == ("tool_use", "check_stock", ARGS)
    assert block.id.startswith("toolu_") and message.stop_reason == "tool_use"

    forced = client.messages.create(model="claude-opus-4-7", max_tokens=256, messages=USER,
                                    tools=[TOOL], tool_choice={"type": "any"})
    assert forced.content[0].type == "tool_use" and forced.content[0].input == ARGS


def test_anthropic_count_tokens_and_models(simulator):
    client = claude(simulator.url)
    request = {"model": "claude-opus-4-7", "messages": USER, "tools": [TOOL]}
    count = client.messages.count_tokens(**request)
    assert count.input_tokens == expected_usage("anthropic", {**request, "max_tokens": 1})["input_tokens"]
    models = [m.id for m in client.models.list()]
    assert "claude-opus-4-7" in models
    client.messages.create(model="claude-opus-4-7", max_tokens=4, messages=USER,
                           extra_query={"beta": "true"})
    assert simulator.sim.seen[-1].path == "/v1/messages?beta=true"


def test_anthropic_ping_every_and_paced_stream_keep_the_bytes(make_sim):
    """A paced stream (token rate, pings) is the same bytes as the immediate one."""
    body = json.dumps({"model": "claude-opus-4-7", "max_tokens": 64, "stream": True,
                       "messages": USER}).encode()
    fast = make_sim()
    paced = make_sim(token_rate=2000.0, ping_every=3)
    head, data = raw_exchange(fast.port, post("/v1/messages", body))
    assert b"content-type: text/event-stream; charset=utf-8\r\n" in head
    assert b"request-id: " + sim_anthropic.request_id(1).encode() in head
    plan = sim_anthropic.plan(json.loads(body), 12)
    assert data == sim_anthropic.stream(plan, 1).joined()
    _, paced_data = raw_exchange(paced.port, post("/v1/messages", body))
    assert paced_data == sim_anthropic.stream(plan, 1, ping_every=3).joined()
    assert paced_data.count(b"event: ping\n") == 1 + 12 // 3


# -- OpenAI -------------------------------------------------------------------------


def test_openai_completion(simulator):
    client = gpt(simulator.url)
    request = {"model": "gpt-5.4", "messages": USER, "prompt_cache_key": "tenant-1",
               "reasoning_effort": "low", "max_completion_tokens": 10}
    completion = client.chat.completions.create(**request)
    usage = expected_usage("openai", request)
    assert usage_fields(completion.usage, usage) == usage
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 5
    assert completion.choices[0].message.content == answer_text(5)
    assert completion.choices[0].finish_reason == "length"
    headers = simulator.sim.seen[-1].headers
    assert headers["authorization"] == "Bearer sk-openai-test"


def test_openai_stream_with_usage_chunk(simulator):
    client = gpt(simulator.url)
    request = {"model": "gpt-5.4-mini", "messages": USER}
    stream = client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_text(12)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    expected = expected_usage("openai", request)
    assert usage_fields(chunks[-1].usage, expected) == expected
    assert chunks[-2].choices[0].finish_reason == "stop"

    plain = list(client.chat.completions.create(**request, stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"


def test_openai_stream_helper_tool_call(simulator):
    client = gpt(simulator.url)
    with client.chat.completions.stream(model="gpt-5.4", messages=TOOL_USER, tools=[FUNCTION],
                                        stream_options={"include_usage": True}) as stream:
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("check_stock", ARGS)
    assert call.id.startswith("call_")
    whole = client.chat.completions.create(model="gpt-5.4", messages=USER, tools=[FUNCTION],
                                           tool_choice="required")
    assert whole.choices[0].message.tool_calls[0].function.arguments == call.function.arguments


def test_openai_models_and_embeddings(simulator):
    client = gpt(simulator.url)
    assert "gpt-5.4" in [m.id for m in client.models.list()]
    assert client.models.retrieve("gpt-5.4").owned_by == "openai"
    result = client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    assert [d.embedding for d in result.data] == [
        [((i + j) % 8 - 3.5) / 8.0 for j in range(8)] for i in range(2)]
    assert result.usage.prompt_tokens == 3
    assert json.loads(simulator.sim.seen[-1].body)["encoding_format"] == "base64"


# -- errors and faults ----------------------------------------------------------------


@pytest.mark.parametrize("fault, claude_error, gpt_error, gpt_status", [
    ("429", anthropic.RateLimitError, openai.RateLimitError, 429),
    ("500", anthropic.InternalServerError, openai.InternalServerError, 500),
    ("529", anthropic.OverloadedError, openai.InternalServerError, 503),
    ("403", anthropic.PermissionDeniedError, openai.PermissionDeniedError, 403),
])
def test_error_faults_raise_the_sdk_classes(simulator, fault, claude_error, gpt_error, gpt_status):
    client = claude(simulator.url)
    with pytest.raises(claude_error) as err:
        client.messages.create(model="claude-opus-4-7", max_tokens=8, messages=USER,
                               extra_headers={"x-sim-error": fault})
    assert err.value.status_code == int(fault)
    assert err.value.request_id == err.value.response.headers["request-id"]
    assert err.value.body["request_id"] == err.value.request_id
    # The model-name convention, for clients that cannot set headers.
    with pytest.raises(claude_error):
        with client.messages.stream(model="sim-error-" + fault, max_tokens=8, messages=USER) as s:
            s.get_final_message()

    with pytest.raises(gpt_error) as gerr:
        gpt(simulator.url).chat.completions.create(model="gpt-5.4-sim-error-" + fault, messages=USER)
    assert gerr.value.status_code == gpt_status
    assert set(gerr.value.body) == {"message", "type", "param", "code"}
    if fault == "429":
        assert gerr.value.response.headers["retry-after"] == "1"
        assert err.value.response.headers["retry-after"] == "1"


def test_bad_requests_are_answered_in_each_format(simulator):
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        claude(simulator.url).post("/v1/messages", cast_to=object,
                                   body={"model": "claude-opus-4-7", "messages": USER})
    with pytest.raises(openai.BadRequestError) as err:
        gpt(simulator.url).post("/chat/completions", cast_to=object, body={"model": "gpt-5.4"})
    assert err.value.param == "messages"
    head, body = raw_exchange(simulator.port, post("/v1/chat/completions", b"{not json"))
    assert head.startswith(b"HTTP/1.1 400 ") and orjson.loads(body)["error"]["type"] == "invalid_request_error"
    head, body = raw_exchange(simulator.port, post("/v2/nothing", b"{}"))
    assert head.startswith(b"HTTP/1.1 404 ")
    head, body = raw_exchange(simulator.port,
                              b"GET /v1/messages HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ") and orjson.loads(body)["type"] == "error"
    head, body = raw_exchange(simulator.port, post("/v1/chat/completions", b'{"model":"m","messages":[]}',
                                                   b"x-sim-error: sideways\r\n"))
    assert head.startswith(b"HTTP/1.1 400 ") and b"sideways" in body
    for name, value in [(b"x-sim-latency", b"nan"), (b"x-sim-tokens", b"-1"), (b"x-sim-tokens", b"1.5"),
                        (b"x-sim-tokens", b"99999999999"), (b"x-sim-token-rate", b"fast")]:
        request = b'{"model":"m","messages":[],"stream":true}'
        head, body = raw_exchange(simulator.port, post("/v1/chat/completions", request,
                                                       name + b": " + value + b"\r\n"))
        assert head.startswith(b"HTTP/1.1 400 ") and name in body, (name, value)


def test_cut_breaks_both_sdk_streams(simulator):
    client = claude(simulator.url)
    seen = []
    with pytest.raises(anthropic.APIConnectionError):
        with client.messages.stream(model="claude-opus-4-7", max_tokens=64, messages=USER,
                                    extra_headers={"x-sim-error": "cut"}) as stream:
            for text in stream.text_stream:
                seen.append(text)
    assert seen == answer_words(6)  # half the answer arrived first
    with pytest.raises(openai.APIConnectionError):
        list(gpt(simulator.url).chat.completions.create(model="sim-error-cut", messages=USER, stream=True))
    with pytest.raises(anthropic.APIConnectionError):  # a JSON body cut in half
        client.messages.create(model="claude-opus-4-7", max_tokens=64, messages=USER,
                               extra_headers={"x-sim-error": "cut"})


def test_raw_cut_ends_without_the_terminating_chunk(simulator):
    body = json.dumps({"model": "gpt-5.4", "messages": USER, "stream": True}).encode()
    head, data, complete = raw_chunked(simulator.port, post("/prefix/v1/chat/completions", body,
                                                            b"x-sim-error: cut\r\n"))
    assert head.startswith(b"HTTP/1.1 200 ") and not complete
    assert data.startswith(b"data: {") and b"[DONE]" not in data


def test_stall_and_slow_head_time_out(simulator):
    client = claude(simulator.url, timeout=0.5)
    with pytest.raises(anthropic.APITimeoutError):
        with client.messages.stream(model="claude-opus-4-7", max_tokens=8, messages=USER,
                                    extra_headers={"x-sim-error": "stall"}) as stream:
            stream.get_final_message()
    with pytest.raises(openai.APITimeoutError):
        list(gpt(simulator.url, timeout=0.5).chat.completions.create(
            model="gpt-5.4", messages=USER, stream=True, extra_headers={"x-sim-error": "stall"}))
    with pytest.raises(openai.APITimeoutError):  # half a JSON body, then silence
        gpt(simulator.url, timeout=0.5).chat.completions.create(model="gpt-5.4-sim-error-stall", messages=USER)
    with pytest.raises(openai.APITimeoutError):
        gpt(simulator.url, timeout=0.3).chat.completions.create(model="sim-error-slow-head", messages=USER)
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model="claude-opus-4-7", max_tokens=8, messages=USER,
                               extra_headers={"x-sim-latency": "2"})
    # A slow head that arrives within the client's patience is a normal answer.
    done = claude(simulator.url, timeout=5).messages.create(
        model="claude-opus-4-7", max_tokens=8, messages=USER,
        extra_headers={"x-sim-error": "slow-head", "x-sim-latency": "0.05", "x-sim-tokens": "2"})
    assert done.content[0].text == answer_text(2)


def test_error_event_mid_stream(simulator):
    with pytest.raises(anthropic.APIStatusError) as err:
        with claude(simulator.url).messages.stream(model="claude-opus-4-7", max_tokens=8, messages=USER,
                                                   extra_headers={"x-sim-error": "error-event"}) as s:
            s.get_final_message()
    assert err.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(openai.APIError, match="overloaded"):
        list(gpt(simulator.url).chat.completions.create(model="gpt-5.4", messages=USER, stream=True,
                                                         extra_headers={"x-sim-error": "error-event"}))


def test_require_key(make_sim):
    sim = make_sim(require_key="sk-right")
    with pytest.raises(anthropic.AuthenticationError) as err:
        claude(sim.url, key="sk-wrong").messages.create(model="claude-opus-4-7", max_tokens=4, messages=USER)
    assert err.value.body["error"]["type"] == "authentication_error"
    assert "sk-wrong" not in err.value.response.text
    with pytest.raises(openai.AuthenticationError) as gerr:
        gpt(sim.url, key="sk-wrong").chat.completions.create(model="gpt-5.4", messages=USER)
    assert gerr.value.code == "invalid_api_key"
    assert claude(sim.url, key="sk-right").messages.create(
        model="claude-opus-4-7", max_tokens=4, messages=USER).usage.output_tokens == 4
    assert gpt(sim.url, key="sk-right").models.list().data
    body = json.dumps({"model": "m", "max_tokens": 1, "messages": []}).encode()
    as_header = post("/v1/messages", body).replace(b"x-api-key: sk-raw", b"x-api-key: sk-right")
    assert raw_exchange(sim.port, as_header)[0].startswith(b"HTTP/1.1 200 ")
    without = post("/v1/messages", body).replace(b"x-api-key: sk-raw\r\n", b"")
    assert raw_exchange(sim.port, without)[0].startswith(b"HTTP/1.1 401 ")


def test_path_prefix_and_settings(make_sim):
    sim = make_sim(output_tokens=3)
    client = claude(sim.url + "/tenant/anthropic")
    message = client.messages.create(model="claude-opus-4-7", max_tokens=100, messages=USER)
    assert message.content[0].text == answer_text(3)
    assert sim.sim.seen[-1].path == "/tenant/anthropic/v1/messages"
    completion = gpt(sim.url + "/openai").chat.completions.create(
        model="gpt-5.4", messages=USER, extra_headers={"x-sim-tokens": "7"})
    assert completion.usage.completion_tokens == 7


def test_seen_keeps_the_last_requests(make_sim):
    sim = make_sim(history=2)
    for n in range(3):
        raw_exchange(sim.port, post("/v1/messages", json.dumps(
            {"model": "m", "max_tokens": n + 1, "messages": []}).encode()))
    assert [json.loads(s.body)["max_tokens"] for s in sim.sim.seen] == [2, 3]


# -- the command ------------------------------------------------------------------------


def test_simulate_command_serves_until_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "aperture", "simulate", "--listen", "127.0.0.1:0",
                             "--output-tokens", "3", "--require-key", "sk-cli"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stderr.readline().decode()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].strip()
        req = urllib.request.Request(url + "/v1/chat/completions", method="POST",
                                     data=json.dumps({"model": "gpt-5.4", "messages": USER}).encode(),
                                     headers={"Authorization": "Bearer sk-cli"})
        with urllib.request.urlopen(req, timeout=10) as response:
            assert json.loads(response.read())["choices"][0]["message"]["content"] == answer_text(3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_simulate_command_rejects_a_bad_listen_address():
    result = CliRunner().invoke(simulate, ["--listen", "nowhere"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output


# -- raw HTTP helpers ---------------------------------------------------------------------


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            b"x-api-key: sk-raw\r\nConnection: close\r\nContent-Length: %d\r\n" % len(body)
            + extra + b"\r\n" + body)


def read_all(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def raw_chunked(port: int, request: bytes) -> tuple[bytes, bytes, bool]:
    head, _, rest = read_all(port, request).partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    body, complete = dechunk(rest)
    return head, body, complete


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    data = read_all(port, request)
    head, _, rest = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        rest, complete = dechunk(rest)
        assert complete
    return head, rest
