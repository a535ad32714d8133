"""Bedrock Converse / ConverseStream; twin of `native/src/extract/converse.rs`,
whose module doc states the rules."""

from __future__ import annotations

from aperture._pure.extract import Tally, arr, obj, string
from aperture._pure.jsonrules import compact, count, count0


def _read_usage(u: dict, t: Tally) -> None:
    t.usage = [
        count0(u.get("inputTokens")),
        count0(u.get("outputTokens")),
        count0(u.get("cacheReadInputTokens")),
        count0(u.get("cacheWriteInputTokens")),
        0,
    ]


class Converse:
    __slots__ = ("_by_block",)

    def __init__(self) -> None:
        self._by_block: dict = {}

    def event(self, name: bytes, payload: bytes, t: Tally) -> None:
        if name == b"contentBlockStart" or name == b"contentBlockDelta":
            if b'"toolUse"' not in payload:
                return
            ev = t.parse(payload)
            if ev is None:
                return
            index = count(ev.get("contentBlockIndex"))
            if name == b"contentBlockStart":
                start = obj(ev.get("start"))
                tool = obj(start.get("toolUse")) if start is not None else None
                if tool is not None:
                    self._by_block[index] = t.call(string(tool.get("name")) or "", "", "")
            else:
                delta = obj(ev.get("delta"))
                tool = obj(delta.get("toolUse")) if delta is not None else None
                piece = string(tool.get("input")) if tool is not None else None
                call = self._by_block.get(index)
                if piece and call is not None:
                    call.parts.append(piece)
        elif name == b"metadata":
            ev = t.parse(payload)
            if ev is None:
                return
            u = obj(ev.get("usage"))
            if u is not None:
                _read_usage(u, t)
            t.complete = True

    def body(self, body: dict, t: Tally) -> None:
        u = obj(body.get("usage"))
        if u is not None:
            _read_usage(u, t)
        output = obj(body.get("output"))
        message = obj(output.get("message")) if output is not None else None
        for block in arr(message.get("content")) if message is not None else ():
            tool = obj(block.get("toolUse")) if isinstance(block, dict) else None
            if tool is None:
                continue
            args = compact(tool["input"]) if "input" in tool else ""
            t.call(string(tool.get("name")) or "", args, "")
