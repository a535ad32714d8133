"""Known traffic for the dashboard's tests: every API format the gateway
serves, streamed and not, tool calls, a refused exchange, a cut stream, and a
prompt holding a <script> tag; and the configuration it runs on."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import quote

from .conftest import free_port

LOGIN = "tailscale-user-login"
ADMIN = "alice@example.com"
USER = "bob@example.com"
METRICS = "prometheus@example.com"  # serve-headers identities have no tags
AUTO = "/v1/projects/_aperture_auto_vertex_project_id_/locations/_aperture_auto_vertex_region_"
SCRIPT_PROMPT = "<script>document.title='pwned'</script> hello"
TOOLS = [{"name": "check_stock", "description": "Stock level for a SKU",
          "input_schema": {"type": "object", "properties": {"sku": {"type": "string"}},
                           "required": ["sku"]}}]


def dashboard_config(sim_url: str) -> dict:
    dead = free_port()  # nothing listens there: the provider is down
    providers = {
        "anthropic": {"baseurl": sim_url, "apikey": "sk-ant", "authorization": "x-api-key",
                      "models": ["claude-sonnet-4-6", "claude-haiku-4-5"],
                      "compatibility": {"anthropic_messages": True}, "cost_basis": "anthropic"},
        "openai": {"baseurl": sim_url, "apikey": "sk-oai", "models": ["gpt-5.4", "gpt-5.4-mini"],
                   "compatibility": {"openai_chat": True, "openai_responses": True},
                   "cost_basis": "openai"},
        "gemini": {"baseurl": sim_url, "apikey": "gk", "authorization": "x-goog-api-key",
                   "models": ["gemini-2.5-flash"], "compatibility": {"gemini_generate_content": True},
                   "cost_basis": "google"},
        "vertex": {"baseurl": sim_url, "apikey": "ya29", "vertex_project": "p", "vertex_region": "r",
                   "models": ["gemini-2.5-pro", "claude-haiku-4-5"], "compatibility": {"vertex": True},
                   "cost_basis": "vertex"},
        "bedrock": {"baseurl": sim_url, "apikey": "br", "compatibility": {"bedrock": True},
                    "models": ["us.anthropic.claude-sonnet-4-6", "amazon.nova-pro-v1:0"],
                    "cost_basis": "bedrock"},
        "local": {"baseurl": sim_url, "auth_mode": "none", "models": ["qwen3-coder:30b"],
                  "compatibility": {"openai_chat": True}},
        "down": {"baseurl": "http://127.0.0.1:%d" % dead, "apikey": "x",
                 "models": ["down-model"], "compatibility": {"openai_chat": True},
                 "prices": {"down-model": {"input": 1, "output": 2}}},
    }
    grants = [
        {"src": [ADMIN], "app": {"tailscale.com/cap/aperture": [{"role": "admin"}, {"models": "**"}]}},
        {"src": [USER], "app": {"tailscale.com/cap/aperture": [{"role": "user"}, {"models": "**"}]}},
        {"src": [METRICS], "app": {"tailscale.com/cap/aperture": [{"read_metrics": True}]}},
    ]
    return {"providers": providers, "grants": grants}


def request(base: str, method: str, path: str, body=None, *, login: str | None = None,
            headers: dict | None = None, timeout: float = 20.0) -> tuple[int, dict, bytes]:
    host, port = base.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    h = {"content-type": "application/json"} if body is not None else {}
    if login:
        h[LOGIN] = login
    h.update(headers or {})
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        try:
            payload = resp.read()
        except (http.client.IncompleteRead, ConnectionError) as e:  # a cut stream
            payload = getattr(e, "partial", b"")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
    finally:
        conn.close()


def get_json(base: str, path: str, login: str, **headers):
    status, _, body = request(base, "GET", path, login=login, headers=headers)
    return status, json.loads(body) if body else None


def send_known_traffic(base: str, login: str) -> int:
    """Every format once or more; returns the number of exchanges sent."""
    msgs = [{"role": "user", "content": "ping"}]
    calls = [
        ("POST", "/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64,
                                  "messages": [{"role": "user", "content": SCRIPT_PROMPT}]}),
        ("POST", "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
                                  "tools": TOOLS, "messages": [
                                      {"role": "user", "content": "use the tool for X-91"}]}),
        ("POST", "/v1/chat/completions", {"model": "gpt-5.4-mini", "messages": msgs}),
        ("POST", "/v1/chat/completions", {"model": "gpt-5.4", "messages": msgs, "stream": True,
                                          "stream_options": {"include_usage": True}}),
        ("POST", "/v1/chat/completions", {"model": "qwen3-coder:30b", "messages": msgs}),
        ("POST", "/v1/responses", {"model": "gpt-5.4", "input": "ping"}),
        ("POST", "/v1/responses", {"model": "gpt-5.4-mini", "input": "ping", "stream": True}),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent",
         {"contents": [{"role": "user", "parts": [{"text": "ping"}]}]}),
        ("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
         {"contents": [{"role": "user", "parts": [{"text": "ping again"}]}]}),
        ("POST", AUTO + "/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
         {"contents": [{"role": "user", "parts": [{"text": "ping"}]}]}),
        ("POST", AUTO + "/publishers/anthropic/models/claude-haiku-4-5:rawPredict",
         {"anthropic_version": "vertex-2023-10-16", "max_tokens": 32, "messages": msgs}),
        ("POST", "/bedrock/model/%s/converse-stream" % quote("us.anthropic.claude-sonnet-4-6", safe=""),
         {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
        ("POST", "/bedrock/model/amazon.nova-pro-v1:0/converse",
         {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
        ("POST", "/bedrock/model/%s/invoke-with-response-stream" % quote(
            "us.anthropic.claude-sonnet-4-6", safe=""),
         {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 32, "messages": msgs}),
        # refused: no such model
        ("POST", "/v1/messages", {"model": "no-such-model", "max_tokens": 8, "messages": msgs}),
    ]
    for method, path, body in calls:
        status, _, _ = request(base, method, path, body, login=login)
        assert status in (200, 404), (path, status)
    # cut: the simulator stops the stream half way
    request(base, "POST", "/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64,
                                           "stream": True, "messages": msgs},
            login=login, headers={"x-sim-error": "cut"})
    return len(calls) + 1


def raw_get(port: int, path: str, host: str, extra: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
                   % (path, host, extra)).encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out
