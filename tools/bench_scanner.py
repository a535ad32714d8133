"""Throughput of the native byte scanners against their pure-Python twins.

    python tools/bench_scanner.py [--size-mb 1] [--seconds 1.0]

Builds a request body shaped like a Claude Code turn (a large system prompt,
tools with JSON schemas, a long `messages` array of text, tool_use and
tool_result blocks, and the top-level "model" key AFTER the messages), then
times `ModelScanner` over it, whole and in 64 KiB chunks. Then times the
response meters (`Meter(framing, dialect)`) over realistic streams of each
provider format, generated here (text deltas, pings, tool calls, cumulative
usage, Bedrock's base64 chunks with filler), whole and in 4 KiB chunks:

    Anthropic SSE               sse × anthropic
    OpenAI Responses SSE        sse × openai_responses
    Gemini SSE (alt=sse)        sse × gemini
    Gemini JSON array           json_array × gemini
    Bedrock invoke event-stream eventstream × anthropic
    Bedrock Converse stream     eventstream × converse

Prints MB/s (10**6 bytes per second) for each implementation and the
native/pure ratio. A measuring tool, not a test: no figure is asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import time

from aperture import _pure
from aperture.sim import eventstream

try:
    from aperture import _native
except ImportError:  # extension not built
    _native = None

WORDS = (
    "the a function returns value file path error test build module import class "
    "request response stream token model cache tool result await async config "
    'déjà vu — naïve 日本語 ✓ "quoted" back\\slash tab\there'
).split(" ")


def _text(rng: random.Random, n_words: int) -> str:
    lines = []
    line: list[str] = []
    for _ in range(n_words):
        line.append(rng.choice(WORDS))
        if rng.random() < 0.08:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    return "\n".join(lines)


def _schema(rng: random.Random) -> dict:
    props = {}
    for k in range(rng.randint(2, 7)):
        kind = rng.choice(["string", "number", "boolean", "array", "object"])
        p: dict = {"type": kind, "description": _text(rng, rng.randint(5, 30))}
        if kind == "array":
            p["items"] = {"type": "string"}
        if kind == "object":
            p["properties"] = {"model": {"type": "string"}, "depth": {"type": "integer", "minimum": 0}}
            p["additionalProperties"] = False
        props[f"param_{k}"] = p
    return {
        "type": "object",
        "properties": props,
        "required": sorted(props)[:2],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }


def claude_code_body(size: int, seed: int = 7) -> bytes:
    """A request body of about `size` bytes, "model" after the messages."""
    rng = random.Random(seed)
    system = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": _text(rng, 6000), "cache_control": {"type": "ephemeral"}},
    ]
    tools = [
        {"name": f"Tool{k}", "description": _text(rng, rng.randint(40, 400)), "input_schema": _schema(rng)}
        for k in range(18)
    ]
    head = {"max_tokens": 32000, "system": system, "tools": tools, "metadata": {"user_id": "user_0123abcd"}}
    messages: list[dict] = []
    used = len(json.dumps(head, ensure_ascii=False))
    n = 0
    while used < size - 200:
        n += 1
        if n % 2:  # user: text or tool results
            if messages and messages[-1]["content"][-1]["type"] == "tool_use":
                content = [
                    {
                        "type": "tool_result",
                        "tool_use_id": messages[-1]["content"][-1]["id"],
                        "content": _text(rng, rng.randint(50, 900)),
                    }
                ]
            else:
                content = [{"type": "text", "text": _text(rng, rng.randint(5, 120))}]
            msg = {"role": "user", "content": content}
        else:  # assistant: some text, often a tool call
            content = [{"type": "text", "text": _text(rng, rng.randint(5, 80))}]
            if rng.random() < 0.8:
                content.append(
                    {
                        "type": "tool_use",
                        "id": f"toolu_{n:08d}",
                        "name": f"Tool{rng.randrange(18)}",
                        "input": {
                            "file_path": f"/work/src/module_{n}.py",
                            "model": "not-the-model",
                            "old_string": _text(rng, rng.randint(5, 60)),
                            "limit": rng.randint(1, 2000),
                            "replace_all": rng.random() < 0.5,
                        },
                    }
                )
            msg = {"role": "assistant", "content": content}
        messages.append(msg)
        used += len(json.dumps(msg, ensure_ascii=False)) + 1
    body = dict(head)
    body["messages"] = messages
    body["model"] = "claude-sonnet-4-5-20250929"
    body["stream"] = True
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _compact(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def anthropic_events(n_text: int = 3000, seed: int = 11) -> list[tuple[str, dict]]:
    """A long Anthropic Messages response as (event name, payload): text
    deltas, pings, tool calls."""
    rng = random.Random(seed)
    out: list[tuple[str, dict]] = []

    def event(name: str, payload: dict) -> None:
        out.append((name, payload))

    event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "usage": {"input_tokens": 1200, "cache_read_input_tokens": 90000, "output_tokens": 1},
            },
        },
    )
    index = 0
    for k in range(n_text):
        if k % 500 == 0:
            if k:
                event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
                event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "tool_use", "id": f"toolu_{k}", "name": "Edit", "input": {}},
                    },
                )
                args = json.dumps({"file_path": "/x.py", "new_string": _text(rng, 200)})
                for p in range(0, len(args), 40):
                    event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": args[p : p + 40]},
                        },
                    )
                event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            )
        if k % 97 == 0:
            event("ping", {"type": "ping"})
        event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": _text(rng, rng.randint(1, 12))},
            },
        )
    event("content_block_stop", {"type": "content_block_stop", "index": index})
    event(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4321}},
    )
    event("message_stop", {"type": "message_stop"})
    return out


def anthropic_stream(n_text: int = 3000, seed: int = 11) -> bytes:
    """A long Anthropic Messages SSE stream: text deltas, pings, tool calls."""
    out = []
    for name, payload in anthropic_events(n_text, seed):
        if name == "ping":
            out.append('event: ping\ndata: {"type": "ping"}\n\n')
        else:
            out.append(f"event: {name}\ndata: {_compact(payload)}\n\n")
    return "".join(out).encode("utf-8")


def responses_stream(n_text: int = 1350, seed: int = 13) -> bytes:
    """A long OpenAI Responses SSE stream: a reasoning item, text deltas
    (with obfuscation filler), two function calls with argument deltas, and
    the terminal `response.completed` repeating the whole output."""
    rng = random.Random(seed)
    out = []
    seq = 0

    def event(payload: dict) -> None:
        nonlocal seq
        payload = {"type": payload.pop("type"), "sequence_number": seq, **payload}
        seq += 1
        out.append(f"event: {payload['type']}\ndata: {_compact(payload)}\n\n")

    head = {"id": "resp_0123", "object": "response", "created_at": 1760000000, "model": "gpt-5"}
    event({"type": "response.created", "response": {**head, "status": "in_progress", "output": [], "usage": None}})
    event({"type": "response.in_progress", "response": {**head, "status": "in_progress", "output": [], "usage": None}})
    output: list[dict] = [{"type": "reasoning", "id": "rs_1", "summary": []}]
    event({"type": "response.output_item.added", "output_index": 0, "item": output[0]})
    event({"type": "response.output_item.done", "output_index": 0, "item": output[0]})
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
    event({"type": "response.output_item.added", "output_index": 1, "item": item})
    event(
        {
            "type": "response.content_part.added",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        }
    )
    text = []
    for _ in range(n_text):
        delta = _text(rng, rng.randint(1, 10))
        text.append(delta)
        event(
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 1,
                "content_index": 0,
                "delta": delta,
                "logprobs": [],
                "obfuscation": "".join(rng.choice("abcdefXYZ0123") for _ in range(rng.randint(2, 12))),
            }
        )
    full = "".join(text)
    done = {"item_id": "msg_1", "output_index": 1, "content_index": 0, "text": full}
    event({"type": "response.output_text.done", **done})
    item = {**item, "status": "completed", "content": [{"type": "output_text", "text": full, "annotations": []}]}
    event({"type": "response.output_item.done", "output_index": 1, "item": item})
    output.append(item)
    for k in (2, 3):
        call = {"type": "function_call", "id": f"fc_{k}", "call_id": f"call_{k}", "name": "apply_patch"}
        call["arguments"] = ""
        event({"type": "response.output_item.added", "output_index": k, "item": {**call, "status": "in_progress"}})
        args = json.dumps({"path": f"src/m{k}.py", "patch": _text(rng, 300)})
        for p in range(0, len(args), 30):
            event(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": f"fc_{k}",
                    "output_index": k,
                    "delta": args[p : p + 30],
                }
            )
        done = {"item_id": f"fc_{k}", "output_index": k, "arguments": args}
        event({"type": "response.function_call_arguments.done", **done})
        call = {**call, "arguments": args, "status": "completed"}
        event({"type": "response.output_item.done", "output_index": k, "item": call})
        output.append(call)
    usage = {
        "input_tokens": 52000,
        "input_tokens_details": {"cached_tokens": 48000},
        "output_tokens": 9000,
        "output_tokens_details": {"reasoning_tokens": 1200},
        "total_tokens": 61000,
    }
    event({"type": "response.completed", "response": {**head, "status": "completed", "output": output, "usage": usage}})
    return "".join(out).encode("utf-8")


def gemini_chunks(n_chunks: int = 880, seed: int = 17) -> list[dict]:
    """A long Gemini stream as GenerateContentResponse chunks: text parts with
    a cumulative usageMetadata on each, function calls, a finishReason."""
    rng = random.Random(seed)
    chunks = []
    out_tokens = 0
    for k in range(n_chunks):
        if k and k % 300 == 0:
            parts = [{"functionCall": {"name": "read_file", "args": {"path": f"src/m{k}.py", "limit": 200}}}]
        else:
            parts = [{"text": _text(rng, rng.randint(20, 45))}]
        out_tokens += 20
        chunk = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
            "usageMetadata": {
                "promptTokenCount": 31000,
                "cachedContentTokenCount": 28000,
                "candidatesTokenCount": out_tokens,
                "thoughtsTokenCount": 700,
                "totalTokenCount": 31700 + out_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31000}],
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "r0123456789",
        }
        if k == n_chunks - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"
        chunks.append(chunk)
    return chunks


def gemini_sse(chunks: list[dict]) -> bytes:
    return "".join(f"data: {_compact(c)}\r\n\r\n" for c in chunks).encode("utf-8")


def gemini_array(chunks: list[dict]) -> bytes:
    return ("[" + ",\r\n".join(_compact(c) for c in chunks) + "]").encode("utf-8")


def bedrock_invoke_stream(n_text: int = 1550, seed: int = 19) -> bytes:
    """InvokeModelWithResponseStream: each Anthropic event base64-wrapped in
    an event-stream `chunk` with Bedrock's "p" filler; invocation metrics on
    the final message_stop."""
    rng = random.Random(seed)
    out = []
    for name, payload in anthropic_events(n_text, seed):
        if name == "ping":
            continue
        if name == "message_stop":
            payload = {
                **payload,
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 1200,
                    "outputTokenCount": 4321,
                    "invocationLatency": 9000,
                    "firstByteLatency": 400,
                },
            }
        wrapped = {
            "bytes": base64.b64encode(_compact(payload).encode()).decode(),
            "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[: rng.randint(1, 60)],
        }
        out.append(eventstream.event("chunk", _compact(wrapped).encode()))
    return b"".join(out)


def converse_stream(n_text: int = 2550, seed: int = 23) -> bytes:
    """ConverseStream: text deltas, tool-use blocks with input fragments,
    messageStop and metadata, each an event-stream message."""
    rng = random.Random(seed)
    out = []

    def event(name: str, payload: dict) -> None:
        out.append(eventstream.event(name, _compact(payload).encode()))

    event("messageStart", {"role": "assistant"})
    index = 0
    for k in range(n_text):
        if k and k % 700 == 0:
            event("contentBlockStop", {"contentBlockIndex": index})
            index += 1
            event(
                "contentBlockStart",
                {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": f"tooluse_{k}", "name": "Edit"}}},
            )
            args = json.dumps({"file_path": "/x.py", "new_string": _text(rng, 200)})
            for p in range(0, len(args), 40):
                delta = {"toolUse": {"input": args[p : p + 40]}}
                event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
            event("contentBlockStop", {"contentBlockIndex": index})
            index += 1
        event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": _text(rng, rng.randint(1, 12))}})
    event("contentBlockStop", {"contentBlockIndex": index})
    event("messageStop", {"stopReason": "end_turn"})
    event(
        "metadata",
        {
            "usage": {"inputTokens": 1200, "outputTokens": 4321, "totalTokens": 5521, "cacheReadInputTokens": 90000},
            "metrics": {"latencyMs": 9000},
        },
    )
    return b"".join(out)


def _rate(fn, nbytes: int, seconds: float) -> float:
    """MB/s of fn() over at least `seconds` (best of the rounds)."""
    fn()  # warm up
    best = float("inf")
    spent = 0.0
    rounds = 0
    while spent < seconds or rounds < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        rounds += 1
    return nbytes / best / 1e6


def _scan(mod, body: bytes, chunk: int | None):
    def run():
        s = mod.ModelScanner()
        if chunk is None:
            st = s.feed(body)
        else:
            mv = memoryview(body)
            for i in range(0, len(body), chunk):
                st = s.feed(bytes(mv[i : i + chunk]))
        st = s.finish()
        assert st == mod.FOUND, (st, s.error)
        return s

    return run


def _meter(mod, framing: str, dialect: str, stream: bytes, chunk: int | None):
    pieces = [stream] if chunk is None else [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    def run():
        m = mod.Meter(framing, dialect)
        for p in pieces:
            m.feed(p)
        m.finish()
        assert m.complete and not m.bad_events, (framing, dialect, m.events, m.bad_events)
        return m

    return run


def _reading(m) -> tuple:
    return m.events, m.bad_events, m.complete, m.error, m.response_id, m.usage(), m.tool_calls()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=1.0, help="request body size in MiB")
    ap.add_argument("--seconds", type=float, default=1.0, help="time spent per measurement")
    args = ap.parse_args()

    body = claude_code_body(int(args.size_mb * 1024 * 1024))
    doc = json.loads(body)
    assert list(doc).index("model") > list(doc).index("messages")
    model_at = body.rfind(b'"model"')
    chunks = gemini_chunks()
    streams = [
        ("Anthropic SSE", "sse", "anthropic", anthropic_stream()),
        ("OpenAI Responses SSE", "sse", "openai_responses", responses_stream()),
        ("Gemini SSE", "sse", "gemini", gemini_sse(chunks)),
        ("Gemini JSON array", "json_array", "gemini", gemini_array(chunks)),
        ("Bedrock invoke event-stream", "eventstream", "anthropic", bedrock_invoke_stream()),
        ("Bedrock Converse stream", "eventstream", "converse", converse_stream()),
    ]
    print(f"body: {len(body)} bytes, {len(doc['messages'])} messages, top-level model key at byte {model_at}")
    if _native is None:
        print("native extension not built: pure figures only")
    impls = [("pure", _pure)] + ([("native", _native)] if _native is not None else [])

    # the two implementations must agree before they are compared
    readings = {}
    for label, framing, dialect, stream in streams:
        reading = _reading(_meter(_pure, framing, dialect, stream, 4096)())
        if _native is not None:
            assert _reading(_meter(_native, framing, dialect, stream, 4096)()) == reading, label
            assert _reading(_meter(_native, framing, dialect, stream, None)()) == reading, label
        readings[label] = reading
        events, _, _, _, _, usage, calls = reading
        print(f"{label}: {len(stream)} bytes, {events} events, usage {usage}, {len(calls)} tool calls")
    if _native is not None:
        a, b = _scan(_pure, body, None)(), _scan(_native, body, None)()
        assert (a.model, a.model_start, a.model_end) == (b.model, b.model_start, b.model_end)

    cases = [
        ("ModelScanner, whole body", lambda m: _scan(m, body, None), len(body)),
        ("ModelScanner, 64 KiB chunks", lambda m: _scan(m, body, 64 * 1024), len(body)),
    ]
    for label, framing, dialect, stream in streams:
        for how, chunk in (("whole", None), ("4 KiB", 4096)):
            make = lambda m, f=framing, d=dialect, s=stream, c=chunk: _meter(m, f, d, s, c)  # noqa: E731
            cases.append((f"{label}, {how}", make, len(stream)))
    print()
    print(f"| {'case':36s} | {'native MB/s':>11s} | {'pure MB/s':>9s} | {'native/pure':>11s} |")
    print(f"|{'-' * 38}|{'-' * 13}|{'-' * 11}|{'-' * 13}|")
    for label, make, nbytes in cases:
        rates = {name: _rate(make(mod), nbytes, args.seconds) for name, mod in impls}
        native = f"{rates['native']:11.1f}" if "native" in rates else f"{'-':>11s}"
        ratio = f"{rates['native'] / rates['pure']:10.1f}x" if "native" in rates else f"{'-':>11s}"
        print(f"| {label:36s} | {native} | {rates['pure']:9.1f} | {ratio} |")


if __name__ == "__main__":
    main()
