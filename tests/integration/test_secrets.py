"""Secrets never leak: traffic of every kind with distinctive provider keys
and client credentials, then every byte aperture wrote or answered is
searched for them: the log, the store (LMDB and journals), `aperture query` in
every format, `query show` of every record, error bodies, the `/api/*`
answers and `/metrics`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from .conftest import launch_gateway, provider_config, wait_for
from .test_capture import LOGIN, post, read_records

PROVIDER_KEYS = {
    "anthropic": "sk-ant-PROVIDERSECRET-anthropic",
    "openai": "sk-PROVIDERSECRET-openai",
    "gemini": "AIza-PROVIDERSECRET-gemini",
    "bedrock": "ABSK-PROVIDERSECRET-bedrock",
}
COMMAND_TOKEN = "ya29.PROVIDERSECRET-vertex-token"
CLIENT = {
    "bearer": "sk-CLIENTSECRET-bearer",
    "x-api-key": "sk-ant-CLIENTSECRET-xapikey",
    "goog": "AIza-CLIENTSECRET-goog",
    "query": "AIza-CLIENTSECRET-query",
    "sigv4": "AKIACLIENTSECRETSIGV4",
    "session-token": "CLIENTSECRET-session-token",
    "passthrough": "sk-ant-CLIENTSECRET-passthrough",
}
SECRETS = list(PROVIDER_KEYS.values()) + [COMMAND_TOKEN] + list(CLIENT.values())
ADMIN = "ops@example.com"
AUTO = "/v1/projects/_aperture_auto_vertex_project_id_/locations/_aperture_auto_vertex_region_"


def config(sim_url: str, tmp_path: Path) -> dict:
    token = tmp_path / "token.sh"
    token.write_text("#!/bin/sh\necho %s\n" % COMMAND_TOKEN)
    token.chmod(0o755)
    providers = {
        "anthropic": {"baseurl": sim_url, "apikey": PROVIDER_KEYS["anthropic"], "authorization": "x-api-key",
                      "models": ["claude-sonnet-4-6"], "compatibility": {"anthropic_messages": True}},
        "openai": {"baseurl": sim_url, "apikey": PROVIDER_KEYS["openai"], "models": ["gpt-5.4"],
                   "compatibility": {"openai_chat": True, "openai_responses": True}},
        "gemini": {"baseurl": sim_url, "apikey": PROVIDER_KEYS["gemini"], "authorization": "x-goog-api-key",
                   "models": ["gemini-2.5-pro"], "compatibility": {"gemini": True}},
        "vertex": {"baseurl": sim_url, "apikey_command": [str(token)], "vertex_project": "p1",
                   "vertex_region": "r1", "models": ["claude-opus-4-7"], "compatibility": {"vertex": True}},
        "bedrock": {"baseurl": sim_url, "apikey": PROVIDER_KEYS["bedrock"], "models": ["amazon.nova-pro-v1:0"],
                    "compatibility": {"bedrock": True}},
        "subs": {"baseurl": sim_url, "authorization": "x-api-key", "auth_mode": "passthrough",
                 "models": ["claude-haiku-4-5"], "compatibility": {"anthropic_messages": True}},
    }
    grants = [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [{"role": "user"}, {"models": "**"}]}},
              {"src": [ADMIN], "app": {"tailscale.com/cap/aperture": [{"role": "admin"}]}}]
    return provider_config(sim_url, providers=providers, grants=grants)


def traffic(port: int) -> list[bytes]:
    """Requests of every kind; returns every answer's bytes."""
    user = {LOGIN: "alice@example.com"}
    answers = []
    claude = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        ("/v1/messages", claude, {"x-api-key": CLIENT["x-api-key"]}),
        ("/v1/messages", dict(claude, stream=True), {"authorization": "Bearer " + CLIENT["bearer"]}),
        ("/v1/messages", dict(claude, stream=True), {"x-api-key": CLIENT["x-api-key"], "x-sim-error": "cut"}),
        ("/v1/messages", dict(claude, model="claude-nope"), {"x-api-key": CLIENT["x-api-key"]}),
        ("/v1/messages", dict(claude, model="claude-haiku-4-5"), {"x-api-key": CLIENT["passthrough"]}),
        ("/v1/chat/completions", {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]},
         {"authorization": "Bearer " + CLIENT["bearer"], "x-sim-error": "429"}),
        ("/v1/responses", {"model": "gpt-5.4", "input": "hi", "stream": True},
         {"authorization": "Bearer " + CLIENT["bearer"]}),
        ("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=" + CLIENT["query"],
         {"contents": [{"parts": [{"text": "hi"}]}]}, {"x-goog-api-key": CLIENT["goog"]}),
        ("/v1beta/models/gemini-2.5-pro:generateContent?key=" + CLIENT["query"], {"contents": "broken"},
         {"x-goog-api-key": CLIENT["goog"], "x-sim-error": "500"}),
        (AUTO + "/publishers/anthropic/models/claude-opus-4-7:rawPredict",
         {"anthropic_version": "vertex-2023-10-16", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
         {"authorization": "Bearer " + CLIENT["bearer"]}),
        ("/bedrock/model/amazon.nova-pro-v1:0/converse-stream",
         {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
         {"authorization": "AWS4-HMAC-SHA256 Credential=%s/20260101/us-east-1/bedrock/aws4_request, "
                           "SignedHeaders=host, Signature=00" % CLIENT["sigv4"],
          "x-amz-security-token": CLIENT["session-token"], "x-amz-date": "20260101T000000Z"}),
        ("/bedrock/model/amazon.nova-pro-v1:0/converse", "{not json",
         {"authorization": "Bearer " + CLIENT["bearer"]}),
    ]
    for path, body, headers in cases:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        resp = post(port, path, raw, {**user, **headers})
        assert resp.status, path
        answers.append(resp.body)
        answers.append(json.dumps(resp.headers).encode())
    return answers


def get(url: str, path: str, login: str) -> bytes:
    req = urllib.request.Request(url + path, headers={LOGIN: login})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        return e.read()


def query(data_dir, *args: str) -> bytes:
    return subprocess.run([sys.executable, "-m", "aperture", "query", *args, "--data-dir", str(data_dir)],
                          capture_output=True, timeout=60, check=True).stdout


def test_no_secret_reaches_a_log_a_store_a_query_or_an_answer(tmp_path, simulator):
    gw = launch_gateway(tmp_path, config(simulator.url, tmp_path), identity="serve-headers")
    try:
        answers = traffic(gw.port)
        rows = wait_for(lambda: (lambda r: r if len(r) >= 12 else None)(read_records(gw.data_dir)))
        found = {"answers": b"\n".join(answers)}
        for path in ("/api/whoami", "/api/providers", "/api/config", "/v1/models", "/api/usage?by=model",
                     "/api/sessions", "/api/summary", "/metrics", "/ui/", "/ui/logs/"):
            found["GET " + path] = get(gw.url, path, ADMIN)
        for row in rows:
            for part in ("", "/request_body", "/response_body"):
                found["capture %s%s" % (row["id"], part)] = get(gw.url, "/api/captures/%s%s" % (row["id"], part), ADMIN)
        for fmt in ("table", "json", "jsonl", "csv"):
            found["query " + fmt] = query(gw.data_dir, "--format", fmt, "--limit", "100")
        found["usage"] = query(gw.data_dir, "usage", "--by", "model")
        found["sessions"] = query(gw.data_dir, "sessions")
        for row in rows:
            found["show " + row["id"]] = query(gw.data_dir, "show", row["id"], "--format", "json")
    finally:
        gw.stop()
    found["log"] = gw.log_path.read_bytes()
    for path in Path(gw.data_dir).rglob("*"):
        if path.is_file():
            found["file " + str(path.relative_to(gw.data_dir))] = path.read_bytes()
    assert len(found) > 40
    for where, data in found.items():
        for secret in SECRETS:
            for form in (secret.encode(), base64.b64encode(secret.encode())):
                assert form not in data, "%s found in %s" % (secret, where)
