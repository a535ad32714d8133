"""Capture through a running gateway: what lands in the store for every kind of
exchange, read back with `CaptureReader` and with `aperture query` run as a
subprocess against the live gateway's data directory.

One gateway (two workers, `serve-headers` identity) serves this module; each
test speaks as its own user (`Tailscale-User-Login`, trusted from loopback),
so it finds its own records with a user filter. The load, SIGKILL and
retention tests, which need their own gateways, are in test_capture_load.py.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anthropic
import openai
import pytest

from aperture.capture.query import RECORD_FIELDS, CaptureReader, Filter
from aperture.sim import expected_usage

from .conftest import free_port, launch_gateway, provider_config

ANT_KEY = "sk-ant-provider"
OAI_KEY = "sk-openai-provider"
LOGIN = "tailscale-user-login"

TOOLS_ANTHROPIC = [{"name": "check_stock", "description": "Stock level for a SKU",
                    "input_schema": {"type": "object", "properties": {
                        "sku": {"type": "string"}, "count": {"type": "integer"}},
                        "required": ["sku"]}}]
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "check_stock", "description": "Stock level for a SKU",
    "parameters": {"type": "object", "properties": {
        "sku": {"type": "string"}, "count": {"type": "integer"}}, "required": ["sku"]}}}]


# ---------------------------------------------------------------------------
# Gateway and store helpers (also used by test_capture_load.py)


def gateway_config(sim_url: str, *, dead_port: int | None = None, **extra) -> dict:
    """The simulator behind two providers; claude-opus-4-7 is configured but
    not granted; `dead` points at a port where nothing listens."""
    providers = {"anthropic": {
        "baseurl": sim_url, "apikey": ANT_KEY, "authorization": "x-api-key",
        "models": ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7"],
        "compatibility": {"anthropic_messages": True}}}
    granted = ["openai/**", "anthropic/claude-sonnet-4-6", "anthropic/claude-haiku-4-5"]
    if dead_port is not None:
        providers["dead"] = {"baseurl": "http://127.0.0.1:%d" % dead_port, "apikey": "sk-dead",
                             "models": ["dead-model"], "compatibility": {"openai_chat": True}}
        granted.append("dead/**")
    grants = [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [
        {"role": "user"}, {"models": granted}]}}]
    return provider_config(sim_url, providers=providers, grants=grants, **extra)


def new_user(tag: str) -> str:
    return "%s-%s@example.com" % (tag, uuid.uuid4().hex[:8])


def read_records(data_dir, **filt) -> list[dict]:
    with CaptureReader(str(data_dir)) as reader:
        return reader.records(Filter(**filt), limit=None)


def wait_records(data_dir, n: int, timeout: float = 15.0, **filt) -> list[dict]:
    """Poll the store until at least n records match (newest first)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = read_records(data_dir, **filt)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def get_capture(data_dir, ident: str) -> dict | None:
    with CaptureReader(str(data_dir)) as reader:
        return reader.get(ident)


def query_cli(data_dir, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    """`aperture query ARGS --data-dir D` in a subprocess."""
    out = subprocess.run([sys.executable, "-m", "aperture", "query", *args,
                          "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == expect, (out.returncode, out.stdout, out.stderr)
    return out


def query_json(data_dir, *args: str):
    return json.loads(query_cli(data_dir, *args, "--format", "json").stdout)


def show_json(data_dir, ident: str) -> dict:
    return json.loads(query_cli(data_dir, "show", ident, "--format", "json").stdout)


def sums(rows) -> dict:
    keys = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
            "reasoning_tokens")
    return {k: sum(r[k] for r in rows) for k in keys}


def record_usage(api: str, usage: dict) -> dict:
    """A provider usage object as aperture records it (input excludes cached input)."""
    if api.startswith("anthropic"):
        return {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
                "cache_read_tokens": usage.get("cache_read_input_tokens") or 0,
                "cache_write_tokens": usage.get("cache_creation_input_tokens") or 0,
                "reasoning_tokens": 0}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {"input_tokens": usage["prompt_tokens"] - cached,
            "output_tokens": usage["completion_tokens"], "cache_read_tokens": cached,
            "cache_write_tokens": 0,
            "reasoning_tokens": (usage.get("completion_tokens_details") or {}).get(
                "reasoning_tokens") or 0}


# ---------------------------------------------------------------------------
# A raw HTTP/1.1 client that keeps the exact bytes and survives cut responses


class RawResponse:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, complete: bool):
        self.status = status
        self.headers = headers
        self.body = body  # de-chunked: the body as the client received it
        self.complete = complete

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def json(self):
        return json.loads(self.body)


class _Buf:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(1 << 16)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.data += chunk
        return True

    def until(self, sep: bytes) -> bytes | None:
        while sep not in self.data:
            if not self.fill():
                return None
        line, _, self.data = self.data.partition(sep)
        return line

    def take(self, n: int) -> bytes:
        while len(self.data) < n and self.fill():
            pass
        out, self.data = self.data[:n], self.data[n:]
        return out


def read_response(sock: socket.socket, *, stop_after: int | None = None) -> RawResponse:
    """Read one response; with stop_after, stop once that many body bytes are in."""
    buf = _Buf(sock)
    head = buf.until(b"\r\n\r\n")
    if head is None:
        return RawResponse(0, [], b"", False)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    resp = RawResponse(status, headers, b"", False)
    length = resp.header("content-length")
    if length is not None:
        want = int(length)
        if stop_after is not None:
            want = min(want, stop_after)
        resp.body = buf.take(want)
        resp.complete = len(resp.body) == int(length)
        return resp
    if (resp.header("transfer-encoding") or "").lower() != "chunked":
        while buf.fill():
            pass
        resp.body, resp.complete = buf.data, True
        return resp
    body = b""
    while True:
        size_line = buf.until(b"\r\n")
        if size_line is None:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            resp.complete = buf.until(b"\r\n") is not None
            break
        chunk = buf.take(size)
        body += chunk
        if len(chunk) < size or buf.until(b"\r\n") is None:
            break
        if stop_after is not None and len(body) >= stop_after:
            break
    resp.body = body
    return resp


def request_bytes(path: str, body: bytes, headers: dict) -> bytes:
    head = "POST %s HTTP/1.1\r\nHost: aperture\r\nContent-Type: application/json\r\n" % path
    for k, v in headers.items():
        head += "%s: %s\r\n" % (k, v)
    head += "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    return head.encode("latin-1") + body


def post(port: int, path: str, body: bytes | dict, headers: dict | None = None,
         timeout: float = 15.0) -> RawResponse:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(request_bytes(path, body, headers or {}))
        return read_response(s)


def sse_events(body: bytes) -> list[dict]:
    out = []
    for block in body.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload and payload != b"[DONE]":
                    out.append(json.loads(payload))
    return out


def last_usage_seen(api: str, body: bytes) -> dict:
    """The usage a client can read off the (possibly partial) stream it received."""
    u: dict = {}
    for ev in sse_events(body):
        if api.startswith("anthropic"):
            part = (ev.get("message") or {}).get("usage") if ev.get("type") == "message_start" \
                else ev.get("usage") if ev.get("type") == "message_delta" else None
            if part:
                u.update({k: v for k, v in part.items() if isinstance(v, int)})
        elif ev.get("usage"):
            u = ev["usage"]
    if not u:
        return dict.fromkeys(("input_tokens", "output_tokens", "cache_read_tokens",
                              "cache_write_tokens", "reasoning_tokens"), 0)
    return record_usage(api, u)


def tokens(row: dict) -> dict:
    return {k: row[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                "cache_write_tokens", "reasoning_tokens")}


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def gw(tmp_path_factory, simulator):
    """aperture with two workers in front of the simulator, capture on."""
    tmp = tmp_path_factory.mktemp("capture")
    gateway = launch_gateway(tmp, gateway_config(simulator.url, dead_port=free_port()),
                             "--workers", "2", "--idle-timeout", "1.5",
                             "--capture-body-size", "2MiB", "--max-body-size", "4MiB",
                             identity="serve-headers")
    deadline = time.monotonic() + 10
    while gateway.log().count("listening on") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield gateway
    gateway.stop()


def claude_client(gw, user: str, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="sk-client-ant-SECRET", max_retries=0,
                               default_headers={LOGIN: user}, **kw)


def gpt_client(gw, user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-oai-SECRET", max_retries=0,
                         default_headers={LOGIN: user})


# ---------------------------------------------------------------------------
# 3. Interrupted streams and upstream failures


def test_cut_anthropic_stream_is_incomplete_with_partial_counts(gw):
    user = new_user("cut")
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "cut me off half way please"}]}
    resp = post(gw.port, "/v1/messages", body, {LOGIN: user, "x-sim-error": "cut",
                                                "x-sim-tokens": "20"})
    assert resp.status == 200 and not resp.complete
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "incomplete" and row["status"] == 200 and row["stream"] is True
    assert "closed" in row["error"]
    seen = last_usage_seen("anthropic", resp.body)
    plan = expected_usage("anthropic", body, 20)
    assert seen["input_tokens"] == plan["input_tokens"] > 0  # message_start reached the client
    assert tokens(row) == seen
    cap = get_capture(gw.data_dir, row["id"])
    assert cap["response_body"] == resp.body  # exactly what the client got before the cut


def test_cut_openai_stream_and_json_body_are_incomplete(gw):
    user = new_user("cut-oai")
    stream = {"model": "gpt-5.4", "stream": True, "stream_options": {"include_usage": True},
              "messages": [{"role": "user", "content": "cut this stream"}]}
    r1 = post(gw.port, "/v1/chat/completions", stream, {LOGIN: user, "x-sim-error": "cut"})
    plain = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "cut this body"}]}
    r2 = post(gw.port, "/v1/chat/completions", plain, {LOGIN: user, "x-sim-error": "cut"})
    assert not r1.complete and not r2.complete
    rows = wait_records(gw.data_dir, 2, user=user)
    by_model = {r["model"]: r for r in rows}
    s, j = by_model["gpt-5.4"], by_model["gpt-5.4-mini"]
    assert s["state"] == j["state"] == "incomplete"
    assert s["stream"] is True and j["stream"] is False
    # The usage chunk comes last: a cut stream has none, and neither has half a JSON body.
    assert tokens(s) == last_usage_seen("openai", r1.body)
    assert sum(tokens(j).values()) == 0
    assert get_capture(gw.data_dir, s["id"])["response_body"] == r1.body
    assert get_capture(gw.data_dir, j["id"])["response_body"] == r2.body


def test_stalled_stream_times_out_as_incomplete(gw):
    # --idle-timeout 1.5: the upstream sends the head and one event, then nothing.
    user = new_user("stall")
    body = {"model": "claude-haiku-4-5", "max_tokens": 32, "stream": True,
            "messages": [{"role": "user", "content": "stall"}]}
    resp = post(gw.port, "/v1/messages", body, {LOGIN: user, "x-sim-error": "stall"})
    assert resp.status == 200 and not resp.complete
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "incomplete" and "sent nothing" in row["error"]
    assert row["input_tokens"] == expected_usage("anthropic", body)["input_tokens"]
    assert get_capture(gw.data_dir, row["id"])["response_body"] == resp.body


def test_stream_ending_in_an_error_event_is_an_upstream_error(gw):
    user = new_user("err-event")
    body = {"model": "claude-sonnet-4-6", "max_tokens": 32, "stream": True,
            "messages": [{"role": "user", "content": "overload me"}]}
    resp = post(gw.port, "/v1/messages", body, {LOGIN: user, "x-sim-error": "error-event"})
    assert resp.status == 200 and resp.complete  # the HTTP response itself ends properly
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "upstream_error" and row["error"] == "overloaded_error: Overloaded"
    assert tokens(row) == last_usage_seen("anthropic", resp.body)
    assert get_capture(gw.data_dir, row["id"])["response_body"] == resp.body


def test_client_disconnect_mid_stream_keeps_partial_counts(gw):
    user = new_user("gone")
    body = {"model": "claude-sonnet-4-6", "max_tokens": 400, "stream": True,
            "messages": [{"role": "user", "content": "a long slow answer, I will hang up"}]}
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(request_bytes("/v1/messages", json.dumps(body).encode(),
                                {LOGIN: user, "x-sim-tokens": "200", "x-sim-token-rate": "40"}))
        part = read_response(s, stop_after=600)
        # Reset rather than FIN, so the gateway's next write fails at once.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    assert part.status == 200 and not part.complete
    seen = last_usage_seen("anthropic", part.body)
    assert seen["input_tokens"] == expected_usage("anthropic", body, 200)["input_tokens"]
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "client_disconnected" and row["stream"] is True
    assert row["status"] == 200
    cap = get_capture(gw.data_dir, row["id"])
    # What the gateway had written before it noticed: at least what was read.
    assert cap["response_body"].startswith(part.body)
    # The counts the stream carried before the hang-up (message_start) are kept.
    assert tokens(row) == last_usage_seen("anthropic", cap["response_body"]), \
        "the record of a client that went away mid-stream lost the stream's counts"


def test_client_reset_before_the_answer_is_client_disconnected(gw):
    user = new_user("reset")
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "I will not wait"}]}).encode()
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(request_bytes("/v1/messages", body, {LOGIN: user, "x-sim-latency": "2"}))
        time.sleep(0.3)  # the request is upstream, the answer not yet here
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "client_disconnected" and row["status"] == 0
    assert row["provider"] == "anthropic" and row["model"] == "claude-haiku-4-5"
    cap = get_capture(gw.data_dir, row["id"])
    assert cap["request_body"] == body and cap["response_body"] == b""


def test_upstream_connection_refused_is_upstream_error(gw):
    user = new_user("dead")
    body = {"model": "dead-model", "messages": [{"role": "user", "content": "anyone there?"}]}
    resp = post(gw.port, "/v1/chat/completions", body, {LOGIN: user})
    assert resp.status == 502
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "upstream_error" and row["status"] == 502
    assert row["provider"] == "dead" and row["model"] == "dead-model"
    assert row["error"] and row["error"] in resp.json()["error"]["message"]
    cap = get_capture(gw.data_dir, row["id"])
    assert cap["request_body"] == json.dumps(body).encode()
    assert cap["response_body"] == resp.body


def test_upstream_error_status_is_captured_with_the_providers_text(gw):
    user = new_user("429")
    body = {"model": "claude-haiku-4-5", "max_tokens": 8,
            "messages": [{"role": "user", "content": "rate me"}]}
    resp = post(gw.port, "/v1/messages", body, {LOGIN: user, "x-sim-error": "429"})
    assert resp.status == 429
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["status"] == 429 and row["provider"] == "anthropic"
    assert resp.json()["error"]["message"] in row["error"]
    assert get_capture(gw.data_dir, row["id"])["response_body"] == resp.body


# ---------------------------------------------------------------------------
# 4. Refused requests


REFUSALS = [
    # (path, body, status, text in the error, the provider routing chose: only a
    # request refused by the grants got that far)
    ("/v1/messages", b'{"model": "claude-nope", "max_tokens": 5, "messages": []}', 404,
     "model claude-nope not found", ""),
    ("/v1/chat/completions", b'{"model": "gpt-5.4", "messages": [', 400, "not valid JSON", ""),
    ("/v1/messages", b'{"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}', 400,
     'no top-level "model"', ""),
    ("/v1/messages", b'{"model": "claude-opus-4-7", "max_tokens": 5, "messages": []}', 403,
     "access denied: model anthropic/claude-opus-4-7 not granted", "anthropic"),
    ("/v1/chat/completions", b'{"model": "claude-haiku-4-5", "messages": []}', 400,
     "does not speak the openai_chat API format", ""),
]


@pytest.mark.parametrize("path, body, status, text, provider", REFUSALS,
                         ids=["unknown-model", "bad-json", "no-model", "not-granted",
                              "wrong-format"])
def test_refused_request_is_captured(gw, simulator, path, body, status, text, provider):
    user = new_user("refused")
    before = simulator.sim._seq
    resp = post(gw.port, path, body, {LOGIN: user})
    assert resp.status == status
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "refused" and row["status"] == status
    assert text in row["error"]
    assert row["provider"] == provider
    assert row["error"] == resp.json()["error"]["message"]
    cap = get_capture(gw.data_dir, row["id"])
    assert cap["request_body"] == body and cap["response_body"] == resp.body
    assert simulator.sim._seq == before  # nothing went upstream


def test_body_over_the_size_limit_is_captured_as_refused(gw):
    user = new_user("too-big")
    head = request_bytes("/v1/messages", b"", {LOGIN: user}).replace(
        b"Content-Length: 0", b"Content-Length: %d" % (5 << 20))
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(head + b'{"model": "claude-haiku-4-5", ')
        resp = read_response(s)
    assert resp.status == 413
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "refused" and row["status"] == 413
    assert row["error"] == resp.json()["error"]["message"]


def test_request_without_identity_is_captured_as_refused(gw):
    # Refused before its body is read: the record is found by its query string.
    marker = uuid.uuid4().hex
    body = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "who am I"}]}
    resp = post(gw.port, "/v1/chat/completions?m=" + marker, body)  # no Tailscale-User-Login
    assert resp.status == 403
    deadline = time.monotonic() + 10
    found = []
    while not found and time.monotonic() < deadline:
        found = [r for r in read_records(gw.data_dir, user="", status=403)
                 if r["path"].endswith(marker)]
        time.sleep(0.05)
    assert len(found) == 1, "the refused request was not captured"
    [row] = found
    assert row["state"] == "refused" and row["error"] == resp.json()["error"]["message"]
    assert get_capture(gw.data_dir, row["id"])["response_body"] == resp.body


# ---------------------------------------------------------------------------
# 5. `show` rebuilds bodies byte for byte


def claude_code_like_body(size: int = 1 << 20, session: str | None = None) -> bytes:
    """An agentic request of about `size` bytes: big system prompt and tools,
    a long history of tool calls and results, non-ASCII text, written with
    escapes and spacing no JSON library of the gateway would produce."""
    words = ("the file function return value error test module import class config "
             "caf\u00e9 na\u00efve \u2014 \u65e5\u672c \U0001f680 \"quoted\" "
             "back\\slash tab\t").split(" ")
    n = 0

    def text(k: int) -> str:
        nonlocal n
        n += k
        return " ".join(words[(n + i) % len(words)] for i in range(k))

    system = [{"type": "text", "text": "You are an agent. " + text(3000),
               "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "Tool%d" % i, "description": text(200),
              "input_schema": {"type": "object", "properties": {
                  "path": {"type": "string"}, "limit": {"type": "integer"}}}} for i in range(16)]
    messages = [{"role": "user", "content": [{"type": "text", "text": text(50)}]}]
    i = 0
    while True:
        doc = {"model": "claude-sonnet-4-6", "max_tokens": 32000, "system": system,
               "tools": tools, "messages": messages}
        if session:
            doc["metadata"] = {"user_id": "user_%s_account_%s_session_%s"
                               % ("ab" * 32, uuid.UUID(int=7), session)}
        raw = json.dumps(doc, indent=1, ensure_ascii=True).encode()
        if len(raw) >= size:
            return raw
        tid = "toolu_%06d" % i
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": text(20)},
            {"type": "tool_use", "id": tid, "name": "Tool%d" % (i % 16),
             "input": {"path": "/src/file%d.py" % i}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tid, "content": text(1500)}]})
        i += 1


def test_show_rebuilds_large_request_and_response_exactly(gw):
    user = new_user("show")
    body = claude_code_like_body()
    assert len(body) >= 1 << 20
    resp = post(gw.port, "/v1/messages", body, {LOGIN: user}, timeout=30)
    assert resp.status == 200 and resp.complete
    [row] = wait_records(gw.data_dir, 1, user=user)
    shown = show_json(gw.data_dir, row["id"])
    assert shown["request_body_encoding"] == "utf-8"
    assert shown["request_body"].encode() == body
    assert shown["response_body"].encode() == resp.body
    assert shown["request_body_size"] == len(body)
    assert not shown["request_body_truncated"] and not shown["response_body_truncated"]
    # Usage of a cached prompt: read and written cache tokens are kept apart.
    expect = record_usage("anthropic", json.loads(resp.body)["usage"])
    assert tokens(shown) == expect and expect["cache_read_tokens"] > 0
    # The id prefix form works too.
    assert show_json(gw.data_dir, row["id"][:20])["id"] == row["id"]


def test_body_over_the_capture_limit_is_truncated_with_a_marker(gw):
    # --capture-body-size 2MiB: the request goes upstream whole, the capture
    # keeps its first 2 MiB and says so.
    user = new_user("trunc")
    sid = str(uuid.uuid4())
    body = claude_code_like_body(int(2.5 * (1 << 20)), session=sid)
    resp = post(gw.port, "/v1/messages", body, {LOGIN: user}, timeout=30)
    assert resp.status == 200 and resp.complete
    [row] = wait_records(gw.data_dir, 1, user=user)
    cap = get_capture(gw.data_dir, row["id"])
    assert cap["request_body_truncated"] and not cap["response_body_truncated"]
    assert cap["request_body"] == body[:2 << 20]
    assert cap["response_body"] == resp.body
    assert row["input_tokens"] == json.loads(resp.body)["usage"]["input_tokens"]
    text = query_cli(gw.data_dir, "show", row["id"]).stdout
    assert "[truncated" in text


def test_session_id_of_a_truncated_body_is_still_found(gw):
    # Claude Code's metadata.user_id comes after the messages: in a body over
    # the capture limit, it is past the part that is kept.
    user = new_user("trunc-ses")
    sid = str(uuid.uuid4())
    body = claude_code_like_body(int(2.5 * (1 << 20)), session=sid)
    assert post(gw.port, "/v1/messages", body, {LOGIN: user}, timeout=30).status == 200
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["session"] == sid, \
        "the client's session id was in the part of the body past the capture limit"


def test_show_rebuilds_streamed_response_exactly(gw):
    user = new_user("show-sse")
    body = (b'{ "model" : "gpt-5.4", "stream":true, "stream_options":{"include_usage":true},\n'
            b'  "messages":[{"role":"user","content":"caf\\u00e9 \xe2\x80\x94 stream"}],'
            b' "reasoning_effort":"high"}')
    resp = post(gw.port, "/v1/chat/completions", body, {LOGIN: user, "x-sim-tokens": "40"})
    assert resp.status == 200 and resp.complete and resp.body.endswith(b"data: [DONE]\n\n")
    [row] = wait_records(gw.data_dir, 1, user=user)
    shown = show_json(gw.data_dir, row["id"])
    assert shown["request_body"].encode() == body
    assert shown["response_body"].encode() == resp.body
    assert shown["stream"] is True and shown["state"] == "complete"
    assert tokens(shown) == last_usage_seen("openai", resp.body)
    assert shown["reasoning_tokens"] > 0
    # Headers as sent and received (framing aside); the request's in their order.
    received = {(k.lower(), v) for k, v in resp.headers}
    assert {tuple(h) for h in shown["response_headers"]} <= received
    assert ("content-type", "text/event-stream; charset=utf-8") in received
    assert ["host", "content-type", LOGIN, "x-sim-tokens", "content-length", "connection"] == \
        [k for k, _ in shown["request_headers"]]
    assert shown["ttfb_ms"] is not None and shown["ttfb_ms"] <= shown["duration_ms"]


def test_show_rebuilds_a_chunked_request_body(gw):
    user = new_user("chunked")
    parts = [b'{"messages": [{"role": "user", "content": "in ', b'pieces"}], ',
             b'"max_tokens": 16, ', b'"model": "claude-haiku-4-5"}']
    head = ("POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            "%s: %s\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            % (LOGIN, user)).encode()
    with socket.create_connection(("127.0.0.1", gw.port), 10) as s:
        s.sendall(head)
        for p in parts:
            s.sendall(b"%x\r\n%s\r\n" % (len(p), p))
            time.sleep(0.01)
        s.sendall(b"0\r\n\r\n")
        resp = read_response(s)
    assert resp.status == 200 and resp.complete
    [row] = wait_records(gw.data_dir, 1, user=user)
    shown = show_json(gw.data_dir, row["id"])
    assert shown["request_body"].encode() == b"".join(parts)
    assert shown["response_body"].encode() == resp.body


def test_show_gives_base64_for_a_body_that_is_not_utf8(gw):
    user = new_user("show-bin")
    body = b'{"model": "gpt-5.4", "messages": [{"role": "user", "content": "\xff\xfe latin \xe9"}]}'
    resp = post(gw.port, "/v1/chat/completions", body, {LOGIN: user})
    # aperture forwards it (it reads only the top-level "model"); the provider refuses it
    assert resp.status == 400
    assert resp.json()["error"]["message"] == "The request body is not valid JSON."
    [row] = wait_records(gw.data_dir, 1, user=user)
    shown = show_json(gw.data_dir, row["id"])
    assert shown["request_body_encoding"] == "base64"
    assert base64.b64decode(shown["request_body"]) == body
    assert shown["response_body"].encode() == resp.body


# ---------------------------------------------------------------------------
# 6. Sessions


def test_conversation_without_session_id_is_one_session(gw):
    user = new_user("conv")
    client = claude_client(gw, user)

    def converse(opening: str, turns: int) -> list:
        messages: list = []
        usages = []
        prompt = opening
        for turn in range(turns):
            # Claude Code style: the cache marker moves to the newest block each turn.
            for m in messages:
                if isinstance(m["content"], list):
                    for b in m["content"]:
                        b.pop("cache_control", None)
            messages.append({"role": "user", "content": [
                {"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}]})
            msg = client.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                                         system="You are terse.", messages=messages)
            usages.append(record_usage("anthropic", msg.usage.model_dump()))
            messages.append({"role": "assistant",
                             "content": [{"type": "text", "text": msg.content[0].text}]})
            prompt = "and then? (turn %d)" % (turn + 2)
        return usages

    first = converse("Tell me about LMDB", 4)
    second = converse("Something else entirely", 2)
    client.close()
    rows = wait_records(gw.data_dir, 6, user=user)
    assert len(rows) == 6
    rows.reverse()  # oldest first
    s1 = {r["session"] for r in rows[:4]}
    s2 = {r["session"] for r in rows[4:]}
    assert len(s1) == 1 and len(s2) == 1 and s1 != s2
    sessions = {s["session"]: s for s in query_json(gw.data_dir, "sessions", "--user", user)}
    assert set(sessions) == s1 | s2
    for sid, usages in ((s1.pop(), first), (s2.pop(), second)):
        tot = sessions[sid]
        assert tot["requests"] == len(usages) and tot["user"] == user
        assert {k: tot[k] for k in usages[0]} == {k: sum(u[k] for u in usages) for k in usages[0]}
        assert tot["models"] == ["claude-sonnet-4-6"]


def test_same_conversation_from_two_users_is_two_sessions(gw):
    a, b = new_user("twin-a"), new_user("twin-b")
    body = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "identical"}]}
    for user in (a, b):
        assert post(gw.port, "/v1/chat/completions", body, {LOGIN: user}).status == 200
    [ra] = wait_records(gw.data_dir, 1, user=a)
    [rb] = wait_records(gw.data_dir, 1, user=b)
    assert ra["session"] != rb["session"]


def test_claude_code_session_ids_group_requests(gw):
    user = new_user("cc")
    sid_meta = str(uuid.uuid4())
    sid_header = str(uuid.uuid4())
    client = claude_client(gw, user)
    meta = {"user_id": "user_%s_account_%s_session_%s" % ("cd" * 32, uuid.uuid4(), sid_meta)}
    for text in ("first question", "an unrelated second question"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=16, metadata=meta,
                               messages=[{"role": "user", "content": text}])
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=16, metadata=meta,
                                messages=[{"role": "user", "content": "a third, streamed"}]) as s:
        s.get_final_message()
    client.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                           extra_headers={"x-claude-code-session-id": sid_header},
                           messages=[{"role": "user", "content": "via the header"}])
    client.close()
    # As Claude Code sends it: a query string on the path, the header, no metadata.
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "another via the header"}]}
    resp = post(gw.port, "/v1/messages?beta=true", body,
                {LOGIN: user, "x-claude-code-session-id": sid_header})
    assert resp.status == 200 and resp.complete
    rows = wait_records(gw.data_dir, 5, user=user)
    assert rows[0]["path"] == "/v1/messages?beta=true"
    by_session: dict = {}
    for r in rows:
        by_session.setdefault(r["session"], []).append(r)
    assert sorted(by_session) == sorted([sid_meta, sid_header])
    assert len(by_session[sid_meta]) == 3 and len(by_session[sid_header]) == 2
    [tot] = query_json(gw.data_dir, "sessions", "--session", sid_meta)
    assert tot["requests"] == 3
    assert tot["output_tokens"] == sum(r["output_tokens"] for r in by_session[sid_meta])
    assert [r["id"] for r in query_json(gw.data_dir, "--session", sid_header)] == \
        [r["id"] for r in by_session[sid_header]]


# ---------------------------------------------------------------------------
# 7. Tool calls


def test_tool_calls_are_captured_in_both_formats(gw):
    user = new_user("tools")
    claude = claude_client(gw, user)
    gpt = gpt_client(gw, user)
    got = []  # (stream, arguments as the client saw them)
    msg = claude.messages.create(model="claude-haiku-4-5", max_tokens=64, tools=TOOLS_ANTHROPIC,
                                 messages=[{"role": "user", "content": "use the tool"}])
    [call] = [b for b in msg.content if b.type == "tool_use"]
    got.append(("anthropic", False, call.input))
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=64, tools=TOOLS_ANTHROPIC,
                                messages=[{"role": "user", "content": "tool again"}]) as s:
        final = s.get_final_message()
    [call] = [b for b in final.content if b.type == "tool_use"]
    got.append(("anthropic", True, call.input))
    out = gpt.chat.completions.create(model="gpt-5.4", tools=TOOLS_OPENAI,
                                      messages=[{"role": "user", "content": "call the tool"}])
    got.append(("openai", False,
                json.loads(out.choices[0].message.tool_calls[0].function.arguments)))
    args = ""
    for chunk in gpt.chat.completions.create(model="gpt-5.4", tools=TOOLS_OPENAI, stream=True,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "tool pls"}]):
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                args += tc.function.arguments or ""
    got.append(("openai", True, json.loads(args)))
    claude.close()
    gpt.close()

    rows = wait_records(gw.data_dir, 4, user=user)
    rows.reverse()
    assert len(rows) == 4
    for row, (api, stream, arguments) in zip(rows, got):
        assert row["api"].startswith(api) and row["stream"] is stream
        [tc] = row["tool_calls"]
        assert tc["name"] == "check_stock"
        assert json.loads(tc["arguments"]) == arguments
    # The CLI shows them too, and usage by tool counts them.
    listed = query_json(gw.data_dir, "--user", user)
    assert [r["tool_calls"] for r in listed] == [r["tool_calls"] for r in reversed(rows)]
    [by_tool] = query_json(gw.data_dir, "usage", "--by", "tool", "--user", user)
    assert by_tool["tool"] == "check_stock"
    assert by_tool["requests"] == 4 and by_tool["tool_calls"] == 4
    assert by_tool["output_tokens"] == sum(r["output_tokens"] for r in rows)
    # Four unrelated one-message conversations: every session lists the tool.
    for s in query_json(gw.data_dir, "sessions", "--user", user):
        assert s["tools"] == {"check_stock": s["requests"]}


def test_usage_by_tool_over_the_whole_store_counts_every_call(gw):
    """The unfiltered `usage --by tool` (rollups) agrees with the records."""
    user = new_user("tools2")
    for i in range(3):
        body = {"model": "gpt-5.4-mini", "tools": TOOLS_OPENAI,
                "messages": [{"role": "user", "content": "tool #%d" % i}]}
        assert post(gw.port, "/v1/chat/completions", body, {LOGIN: user}).status == 200
    wait_records(gw.data_dir, 3, user=user)
    everything = read_records(gw.data_dir)
    expect = sum(1 for r in everything for t in r["tool_calls"] if t["name"] == "check_stock")
    rows = {r["tool"]: r for r in query_json(gw.data_dir, "usage", "--by", "tool")}
    assert rows["check_stock"]["tool_calls"] == expect >= 3


# ---------------------------------------------------------------------------
# 9. The CLI against the live store


def test_query_cli_filters_and_formats(gw):
    user = new_user("cli")
    claude = claude_client(gw, user)
    gpt = gpt_client(gw, user)
    for i in range(3):
        claude.messages.create(model="claude-haiku-4-5", max_tokens=16 + i,
                               messages=[{"role": "user", "content": "cli %d" % i}])
    for i in range(2):
        gpt.chat.completions.create(model="gpt-5.4-mini",
                                    messages=[{"role": "user", "content": "cli gpt %d" % i}])
    claude.close()
    gpt.close()
    mine = wait_records(gw.data_dir, 5, user=user)
    assert len(mine) == 5

    rows = query_json(gw.data_dir, "--user", user)
    assert [r["id"] for r in rows] == [r["id"] for r in mine]  # newest first
    assert all(list(r) == list(RECORD_FIELDS) for r in rows)
    assert list(RECORD_FIELDS) == [
        "id", "time", "user", "node", "tags", "provider", "model", "api", "method", "path",
        "status", "stream", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_write_tokens", "reasoning_tokens", "cost_usd", "tool_calls", "session", "duration_ms",
        "ttfb_ms", "state", "error"]
    assert [r["model"] for r in query_json(gw.data_dir, "--user", user, "--model",
                                           "claude-haiku-4-5")] == ["claude-haiku-4-5"] * 3
    assert len(query_json(gw.data_dir, "--user", user, "--provider", "openai")) == 2
    assert len(query_json(gw.data_dir, "--user", user, "--since", "1h")) == 5
    assert query_json(gw.data_dir, "--user", user, "--until", "1h") == []
    assert len(query_json(gw.data_dir, "--user", user, "--limit", "2")) == 2
    assert len(query_json(gw.data_dir, "--user", user, "--status", "200")) == 5

    jsonl = query_cli(gw.data_dir, "--user", user, "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in jsonl] == rows
    csv_lines = query_cli(gw.data_dir, "--user", user, "--format", "csv").stdout.splitlines()
    assert csv_lines[0].split(",") == list(RECORD_FIELDS) and len(csv_lines) == 6
    table = query_cli(gw.data_dir, "--user", user, "--format", "table").stdout.splitlines()
    assert len(table) == 6 and all(len(line) <= 80 for line in table)
    assert all(r["id"] in "\n".join(table) for r in rows)

    by_model = {r["model"]: r for r in query_json(gw.data_dir, "usage", "--by", "model",
                                                   "--user", user)}
    for model in ("claude-haiku-4-5", "gpt-5.4-mini"):
        own = [r for r in mine if r["model"] == model]
        assert by_model[model]["requests"] == len(own)
        assert {k: by_model[model][k] for k in sums(own)} == sums(own)
    # Unfiltered usage comes from the rollups: it agrees with the records.
    everything = read_records(gw.data_dir)
    rolled = {r["model"]: r for r in query_json(gw.data_dir, "usage", "--by", "model")}
    for model in ("claude-haiku-4-5", "gpt-5.4-mini"):
        own = [r for r in everything if r["model"] == model]
        assert rolled[model]["requests"] == len(own)
        assert {k: rolled[model][k] for k in sums(own)} == sums(own)
    by_user = query_json(gw.data_dir, "usage", "--by", "user", "--since", "1h")
    [me] = [r for r in by_user if r["user"] == user]
    assert me["requests"] == 5 and {k: me[k] for k in sums(mine)} == sums(mine)

    sessions = query_json(gw.data_dir, "sessions", "--user", user)
    assert sum(s["requests"] for s in sessions) == 5
    assert {s["session"] for s in sessions} == {r["session"] for r in mine}
    assert query_cli(gw.data_dir, "sessions", "--user", user, "--format", "csv").stdout

    # Usage errors exit 2; an empty result is [] with exit 0.
    query_cli(gw.data_dir, "--format", "xml", expect=2)
    query_cli(gw.data_dir, "--since", "yesterday-ish", expect=2)
    query_cli(gw.data_dir, "usage", "--by", "colour", expect=2)
    assert query_json(gw.data_dir, "--user", "nobody@example.com") == []


def test_ttfb_is_recorded_for_a_complete_non_streamed_answer(gw):
    user = new_user("ttfb")
    body = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "quick"}]}
    assert post(gw.port, "/v1/chat/completions", body, {LOGIN: user}).status == 200
    [row] = wait_records(gw.data_dir, 1, user=user)
    assert row["state"] == "complete"
    assert row["ttfb_ms"] is not None, "no time to first byte for a non-streamed answer"
    assert 0 <= row["ttfb_ms"] <= row["duration_ms"]


# ---------------------------------------------------------------------------
# 10. No credentials in captures


def test_captures_hold_no_credentials(gw):
    user = new_user("creds")
    secrets = ["sk-ant-client-" + uuid.uuid4().hex, "sk-oai-client-" + uuid.uuid4().hex,
               "cookie-" + uuid.uuid4().hex, "proxy-" + uuid.uuid4().hex,
               "goog-" + uuid.uuid4().hex]
    ant = {"model": "claude-haiku-4-5", "max_tokens": 8, "stream": True,
           "messages": [{"role": "user", "content": "secret?"}]}
    oai = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "secret?"}]}
    h = {LOGIN: user, "X-Api-Key": secrets[0], "Authorization": "Bearer " + secrets[1],
         "Cookie": "session=" + secrets[2], "Proxy-Authorization": "Basic " + secrets[3],
         "x-goog-api-key": secrets[4]}
    assert post(gw.port, "/v1/messages", ant, h).status == 200
    assert post(gw.port, "/v1/chat/completions", oai, h).status == 200
    assert post(gw.port, "/v1/messages", {**ant, "model": "claude-nope"}, h).status == 404
    rows = wait_records(gw.data_dir, 3, user=user)
    assert len(rows) == 3
    for row in rows:
        for fmt in ("json", "text"):
            out = query_cli(gw.data_dir, "show", row["id"], "--format", fmt).stdout
            for secret in secrets + [ANT_KEY, OAI_KEY]:
                assert secret not in out, (fmt, secret)
        cap = get_capture(gw.data_dir, row["id"])
        names = {k for k, _ in cap["request_headers"]}
        assert {"x-api-key", "authorization"} <= names  # kept, with the value masked
    # Nor anywhere on disk: not in LMDB, not in a journal.
    for path in Path(gw.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets + [ANT_KEY, OAI_KEY]:
                assert secret.encode() not in data, (path, secret)
