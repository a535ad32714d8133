"""Records and workloads for the capture tests (also used by tools/bench_*.py)."""

from __future__ import annotations

import os
import random
import signal
import time

import orjson

from aperture.capture.record import COMPLETE, Record, Usage
from aperture.ids import new_id


def make_record(**kw) -> Record:
    base = dict(
        id=new_id(), time=time.time(), user="alice@example.com", node_name="laptop",
        node_id="nABC", tags=(), provider="anthropic", model="claude-sonnet-4-5",
        api="anthropic_messages", method="POST", path="/v1/messages", status=200,
        stream=False, usage=Usage(10, 20, 0, 0, 0), tool_calls=(), duration_ms=12.5,
        ttfb_ms=3.25, state=COMPLETE, error="",
        request_headers=(("content-type", "application/json"),),
        response_headers=(("content-type", "application/json"),),
        request_body=b'{"model":"claude-sonnet-4-5","max_tokens":16,'
                     b'"messages":[{"role":"user","content":"hello"}]}',
        response_body=b'{"type":"message","content":[{"type":"text","text":"hi"}]}',
    )
    base.update(kw)
    return Record(**base)


# ---------------------------------------------------------------------------
# A Claude-Code-like session: large system prompt and tool definitions, a
# growing message history, the cache marker on the newest message.

_WORDS = ("the file function return value error test module import class config request "
          "response stream token session index write read query batch commit replay "
          "journal store block hash purge retention user model provider").split()


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def claude_code_bodies(turns: int = 50, seed: int = 1, session: str = "") -> list[bytes]:
    """Request bodies of one agentic session, one per turn."""
    rng = random.Random(seed)
    sid = session or "5f1c7a2e-0d7e-4b8e-9a51-3c0e6f2b9d11"
    system = [{"type": "text", "text": "You are Claude Code. " + _text(rng, 2500),
               "cache_control": {"type": "ephemeral"}}]
    tools = []
    for i in range(18):
        tools.append({
            "name": f"Tool{i}", "description": _text(rng, 250),
            "input_schema": {"type": "object", "properties": {
                f"p{j}": {"type": "string", "description": _text(rng, 20)} for j in range(5)},
                "required": ["p0"]}})
    messages: list[dict] = [{"role": "user", "content": [{"type": "text",
                                                          "text": _text(rng, 60)}]}]
    out = []
    for turn in range(turns):
        msgs = [dict(m) for m in messages]
        last = dict(msgs[-1])
        last["content"] = [dict(b) for b in last["content"]]
        last["content"][-1]["cache_control"] = {"type": "ephemeral"}
        msgs[-1] = last
        body = {"model": "claude-sonnet-4-5", "messages": msgs, "temperature": 1,
                "system": system, "tools": tools,
                "metadata": {"user_id": f"user_{'ab' * 32}_account_"
                                        f"0c6f3e1a-1111-2222-3333-444455556666_session_{sid}"},
                "max_tokens": 32000, "stream": True}
        out.append(orjson.dumps(body))
        tool_id = f"toolu_{turn:04d}{rng.randrange(10**8):08d}"
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": _text(rng, 40)},
            {"type": "tool_use", "id": tool_id, "name": f"Tool{rng.randrange(18)}",
             "input": {"p0": _text(rng, 8)}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id,
             "content": _text(rng, rng.randrange(50, 600))}]})
    return out


def sse_response(rng: random.Random, n_events: int = 30) -> bytes:
    parts = [b'event: message_start\ndata: {"type":"message_start"}\n\n']
    for _ in range(n_events):
        parts.append(b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                     b'"delta":{"type":"text_delta","text":"' + _text(rng, 5).encode()
                     + b'"}}\n\n')
    parts.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    return b"".join(parts)


# ---------------------------------------------------------------------------
# Worker processes (started with the "spawn" method)


def writer_process(data_dir: str, worker: int, count: int, ack_path: str | None = None,
                   big: bool = False, map_size: int = 1 << 30, writer: str = "thread") -> None:
    """Submit `count` records; append each id to `ack_path` once submit returned."""
    from aperture.capture.store import CaptureStore
    store = CaptureStore(data_dir, batch_max=64, batch_linger=0.001, map_size=map_size,
                         writer=writer)
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT) if ack_path else None
    rng = random.Random(worker)
    for i in range(count):
        body = (b'{"model":"m","messages":[{"role":"user","content":"'
                + _text(rng, 400 if big else 5).encode() + b'"}]}')
        rec = make_record(user=f"user{worker}", model=f"model{i % 3}",
                          usage=Usage(worker + 1, i, 1, 2, 3), request_body=body,
                          session_hint=f"w{worker}-s{i % 4}")
        store.submit(rec)
        if ack is not None:
            os.write(ack, rec.id.encode() + b"\n")
    if ack is None:
        store.close()
    else:
        # Keep going until killed.
        while True:
            time.sleep(1)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
