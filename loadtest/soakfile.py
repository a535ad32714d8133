"""Soak scenario: every API format, streams and not, tool calls, injected
provider errors and clients that hang up, with every request counted by the
state aperture must record it in.

    aperture serve --workers 2 &          # the embedded default: every format, simulator upstream
    locust -f loadtest/soakfile.py --headless -u 32 -r 8 --run-time 10m --host http://127.0.0.1:8080

`tools/soak.py` runs it and then checks the capture store against the counts
this file writes at the end of the run (`APERTURE_SOAK_COUNTS`, a JSON file:
expected state -> number of requests). Model names are the embedded default's.
"""

from __future__ import annotations

import json
import os
import random
import threading
import uuid
from collections import Counter

from locust import HttpUser, between, events, task

COUNTS_FILE = os.environ.get("APERTURE_SOAK_COUNTS")
_counts: Counter = Counter()
_no_answer: Counter = Counter()  # requests that got no answer at all, by the client's error
_lock = threading.Lock()

CLAUDE, GPT, GEMINI = "claude-sonnet-4-6", "gpt-5.4-mini", "gemini-2.5-flash"
BEDROCK = "us.anthropic.claude-sonnet-4-6"
VERTEX = "/v1/projects/_aperture_auto_vertex_project_id_/locations/_aperture_auto_vertex_region_"
TOOLS = [{"name": "read_file", "description": "Read a file",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]


def expect(state: str) -> None:
    with _lock:
        _counts[state] += 1


@events.test_stop.add_listener
def _write_counts(**_kw) -> None:
    if COUNTS_FILE:
        with open(COUNTS_FILE, "w") as f:
            json.dump({"states": dict(_counts), "no_answer": dict(_no_answer)}, f)


class Agent(HttpUser):
    wait_time = between(0.02, 0.2)

    def on_start(self) -> None:
        self.session = uuid.uuid4().hex

    def _post(self, path: str, body: dict, name: str, state: str, headers: dict | None = None,
              stream: bool = False, hang_up: bool = False) -> None:
        """POST and read the answer whole (or, with hang_up, only its first
        bytes before closing the connection); count the state expected."""
        with self.client.post(path, json=body, stream=stream or hang_up, name=name,
                              headers={"x-session-id": self.session, **(headers or {})},
                              catch_response=True) as resp:
            if resp.status_code:  # an answer came: the gateway had the request
                expect(state)
            else:  # the request never got through: not the gateway's to record
                with _lock:
                    _no_answer[repr(resp.error)[:120]] += 1
            if hang_up:
                next(resp.iter_content(64), None)
                resp.close()  # unread: the connection is closed, the client goes away mid-stream
                resp.success()
                return
            for _ in resp.iter_content(65536):
                pass
            expected_status = 200 if state != "refused" else resp.status_code
            if resp.status_code == expected_status or state in ("incomplete",):
                resp.success()

    @task(6)
    def anthropic_stream(self) -> None:
        body = {"model": CLAUDE, "max_tokens": 128, "stream": True,
                "messages": [{"role": "user", "content": "use a tool if you need one"}]}
        if random.random() < 0.5:
            body["tools"] = TOOLS
        self._post("/v1/messages", body, "anthropic stream", "complete", stream=True)

    @task(3)
    def anthropic_json(self) -> None:
        self._post("/v1/messages", {"model": CLAUDE, "max_tokens": 64,
                                    "messages": [{"role": "user", "content": "hello"}]},
                   "anthropic", "complete")

    @task(3)
    def openai_chat(self) -> None:
        self._post("/v1/chat/completions", {"model": GPT, "stream": random.random() < 0.5,
                                            "stream_options": {"include_usage": True},
                                            "messages": [{"role": "user", "content": "hi"}]},
                   "openai chat", "complete", stream=True)

    @task(3)
    def responses(self) -> None:
        self._post("/v1/responses", {"model": GPT, "input": "write a haiku",
                                     "stream": random.random() < 0.5}, "responses", "complete",
                   stream=True)

    @task(2)
    def gemini(self) -> None:
        alt = "?alt=sse" if random.random() < 0.5 else ""
        self._post("/v1beta/models/%s:streamGenerateContent%s" % (GEMINI, alt),
                   {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}, "gemini stream",
                   "complete", stream=True)

    @task(1)
    def vertex_claude(self) -> None:
        self._post(VERTEX + "/publishers/anthropic/models/%s:streamRawPredict" % CLAUDE,
                   {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "stream": True,
                    "messages": [{"role": "user", "content": "hello"}]}, "vertex claude", "complete",
                   stream=True)

    @task(2)
    def bedrock(self) -> None:
        action = random.choice(["converse", "converse-stream"])
        self._post("/bedrock/model/%s/%s" % (BEDROCK, action),
                   {"messages": [{"role": "user", "content": [{"text": "hello"}]}]},
                   "bedrock " + action, "complete", stream=True)

    @task(1)
    def provider_error(self) -> None:
        """A provider's error is relayed as it is: the exchange is complete."""
        self._post("/v1/messages", {"model": CLAUDE, "max_tokens": 8,
                                    "messages": [{"role": "user", "content": "x"}]},
                   "injected 429/500", "complete",
                   headers={"x-sim-error": random.choice(["429", "500"])})

    @task(1)
    def cut(self) -> None:
        self._post("/v1/chat/completions", {"model": GPT, "stream": True,
                                            "messages": [{"role": "user", "content": "x"}]},
                   "injected cut", "incomplete", headers={"x-sim-error": "cut"}, stream=True)

    @task(1)
    def hang_up(self) -> None:
        self._post("/v1/messages", {"model": CLAUDE, "max_tokens": 400, "stream": True,
                                    "messages": [{"role": "user", "content": "a long answer"}]},
                   "client hangs up", "client_disconnected",
                   headers={"x-sim-tokens": "200", "x-sim-token-rate": "50"}, hang_up=True)

    @task(1)
    def refused(self) -> None:
        self._post("/v1/messages", {"model": "no-such-model", "max_tokens": 8,
                                    "messages": [{"role": "user", "content": "x"}]},
                   "refused: unknown model", "refused")
