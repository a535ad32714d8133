"""Every fault in every format, on raw sockets: what reaches the wire when a
stream is cut, stalls, ends with the format's own mid-stream error, or is
refused with a status, and when a JSON answer is cut or overloaded."""

from __future__ import annotations

import json
import socket

import pytest
from botocore.eventstream import EventStreamBuffer


from .conftest import dechunk, serve_simulator

CLAUDE_BODY = {"max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
VERTEX = "/v1/projects/p/locations/l/publishers/%s/models/%s"


def ends_with_sse_event(name: bytes):
    return lambda body: body.rstrip(b"\n").rpartition(b"\n\n")[2].startswith(b"event: " + name + b"\n")


def ends_with_exception(body: bytes) -> bool:
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    messages = list(buffer)
    return messages[-1].headers[":message-type"] == "exception" and all(
        m.headers[":message-type"] == "event" for m in messages[:-1])


def gemini_array_error(body: bytes) -> bool:
    elements = json.loads(body)
    return "error" in elements[-1] and all("candidates" in e for e in elements[:-1])


def gemini_sse_error(body: bytes) -> bool:
    """SSE events, then Google's error object as raw JSON lines."""
    events, _, raw = body.rpartition(b"\r\n\r\n")
    return events.startswith(b"data: ") and raw.startswith(b"{") and json.loads(raw)["error"]["code"] == 503


# (name, path, body, mid-stream error check)
STREAMS = [
    ("anthropic", "/v1/messages", {**CLAUDE_BODY, "model": "claude-opus-4-7", "stream": True},
     ends_with_sse_event(b"error")),
    ("openai_chat", "/v1/chat/completions",
     {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}], "stream": True},
     lambda body: body.rpartition(b"\n\n")[0].rpartition(b"\n\n")[2].startswith(b'data: {"error":')),
    ("openai_responses", "/v1/responses", {"model": "gpt-5.4", "input": "hi", "stream": True},
     ends_with_sse_event(b"response.failed")),
    ("gemini_sse", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", GEMINI_BODY,
     gemini_sse_error),
    ("gemini_array", "/v1/models/gemini-2.5-flash:streamGenerateContent", GEMINI_BODY, gemini_array_error),
    ("vertex_gemini", VERTEX % ("google", "gemini-2.5-flash") + ":streamGenerateContent", GEMINI_BODY,
     gemini_array_error),
    ("vertex_claude", VERTEX % ("anthropic", "claude-sonnet-4-5") + ":streamRawPredict",
     {**CLAUDE_BODY, "anthropic_version": "vertex-2023-10-16", "stream": True}, ends_with_sse_event(b"error")),
    ("bedrock_invoke", "/model/anthropic.claude-v1:0/invoke-with-response-stream",
     {**CLAUDE_BODY, "anthropic_version": "bedrock-2023-05-31"}, ends_with_exception),
    ("bedrock_converse", "/model/anthropic.claude-v1:0/converse-stream",
     {"messages": [{"role": "user", "content": [{"text": "hello"}]}]}, ends_with_exception),
]

# (name, path, body, the status of an overload)
WHOLE = [
    ("anthropic", "/v1/messages", {**CLAUDE_BODY, "model": "claude-opus-4-7"}, 529),
    ("openai_chat", "/v1/chat/completions", {"model": "gpt-5.4", "messages": []}, 503),
    ("openai_responses", "/v1/responses", {"model": "gpt-5.4", "input": "hi"}, 503),
    ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", GEMINI_BODY, 503),
    ("vertex_gemini", VERTEX % ("google", "gemini-2.5-flash") + ":generateContent", GEMINI_BODY, 503),
    ("vertex_claude", VERTEX % ("anthropic", "claude-sonnet-4-5") + ":rawPredict",
     {**CLAUDE_BODY, "anthropic_version": "vertex-2023-10-16"}, 529),
    ("bedrock_invoke", "/model/m/invoke", {**CLAUDE_BODY, "anthropic_version": "bedrock-2023-05-31"}, 503),
    ("bedrock_converse", "/model/m/converse", {"messages": [{"role": "user", "content": [{"text": "x"}]}]}, 503),
]


@pytest.fixture(scope="module")
def sim(loop_thread):
    with serve_simulator(loop_thread) as sim:
        yield sim


def post(path: str, body: dict, fault: str | None = None, extra: bytes = b"") -> bytes:
    data = json.dumps(body).encode()
    head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
    if fault is not None:
        head += b"x-sim-error: " + fault.encode() + b"\r\n"
    return head + extra + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(data) + data


def exchange(port: int, request: bytes, quiet: float | None = None) -> tuple[bytes, bytes, bool, bool]:
    """(head, body so far, body complete, timed out) of one answer; with
    `quiet`, give up once that many seconds pass without bytes after the
    first body bytes arrived (a stalled answer)."""
    data = b""
    timed_out = False
    with socket.create_connection(("127.0.0.1", port), 10.0) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                data += chunk
                head_end = data.find(b"\r\n\r\n")
                if quiet is not None and 0 <= head_end < len(data) - 4:
                    sock.settimeout(quiet)
        except TimeoutError:
            timed_out = True
    head, _, rest = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body, complete = dechunk(rest)
    else:
        length = int(head.lower().partition(b"content-length: ")[2].partition(b"\r\n")[0])
        body, complete = rest, len(rest) == length
    return head, body, complete, timed_out


@pytest.mark.parametrize("name, path, body, failed", STREAMS, ids=[s[0] for s in STREAMS])
def test_stream_faults(sim, name, path, body, failed):
    head, whole, complete, _ = exchange(sim.port, post(path, body))
    assert head.startswith(b"HTTP/1.1 200 ") and complete and not failed(whole)

    head, cut, complete, _ = exchange(sim.port, post(path, body, "cut"))
    assert head.startswith(b"HTTP/1.1 200 ") and not complete
    assert 0 < len(cut) < len(whole)

    head, stalled, complete, timed_out = exchange(sim.port, post(path, body, "stall"), quiet=0.3)
    assert head.startswith(b"HTTP/1.1 200 ") and timed_out and not complete
    assert 0 < len(stalled) < len(whole)

    head, broken, complete, _ = exchange(sim.port, post(path, body, "error-event"))
    assert head.startswith(b"HTTP/1.1 200 ") and complete and failed(broken)

    head, slow, complete, _ = exchange(sim.port, post(path, body, "slow-head", b"x-sim-latency: 0.05\r\n"))
    assert head.startswith(b"HTTP/1.1 200 ") and complete and not failed(slow)
    assert abs(len(slow) - len(whole)) < 4  # the whole answer (Bedrock's latency figures grow a digit)

    head, refused, complete, _ = exchange(sim.port, post(path, body, "429"))
    assert head.startswith(b"HTTP/1.1 429 ") and complete and refused.lstrip().startswith(b"{")


@pytest.mark.parametrize("name, path, body, overloaded", WHOLE, ids=[w[0] for w in WHOLE])
def test_json_faults(sim, name, path, body, overloaded):
    head, whole, complete, _ = exchange(sim.port, post(path, body))
    assert head.startswith(b"HTTP/1.1 200 ") and complete and json.loads(whole)

    head, cut, complete, _ = exchange(sim.port, post(path, body, "cut"))
    assert head.startswith(b"HTTP/1.1 200 ") and not complete and 0 < len(cut) < len(whole)

    head, stalled, complete, timed_out = exchange(sim.port, post(path, body, "stall"), quiet=0.3)
    assert timed_out and not complete and len(stalled) == len(whole) // 2

    head, error, complete, _ = exchange(sim.port, post(path, body, "error-event"))
    assert head.startswith(b"HTTP/1.1 %d " % overloaded) and complete and json.loads(error)

    for status in (400, 404, 500):
        head, error, complete, _ = exchange(sim.port, post(path, body, str(status)))
        assert head.startswith(b"HTTP/1.1 %d " % status) and json.loads(error)


@pytest.mark.parametrize("name, path, body, overloaded", WHOLE, ids=[w[0] for w in WHOLE])
def test_the_model_name_carries_the_fault(sim, name, path, body, overloaded):
    if "model" in body:
        body = {**body, "model": body["model"] + "-sim-error-429"}
    elif "/model/" in path:
        path = path.replace("/model/m/", "/model/m-sim-error-429/")
    else:
        path = path.replace(":", "-sim-error-429:", 1) if "/models/" in path else path
    head, _, complete, _ = exchange(sim.port, post(path, body))
    assert head.startswith(b"HTTP/1.1 429 ") and complete
