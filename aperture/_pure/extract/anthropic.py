"""Anthropic Messages (also Claude on Vertex and on Bedrock InvokeModel); twin
of `native/src/extract/anthropic.rs`, whose module doc states the rules."""

from __future__ import annotations

from aperture._pure.extract import Tally, error_text, obj
from aperture._pure.jsonrules import compact, count

_MARKERS = (
    b"message_start",
    b"message_delta",
    b"message_stop",
    b"content_block_start",
    b"input_json_delta",
    b'"error"',
)
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
_BEDROCK_KEYS = ("inputTokenCount", "outputTokenCount", "cacheReadInputTokenCount", "cacheWriteInputTokenCount")
_TOOL_BLOCKS = ("tool_use", "server_tool_use")


def _read_usage(usage: object, t: Tally) -> None:
    """Present integers replace the readings; nothing is added."""
    if not isinstance(usage, dict):
        return
    u = t.usage
    for slot, key in enumerate(_USAGE_KEYS):
        v = count(usage.get(key))
        if v is not None:
            u[slot] = v
    details = usage.get("output_tokens_details")
    if isinstance(details, dict):
        v = count(details.get("reasoning_tokens"))
        if v is not None:
            u[4] = v


class Anthropic:
    __slots__ = ("_by_block",)

    def __init__(self) -> None:
        self._by_block: dict = {}

    def event(self, name: bytes, payload: bytes, t: Tally) -> None:
        if not any(m in payload for m in _MARKERS):
            return
        ev = t.parse(payload)
        if ev is None:
            return
        kind = ev.get("type")
        if kind == "message_start":
            msg = ev.get("message")
            if isinstance(msg, dict):
                _read_usage(msg.get("usage"), t)
        elif kind == "message_delta":
            _read_usage(ev.get("usage"), t)
        elif kind == "message_stop":
            t.complete = True
            metrics = obj(ev.get("amazon-bedrock-invocationMetrics"))
            if metrics is not None:
                for slot, key in enumerate(_BEDROCK_KEYS):
                    v = count(metrics.get(key))
                    if v is not None:
                        t.usage[slot] = v
        elif kind == "content_block_start":
            block = ev.get("content_block")
            if isinstance(block, dict) and block.get("type") in _TOOL_BLOCKS:
                name = block.get("name")
                fallback = compact(block["input"]) if "input" in block else ""
                self._by_block[count(ev.get("index"))] = t.call(name if isinstance(name, str) else "", "", fallback)
        elif kind == "content_block_delta":
            delta = ev.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "input_json_delta":
                part = delta.get("partial_json")
                call = self._by_block.get(count(ev.get("index")))
                if call is not None and isinstance(part, str):
                    call.parts.append(part)
        elif kind == "error":
            t.error = error_text(ev.get("error"))

    def body(self, body: dict, t: Tally) -> None:
        _read_usage(body.get("usage"), t)
        content = body.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") in _TOOL_BLOCKS:
                    name = block.get("name")
                    args = compact(block["input"]) if "input" in block else "{}"
                    t.call(name if isinstance(name, str) else "", args, "")
        err = body.get("error")
        if isinstance(err, dict):
            t.error = error_text(err)
