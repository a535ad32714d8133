"""Gemini (the Gemini API and Gemini on Vertex); twin of
`native/src/extract/gemini.rs`, whose module doc states the rules."""

from __future__ import annotations

from aperture._pure.extract import Tally, add, arr, obj, string
from aperture._pure.jsonrules import RawNumber, compact, count0

_MARKERS = (b"usageMetadata", b"functionCall", b"finishReason", b'"error"')


def _read(r: dict, t: Tally) -> None:
    u = obj(r.get("usageMetadata"))
    if u is not None:
        prompt = count0(u.get("promptTokenCount"))
        cached = count0(u.get("cachedContentTokenCount"))
        tool = count0(u.get("toolUsePromptTokenCount"))
        candidates = count0(u.get("candidatesTokenCount"))
        thoughts = count0(u.get("thoughtsTokenCount"))
        t.usage = [add(max(prompt - cached, 0), tool), add(candidates, thoughts), cached, 0, thoughts]
    for candidate in arr(r.get("candidates")):
        if not isinstance(candidate, dict):
            continue
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            t.complete = True
        content = obj(candidate.get("content"))
        for part in arr(content.get("parts")) if content is not None else ():
            call = obj(part.get("functionCall")) if isinstance(part, dict) else None
            if call is None:
                continue
            args = compact(call["args"]) if "args" in call else ""
            t.call(string(call.get("name")) or "", args, "")
    e = obj(r.get("error"))
    if e is not None:
        status, code = e.get("status"), e.get("code")
        if isinstance(status, str):
            kind = status
        elif isinstance(code, str):
            kind = code
        elif (type(code) is int) or isinstance(code, RawNumber):
            kind = compact(code)
        else:
            kind = "error"
        m = e.get("message")
        t.error = f"{kind}: {m if isinstance(m, str) else ''}"


class Gemini:
    __slots__ = ()

    def event(self, name: bytes, payload: bytes, t: Tally) -> None:
        if not any(m in payload for m in _MARKERS):
            return
        r = t.parse(payload)
        if r is not None:
            _read(r, t)

    def body(self, body: dict, t: Tally) -> None:
        _read(body, t)
