"""Extractors: what one API dialect's events and bodies say about usage, tool
calls, errors and the end of a response (twin of `native/src/extract/`).

A framing cuts the bytes into events and hands each one to an extractor as
`event(name, payload, tally)`: the SSE `event:` field or the event-stream
`:event-type` (empty when the framing has no names), and the event's bytes. A
whole JSON body is parsed by the framing and handed over as a dict to
`body(obj, tally)`. Extractors write what they read into a `Tally`, the
meter's readings, which the framings also update (event counts).

Only events that can matter are parsed: a cheap substring test (the
dialect's markers, the same bytes as in the native code) picks them. An event
that is parsed and is not a JSON object counts in `bad_events`; one that is not
parsed never does. `input` is the input NOT served from cache, `output`
includes reasoning, `reasoning` is the part of output spent on reasoning. Sums
saturate at 2**64-1, differences at 0.
"""

from __future__ import annotations

from aperture._pure.jsonrules import U64_MAX, count0, loads_object


class Call:
    __slots__ = ("name", "parts", "fallback")

    def __init__(self, name: str, parts: list[str], fallback: str) -> None:
        self.name = name
        self.parts = parts
        self.fallback = fallback  # used when the fragments add up to nothing


class Tally:
    """The meter's readings."""

    __slots__ = ("complete", "events", "bad_events", "error", "response_id", "usage", "calls")

    def __init__(self) -> None:
        self.complete = False  # the dialect's terminal event was seen
        self.events = 0
        self.bad_events = 0
        self.error: str | None = None
        self.response_id: str | None = None
        self.usage = [0, 0, 0, 0, 0]  # input, output, cache_read, cache_write, reasoning
        self.calls: list[Call] = []

    def parse(self, payload: bytes) -> dict | None:
        """The event's JSON object; anything else is a bad event."""
        ev = loads_object(payload)
        if ev is None:
            self.bad_events += 1
        return ev

    def call(self, name: str, args: str, fallback: str) -> Call:
        c = Call(name, [args] if args else [], fallback)
        self.calls.append(c)
        return c

    def tool_calls(self) -> list[tuple[str, str]]:
        return [(c.name, "".join(c.parts) or c.fallback) for c in self.calls]


def string(v: object) -> str | None:
    return v if isinstance(v, str) else None


def obj(v: object) -> dict | None:
    return v if isinstance(v, dict) else None


def arr(v: object) -> list:
    return v if isinstance(v, list) else []


def error_text(e: object) -> str:
    """"type: message" of an Anthropic / OpenAI error object."""
    if isinstance(e, dict):
        t = e.get("type")
        m = e.get("message")
        return f"{t if isinstance(t, str) else 'error'}: {m if isinstance(m, str) else ''}"
    if isinstance(e, str):
        return f"error: {e}"
    return "error: "


def keyed_error_text(e: dict, keys: tuple[str, ...]) -> str:
    """"<first string among keys, else 'error'>: <message or ''>"."""
    kind = "error"
    for k in keys:
        v = e.get(k)
        if isinstance(v, str):
            kind = v
            break
    m = e.get("message")
    return f"{kind}: {m if isinstance(m, str) else ''}"


def uncached(total: int, cached: int, written: int) -> int:
    """Input less what was read from and written to the cache, never below 0."""
    return max(total - cached - written, 0)


def openai_usage(usage: dict, input_key: str, output_key: str) -> list[int]:
    """An OpenAI usage object as the five counts: the cached and cache-written
    parts of the input are reported inside it, so input is the rest. The keys
    are "prompt"/"completion" (Chat Completions) or "input"/"output" (Responses)."""
    inp = obj(usage.get(input_key + "_tokens_details")) or {}
    out = obj(usage.get(output_key + "_tokens_details")) or {}
    cached = count0(inp.get("cached_tokens"))
    written = count0(inp.get("cache_write_tokens"))
    return [uncached(count0(usage.get(input_key + "_tokens")), cached, written),
            count0(usage.get(output_key + "_tokens")), cached, written,
            count0(out.get("reasoning_tokens"))]


def add(a: int, b: int) -> int:
    """a + b, saturating at 2**64-1 as the native u64 arithmetic does."""
    return min(a + b, U64_MAX)


def _dialects() -> dict:
    from aperture._pure.extract.anthropic import Anthropic
    from aperture._pure.extract.converse import Converse
    from aperture._pure.extract.gemini import Gemini
    from aperture._pure.extract.openai_chat import OpenaiChat
    from aperture._pure.extract.openai_responses import OpenaiResponses

    return {
        "anthropic": Anthropic,
        "openai_chat": OpenaiChat,
        "openai_responses": OpenaiResponses,
        "gemini": Gemini,
        "converse": Converse,
    }
