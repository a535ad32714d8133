"""Load test of a running aperture with a mix of agent-like traffic.

    aperture serve &                                    # embedded default: the simulator upstream
    locust -f loadtest/locustfile.py --headless -u 64 -r 16 --run-time 60s \
        --host http://127.0.0.1:8080

Each simulated user is a coding agent: it keeps a conversation that grows
turn by turn (as Claude Code and Codex do), mostly streams, sometimes calls a
tool, and now and then asks the OpenAI Chat endpoint or lists its models.
Streaming tasks report time to the first event and the whole stream
separately. Point it only at gateways on this machine or your own test hosts;
the run stops by itself with --run-time.

Options (environment): APERTURE_LT_CLAUDE_MODEL, APERTURE_LT_GPT_MODEL (models
the gateway's config serves; defaults match the embedded default),
APERTURE_LT_MAX_TURNS (conversation length before a new one starts, 20).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid

from locust import HttpUser, between, events, task

CLAUDE = os.environ.get("APERTURE_LT_CLAUDE_MODEL", "claude-sonnet-4-6")
GPT = os.environ.get("APERTURE_LT_GPT_MODEL", "gpt-5.4-mini")
MAX_TURNS = int(os.environ.get("APERTURE_LT_MAX_TURNS", "20"))

SYSTEM = "You are a careful coding agent working in a large repository. " * 40
TOOLS = [{"name": "read_file", "description": "Read a file from the workspace",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}},
                           "required": ["path"]}},
         {"name": "run_tests", "description": "Run the test suite",
          "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}}}]


class Agent(HttpUser):
    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        self.session = "session_" + uuid.uuid4().hex
        self.messages: list[dict] = []

    def _turn(self, text: str) -> None:
        if len(self.messages) >= 2 * MAX_TURNS:
            self.on_start()
        self.messages.append({"role": "user", "content": text})

    def _body(self, stream: bool, tools: bool) -> dict:
        body = {"model": CLAUDE, "max_tokens": 256, "system": SYSTEM, "stream": stream,
                "metadata": {"user_id": "user_loadtest_account_0_" + self.session},
                "messages": self.messages}
        if tools:
            body["tools"] = TOOLS
        return body

    @task(6)
    def claude_stream(self) -> None:
        self._turn("Continue with the next step; use a tool if you need one.")
        body = self._body(stream=True, tools=random.random() < 0.5)
        start = time.perf_counter()
        with self.client.post("/v1/messages", json=body, stream=True, catch_response=True,
                              headers={"anthropic-version": "2023-06-01", "x-api-key": "-"},
                              name="/v1/messages stream") as resp:
            if resp.status_code != 200:
                resp.failure("status %d: %s" % (resp.status_code, resp.text[:200]))
                return
            first = None
            text = []
            for line in resp.iter_lines():
                if first is None and line:
                    first = time.perf_counter()
                    events.request.fire(request_type="SSE", name="first event",
                                        response_time=(first - start) * 1000, response_length=0,
                                        exception=None, context={})
                if line.startswith(b"data: "):
                    data = json.loads(line[6:])
                    if data.get("type") == "content_block_delta" and data["delta"].get("type") == "text_delta":
                        text.append(data["delta"]["text"])
                    if data.get("type") == "message_stop":
                        resp.success()
            self.messages.append({"role": "assistant", "content": "".join(text) or "ok"})

    @task(2)
    def claude_json(self) -> None:
        self._turn("Summarise what you found.")
        resp = self.client.post("/v1/messages", json=self._body(stream=False, tools=False),
                                headers={"anthropic-version": "2023-06-01", "x-api-key": "-"},
                                name="/v1/messages")
        if resp.status_code == 200:
            content = resp.json().get("content") or [{"type": "text", "text": "ok"}]
            self.messages.append({"role": "assistant", "content": content})

    @task(2)
    def openai_chat(self) -> None:
        self.client.post("/v1/chat/completions", name="/v1/chat/completions",
                         headers={"authorization": "Bearer -"},
                         json={"model": GPT, "stream": random.random() < 0.5,
                               "stream_options": {"include_usage": True},
                               "messages": [{"role": "user", "content": "Write a haiku about tailnets."}]})

    @task(1)
    def models(self) -> None:
        self.client.get("/v1/models", name="/v1/models")
