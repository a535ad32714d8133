"""Throughput of the native byte scanners against their pure-Python twins.

    python tools/bench_scanner.py [--size-mb 1] [--seconds 1.0]

Builds a request body shaped like a Claude Code turn (a large system prompt,
tools with JSON schemas, a long `messages` array of text, tool_use and
tool_result blocks, and the top-level "model" key AFTER the messages), then
times `ModelScanner` over it, whole and in 64 KiB chunks, and `SseMeter` over a
long Anthropic stream (text deltas, pings, tool calls), whole and in 4 KiB
chunks. Prints MB/s (10**6 bytes per second) for each implementation and the
native/pure ratio. A measuring tool, not a test: no figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from aperture import _pure

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


def anthropic_stream(n_text: int = 3000, seed: int = 11) -> bytes:
    """A long Anthropic Messages SSE stream: text deltas, pings, tool calls."""
    rng = random.Random(seed)
    out = []

    def event(name: str, payload: dict) -> None:
        out.append(f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n")

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
            out.append('event: ping\ndata: {"type": "ping"}\n\n')
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
    return "".join(out).encode("utf-8")


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


def _meter(mod, stream: bytes, chunk: int | None):
    pieces = [stream] if chunk is None else [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    def run():
        m = mod.Meter("sse", "anthropic")
        for p in pieces:
            m.feed(p)
        assert m.complete
        return m

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=1.0, help="request body size in MiB")
    ap.add_argument("--seconds", type=float, default=1.0, help="time spent per measurement")
    args = ap.parse_args()

    body = claude_code_body(int(args.size_mb * 1024 * 1024))
    doc = json.loads(body)
    assert list(doc).index("model") > list(doc).index("messages")
    stream = anthropic_stream()
    model_at = body.rfind(b'"model"')
    events = stream.count(b"\n\n")
    print(f"body: {len(body)} bytes, {len(doc['messages'])} messages, top-level model key at byte {model_at}")
    print(f"stream: {len(stream)} bytes, {events} events")
    if _native is None:
        print("native extension not built: pure figures only")
    impls = [("pure", _pure)] + ([("native", _native)] if _native is not None else [])

    # the two implementations must agree before they are compared
    if _native is not None:
        a, b = _scan(_pure, body, None)(), _scan(_native, body, None)()
        assert (a.model, a.model_start, a.model_end) == (b.model, b.model_start, b.model_end)
        ma, mb = _meter(_pure, stream, 4096)(), _meter(_native, stream, 4096)()
        assert (ma.usage(), ma.tool_calls(), ma.events) == (mb.usage(), mb.tool_calls(), mb.events)

    cases = [
        ("ModelScanner, whole body", lambda m: _scan(m, body, None), len(body)),
        ("ModelScanner, 64 KiB chunks", lambda m: _scan(m, body, 64 * 1024), len(body)),
        ("SseMeter, whole stream", lambda m: _meter(m, stream, None), len(stream)),
        ("SseMeter, 4 KiB chunks", lambda m: _meter(m, stream, 4096), len(stream)),
    ]
    for label, make, nbytes in cases:
        rates = {name: _rate(make(mod), nbytes, args.seconds) for name, mod in impls}
        cells = "  ".join(f"{name} {rate:10.1f} MB/s" for name, rate in rates.items())
        ratio = f"  native/pure {rates['native'] / rates['pure']:7.1f}x" if "native" in rates else ""
        print(f"{label:30s} {cells}{ratio}")


if __name__ == "__main__":
    main()
