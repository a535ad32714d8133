"""OpenAI Responses; twin of `native/src/extract/openai_responses.rs`, whose
module doc states the rules."""

from __future__ import annotations

from aperture._pure.extract import Call, Tally, arr, keyed_error_text, obj, openai_usage, string
from aperture._pure.jsonrules import count

_MARKERS = (
    b"response.created",
    b"response.in_progress",
    b"response.output_item.",
    b"function_call_arguments.",
    b"custom_tool_call_input.",
    b"response.completed",
    b"response.incomplete",
    b"response.failed",
    b'"error"',
)
_ARGS_KEY = {"function_call": "arguments", "custom_tool_call": "input"}
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")



def _args_key(item: dict) -> str | None:
    kind = item.get("type")
    return _ARGS_KEY.get(kind) if isinstance(kind, str) else None


class OpenaiResponses:
    __slots__ = ("_by_id", "_by_index")

    def __init__(self) -> None:
        self._by_id: dict[str, Call] = {}
        self._by_index: dict[int | None, Call] = {}

    def _find(self, item_id: object, output_index: int | None) -> Call | None:
        if isinstance(item_id, str):
            call = self._by_id.get(item_id)
            if call is not None:
                return call
        return self._by_index.get(output_index)

    def event(self, name: bytes, payload: bytes, t: Tally) -> None:
        if not any(m in payload for m in _MARKERS):
            return
        ev = t.parse(payload)
        if ev is None:
            return
        kind = ev.get("type")
        if not isinstance(kind, str):
            return
        output_index = count(ev.get("output_index"))
        if kind == "response.created" or kind == "response.in_progress":
            if t.response_id is None:
                response = obj(ev.get("response"))
                rid = string(response.get("id")) if response is not None else None
                if rid is not None:
                    t.response_id = rid
        elif kind == "response.output_item.added":
            item = obj(ev.get("item"))
            if item is None or _args_key(item) is None:
                return
            call = t.call(string(item.get("name")) or "", "", "")
            item_id = item.get("id")
            if isinstance(item_id, str):
                self._by_id[item_id] = call
            self._by_index[output_index] = call
        elif kind == "response.function_call_arguments.delta" or kind == "response.custom_tool_call_input.delta":
            delta = string(ev.get("delta"))
            if delta is None:
                return
            call = self._find(ev.get("item_id"), output_index)
            if call is not None and delta:
                call.parts.append(delta)
        elif kind == "response.function_call_arguments.done" or kind == "response.custom_tool_call_input.done":
            args = string(ev.get("arguments" if kind.startswith("response.function") else "input"))
            if args is None:
                return
            call = self._find(ev.get("item_id"), output_index)
            if call is not None:
                call.fallback = args
        elif kind == "response.output_item.done":
            item = obj(ev.get("item"))
            key = _args_key(item) if item is not None else None
            if key is None:
                return
            args = string(item.get(key))
            if args is None:
                return
            call = self._find(item.get("id"), output_index)
            if call is not None:
                call.fallback = args
        elif kind in _TERMINAL:
            t.complete = True
            response = obj(ev.get("response"))
            if response is None:
                return
            usage = obj(response.get("usage"))
            if usage is not None:
                t.usage = openai_usage(usage, "input", "output")
            if kind == "response.failed":
                err = obj(response.get("error"))
                if err is not None:
                    t.error = keyed_error_text(err, ("code",))
        elif kind == "error":
            t.error = keyed_error_text(ev, ("code",))

    def body(self, body: dict, t: Tally) -> None:
        rid = string(body.get("id"))
        if rid is not None:
            t.response_id = rid
        usage = obj(body.get("usage"))
        if usage is not None:
            t.usage = openai_usage(usage, "input", "output")
        for item in arr(body.get("output")):
            if not isinstance(item, dict):
                continue
            key = _args_key(item)
            if key is None:
                continue
            t.call(string(item.get("name")) or "", string(item.get(key)) or "", "")
        err = obj(body.get("error"))
        if err is not None:
            t.error = keyed_error_text(err, ("type", "code"))
