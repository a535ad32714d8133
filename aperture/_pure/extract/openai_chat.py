"""OpenAI Chat Completions; twin of `native/src/extract/openai_chat.rs`, whose
module doc states the rules."""

from __future__ import annotations

import re

from aperture._pure.extract import Tally, error_text, obj, openai_usage, string
from aperture._pure.jsonrules import compact, count

_USAGE_OBJECT = re.compile(rb'"usage"[ \t\r\n]*:[ \t\r\n]*\{')



class OpenaiChat:
    __slots__ = ("_by_choice_tool",)

    def __init__(self) -> None:
        self._by_choice_tool: dict = {}

    def event(self, name: bytes, payload: bytes, t: Tally) -> None:
        if payload.startswith(b"[DONE]"):
            t.complete = True
            return
        if b'"tool_calls"' not in payload and b'"error"' not in payload and not _USAGE_OBJECT.search(payload):
            return
        ev = t.parse(payload)
        if ev is None:
            return
        err = ev.get("error")
        if err is not None:
            t.error = error_text(err)
        usage = ev.get("usage")
        if isinstance(usage, dict):
            t.usage = openai_usage(usage, "prompt", "completion")
        choices = ev.get("choices")
        if not isinstance(choices, list):
            return
        for cpos, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            calls = delta.get("tool_calls")
            if not isinstance(calls, list):
                continue
            ci = count(choice.get("index"))
            if ci is None:
                ci = cpos
            for tpos, tc in enumerate(calls):
                if not isinstance(tc, dict):
                    continue
                ti = count(tc.get("index"))
                if ti is None:
                    ti = tpos
                fn = obj(tc.get("function")) or {}
                name_ = string(fn.get("name"))
                args = string(fn.get("arguments")) or ""
                call = self._by_choice_tool.get((ci, ti))
                if call is None:
                    self._by_choice_tool[(ci, ti)] = t.call(name_ or "", args, "")
                else:
                    if args:
                        call.parts.append(args)
                    if name_ and not call.name:
                        call.name = name_

    def body(self, body: dict, t: Tally) -> None:
        choices = body.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            message = choice.get("message") if isinstance(choice, dict) else None
            calls = message.get("tool_calls") if isinstance(message, dict) else None
            for call in calls if isinstance(calls, list) else ():
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    continue
                if "arguments" not in fn:
                    args = ""
                else:
                    args = fn["arguments"]
                    if not isinstance(args, str):
                        args = compact(args)
                t.call(string(fn.get("name")) or "", args, "")
        usage = body.get("usage")
        if isinstance(usage, dict):
            t.usage = openai_usage(usage, "prompt", "completion")
        err = body.get("error")
        if isinstance(err, dict):
            t.error = error_text(err)
