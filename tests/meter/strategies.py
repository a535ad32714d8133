"""Hypothesis strategies shared by the meter tests: random provider streams
and bodies of every dialect, each with the reading it must give, folded from
the generator's own account of what each event means (not from the JSON)."""

from __future__ import annotations

import json

from hypothesis import strategies as st


def compact(v) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


NAMES = st.sampled_from(["Read", "Edit", "Bash", "web_search", "", "é_tool"])
WORDS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
ARG_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | WORDS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=3),
    max_leaves=8,
)
COUNT = st.integers(0, 10**7)


def fragments(draw, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=5)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return ([""] if draw(st.booleans()) else []) + parts


@st.composite
def anthropic_events(draw):
    """[(payload dict, effect)] in stream order. Effects say what the event
    means, so the expected reading is folded from them, not from the JSON."""
    events = []
    start_usage = {"input_tokens": draw(COUNT), "output_tokens": draw(st.integers(0, 5))}
    for key in ("cache_read_input_tokens", "cache_creation_input_tokens"):
        v = draw(st.one_of(st.none(), COUNT, st.just("absent")))
        if v != "absent":
            start_usage[key] = v
    events.append(
        (
            {
                "type": "message_start",
                "message": {"id": "msg_x", "type": "message", "role": "assistant", "content": [], "usage": start_usage},
            },
            ("usage", start_usage),
        )
    )
    for index in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "thinking", "tool_use", "server_tool_use"]))
        if kind in ("text", "thinking"):
            events.append(
                ({"type": "content_block_start", "index": index, "content_block": {"type": kind, kind: ""}}, None)
            )
            for text in draw(st.lists(WORDS, max_size=4)):
                delta_kind = "text_delta" if kind == "text" else "thinking_delta"
                events.append(
                    ({"type": "content_block_delta", "index": index, "delta": {"type": delta_kind, kind: text}}, None)
                )
        else:
            name = draw(NAMES)
            args = draw(ARG_VALUES)
            streamed = draw(st.booleans())
            block_input = {} if streamed else draw(st.dictionaries(WORDS, ARG_VALUES, max_size=3))
            events.append(
                (
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": kind, "id": f"toolu_{index}", "name": name, "input": block_input},
                    },
                    ("tool", index, name, compact(block_input)),
                )
            )
            if streamed:
                for part in fragments(draw, json.dumps(args, ensure_ascii=draw(st.booleans()))):
                    events.append(
                        (
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": part},
                            },
                            ("args", index, part),
                        )
                    )
        events.append(({"type": "content_block_stop", "index": index}, None))
    for _ in range(draw(st.integers(0, 2))):
        usage = {"output_tokens": draw(COUNT)}
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            if draw(st.booleans()):
                usage[key] = draw(st.one_of(st.none(), COUNT))
        if draw(st.booleans()):
            usage["output_tokens_details"] = {"reasoning_tokens": draw(COUNT)}
        events.append(
            ({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}, ("usage", usage))
        )
    if draw(st.booleans()):
        error = {"type": draw(st.sampled_from(["overloaded_error", "api_error"])), "message": draw(WORDS)}
        events.append(({"type": "error", "error": error}, ("error", f"{error['type']}: {error['message']}")))
    events.append(({"type": "message_stop"}, ("complete",)))
    # pings and unknown event types anywhere
    for _ in range(draw(st.integers(0, 3))):
        extra = draw(st.sampled_from([{"type": "ping"}, {"type": "future_event", "usage": {"output_tokens": 1}}]))
        events.insert(draw(st.integers(0, len(events))), (extra, None))
    return events


def fold_anthropic(effects) -> tuple:
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    reasoning = 0
    calls: list[list] = []
    by_index: dict[int, list] = {}
    complete, error = False, None
    for effect in effects:
        if effect is None:
            continue
        if effect[0] == "usage":
            for key, v in effect[1].items():
                if key == "output_tokens_details":
                    reasoning = v["reasoning_tokens"]
                elif v is not None:
                    usage[key] = v
        elif effect[0] == "tool":
            call = [effect[2], "", effect[3]]
            calls.append(call)
            by_index[effect[1]] = call
        elif effect[0] == "args":
            by_index[effect[1]][1] += effect[2]
        elif effect[0] == "error":
            error = effect[1]
        elif effect[0] == "complete":
            complete = True
    u = (
        usage["input_tokens"],
        usage["output_tokens"],
        usage["cache_read_input_tokens"],
        usage["cache_creation_input_tokens"],
        reasoning,
    )
    return complete, error, u, [(name, args or fallback) for name, args, fallback in calls]


@st.composite
def openai_events(draw):
    events = []
    n_choices = draw(st.integers(1, 2))
    include_usage = draw(st.booleans())
    head = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "obfuscation": draw(WORDS),
    }
    calls = {}  # (choice, tool) -> remaining fragments
    for c in range(n_choices):
        for t in range(draw(st.integers(0, 3))):
            calls[(c, t)] = (draw(NAMES), fragments(draw, json.dumps(draw(ARG_VALUES))))
    order = draw(st.permutations([key for key, (_, parts) in calls.items() for _ in range(len(parts) + 1)]))
    started = set()
    progress = dict.fromkeys(calls, 0)
    for _ in range(draw(st.integers(0, 3))):
        events.append(({**head, "choices": [{"index": 0, "delta": {"content": draw(WORDS)}}]}, None))
    for c, t in order:
        name, parts = calls[(c, t)]
        if (c, t) not in started:
            started.add((c, t))
            tc = {"index": t, "id": f"call_{c}_{t}", "type": "function", "function": {"name": name, "arguments": ""}}
            effect = ("tool", (c, t), name, "")
        else:
            part = parts[progress[(c, t)]]
            progress[(c, t)] += 1
            tc = {"index": t, "function": {"arguments": part}}
            effect = ("args", (c, t), part)
        events.append(
            ({**head, "choices": [{"index": c, "delta": {"tool_calls": [tc]}, "finish_reason": None}]}, effect)
        )
    if include_usage:
        for payload, _ in events:
            payload["usage"] = None
        prompt, cached, written = draw(COUNT), draw(COUNT), draw(st.one_of(st.none(), COUNT))
        details = (
            {"cached_tokens": cached} if written is None else {"cached_tokens": cached, "cache_write_tokens": written}
        )
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": draw(COUNT),
            "total_tokens": 0,
            "prompt_tokens_details": details,
            "completion_tokens_details": {"reasoning_tokens": draw(COUNT)},
        }
        events.append(({**head, "choices": [], "usage": usage}, ("usage", usage)))
    if draw(st.booleans()):
        error = {"message": draw(WORDS), "type": "server_error", "param": None, "code": None}
        events.append(({"error": error}, ("error", f"server_error: {error['message']}")))
    events.append(("[DONE]", ("complete",)))
    return events


def fold_openai(effects) -> tuple:
    u = (0, 0, 0, 0, 0)
    calls: list[list] = []
    by_key: dict = {}
    complete, error = False, None
    for effect in effects:
        if effect is None:
            continue
        if effect[0] == "usage":
            usage = effect[1]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            written = usage["prompt_tokens_details"].get("cache_write_tokens", 0)
            u = (
                max(0, usage["prompt_tokens"] - cached - written),
                usage["completion_tokens"],
                cached,
                written,
                usage["completion_tokens_details"]["reasoning_tokens"],
            )
        elif effect[0] == "tool":
            by_key[effect[1]] = call = [effect[2], ""]
            calls.append(call)
        elif effect[0] == "args":
            by_key[effect[1]][1] += effect[2]
        elif effect[0] == "error":
            error = effect[1]
        elif effect[0] == "complete":
            complete = True
    return complete, error, u, [tuple(c) for c in calls]


@st.composite
def wire(draw, events):
    """The bytes of `events` with random framing; returns (bytes, dispatched count)."""
    out = [b"\xef\xbb\xbf"] if draw(st.booleans()) else []
    last_ending = b"\n"

    def line(content: bytes, ending: bytes | None = None) -> None:
        nonlocal last_ending
        if ending is None:
            ending = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
        if not content and last_ending == b"\r" and ending == b"\n":
            ending = b"\r"  # "\r" then "\n" would be one CRLF, not a blank line
        out.append(content + ending)
        last_ending = ending

    dispatched = 0
    for k, (payload, _) in enumerate(events):
        if draw(st.integers(0, 9)) == 0:
            line(b": keepalive " + str(k).encode())
            line(b"")
        if isinstance(payload, dict):
            if draw(st.booleans()):
                line(b"event: " + str(payload.get("type", "message")).encode())
            style = draw(st.sampled_from(["compact", "spaced", "padded", "multiline"]))
            ascii_only = draw(st.booleans())
            if style == "compact":
                text = json.dumps(payload, ensure_ascii=ascii_only, separators=(",", ":"))
            elif style == "spaced":
                text = json.dumps(payload, ensure_ascii=ascii_only)
            elif style == "padded":
                text = json.dumps(payload, ensure_ascii=ascii_only, separators=(",", ":"))[:-1] + " " * 7 + "}"
            else:
                text = json.dumps(payload, ensure_ascii=ascii_only, indent=1)
        else:
            text = payload
        if draw(st.integers(0, 7)) == 0:
            line(b"id: " + str(k).encode())
        for data_line in text.encode("utf-8").split(b"\n"):
            line((b"data: " if draw(st.booleans()) else b"data:") + data_line)
        line(b"")
        dispatched += 1
    return b"".join(out), dispatched


# ---------------------------------------------------------------------------
# Scripts: a dialect's stream or body, with the reading it must give
# ---------------------------------------------------------------------------
#
# A stream script is (events, want): events are (name, payload) pairs, the
# payload a dict (serialized by the framing's encoder) or raw text ("[DONE]");
# want = (complete, error, response_id, usage, tool_calls) as the dialect must
# read them. A body script is (body dict, want) with want = (error,
# response_id, usage, tool_calls).

U64 = (1 << 64) - 1
OPT_COUNT = st.one_of(st.none(), COUNT, st.just("absent"))
ERROR_KINDS = st.sampled_from(["overloaded_error", "api_error", "invalid_request_error"])


def _put(d: dict, key: str, v) -> None:
    if v != "absent":
        d[key] = v


def _n(v) -> int:
    """What a count reads as: an int, else 0."""
    return v if type(v) is int else 0


@st.composite
def anthropic_stream(draw):
    pairs = draw(anthropic_events())
    truncate = draw(st.integers(0, 3)) == 0
    if truncate:
        pairs = pairs[: draw(st.integers(0, len(pairs) - 1))]
    complete, error, usage, calls = fold_anthropic(effect for _, effect in pairs)
    events = [("", payload) for payload, _ in pairs]
    if complete and draw(st.booleans()):  # Bedrock's invocation metrics on message_stop
        k = next(i for i, (p, e) in enumerate(pairs) if e == ("complete",))
        metrics = {"invocationLatency": draw(COUNT), "firstByteLatency": draw(COUNT)}
        u = list(usage)
        for slot, key in enumerate(
            ["inputTokenCount", "outputTokenCount", "cacheReadInputTokenCount", "cacheWriteInputTokenCount"]
        ):
            v = draw(OPT_COUNT)
            _put(metrics, key, v)
            if type(v) is int:
                u[slot] = v
        usage = tuple(u)
        events[k] = ("", {"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics})
    return events, (complete, error, None, usage, calls)


@st.composite
def anthropic_body(draw):
    if draw(st.integers(0, 5)) == 0:
        kind, message = draw(ERROR_KINDS), draw(WORDS)
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return body, (f"{kind}: {message}", None, (0, 0, 0, 0, 0), [])
    content, calls = [], []
    for kind in draw(st.lists(st.sampled_from(["text", "thinking", "tool_use", "server_tool_use"]), max_size=4)):
        if kind in ("text", "thinking"):
            content.append({"type": kind, kind: draw(WORDS)})
            continue
        block = {"type": kind, "id": "toolu_x", "name": draw(NAMES)}
        if draw(st.integers(0, 4)):
            block["input"] = draw(st.dictionaries(WORDS, ARG_VALUES, max_size=3))
        content.append(block)
        calls.append((block["name"], compact(block["input"]) if "input" in block else "{}"))
    usage: dict = {}
    keys = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]
    for key in keys:
        _put(usage, key, draw(OPT_COUNT))
    reasoning = 0
    if draw(st.booleans()):
        reasoning = draw(COUNT)
        usage["output_tokens_details"] = {"reasoning_tokens": reasoning}
    body = {"id": "msg_x", "type": "message", "role": "assistant", "content": content, "usage": usage}
    return body, (None, None, (*(_n(usage.get(k)) for k in keys), reasoning), calls)


@st.composite
def openai_chat_stream(draw):
    pairs = draw(openai_events())
    complete, error, usage, calls = fold_openai(effect for _, effect in pairs)
    return [("", payload) for payload, _ in pairs], (complete, error, None, usage, calls)


def _openai_usage(draw, prompt_key: str, completion_key: str, prompt_details: str, completion_details: str):
    """A usage object with random holes, and its reading."""
    usage: dict = {}
    _put(usage, prompt_key, draw(OPT_COUNT))
    _put(usage, completion_key, draw(OPT_COUNT))
    details: dict = {}
    _put(details, "cached_tokens", draw(OPT_COUNT))
    _put(details, "cache_write_tokens", draw(OPT_COUNT))
    if details or draw(st.booleans()):
        usage[prompt_details] = details
    reasoning: dict = {}
    _put(reasoning, "reasoning_tokens", draw(OPT_COUNT))
    if reasoning or draw(st.booleans()):
        usage[completion_details] = reasoning
    cached, written = _n(details.get("cached_tokens")), _n(details.get("cache_write_tokens"))
    want = (
        max(_n(usage.get(prompt_key)) - cached - written, 0),
        _n(usage.get(completion_key)),
        cached,
        written,
        _n(reasoning.get("reasoning_tokens")),
    )
    return usage, want


@st.composite
def openai_chat_body(draw):
    if draw(st.integers(0, 5)) == 0:
        message = draw(WORDS)
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        return body, (f"invalid_request_error: {message}", None, (0, 0, 0, 0, 0), [])
    choices, calls = [], []
    for index in range(draw(st.integers(0, 2))):
        tool_calls = []
        for k in range(draw(st.integers(0, 3))):
            name = draw(NAMES)
            if draw(st.booleans()):
                args = compact(draw(ARG_VALUES))
                function = {"name": name, "arguments": args}
            else:  # not a string: read as its compact JSON
                value = draw(ARG_VALUES.filter(lambda v: not isinstance(v, str)))
                function, args = {"name": name, "arguments": value}, compact(value)
            tool_calls.append({"id": f"call_{index}_{k}", "type": "function", "function": function})
            calls.append((name, args))
        message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
        choices.append({"index": index, "message": message, "finish_reason": "tool_calls"})
    body = {"id": "chatcmpl-x", "object": "chat.completion", "choices": choices}
    usage = (0, 0, 0, 0, 0)
    if draw(st.booleans()):
        body["usage"], usage = _openai_usage(
            draw, "prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"
        )
    return body, (None, None, usage, calls)


@st.composite
def responses_stream(draw):
    events: list = []
    response_id = None
    rid = "resp_" + draw(st.text("abc123", min_size=1, max_size=6))
    head = {"object": "response", "created_at": 1, "model": "gpt-x"}
    if draw(st.integers(0, 4)):
        events.append({"type": "response.created", "response": {"id": rid, **head, "output": [], "usage": None}})
        response_id = rid
    if draw(st.booleans()):
        other = draw(st.sampled_from([rid, rid + "_other"]))
        events.append({"type": "response.in_progress", "response": {"id": other, **head, "status": "in_progress"}})
        response_id = response_id or other
    calls = []
    for k in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["message", "reasoning", "function_call", "custom_tool_call"]))
        if kind in ("message", "reasoning"):
            item = {"type": kind, "id": f"it_{k}", "status": "in_progress", "content": []}
            events.append({"type": "response.output_item.added", "output_index": k, "item": item})
            for text in draw(st.lists(WORDS, max_size=3)):
                events.append(
                    {
                        "type": "response.output_text.delta",
                        "item_id": f"it_{k}",
                        "output_index": k,
                        "content_index": 0,
                        "delta": text,
                        "logprobs": [],
                    }
                )
            events.append({"type": "response.output_item.done", "output_index": k, "item": item})
            continue
        key = "arguments" if kind == "function_call" else "input"
        stem = "response.function_call_arguments" if kind == "function_call" else "response.custom_tool_call_input"
        name = draw(NAMES)
        text = compact(draw(ARG_VALUES)) if kind == "function_call" else draw(WORDS)
        has_id = draw(st.booleans())
        item = {"type": kind, "call_id": f"call_{k}", "name": name, key: "", "status": "in_progress"}
        if has_id:
            item["id"] = f"fc_{k}"
        events.append({"type": "response.output_item.added", "output_index": k, "item": item})
        ref = {"item_id": f"fc_{k}", "output_index": k} if has_id else {"output_index": k}
        if has_id and draw(st.booleans()):
            ref = {"item_id": f"fc_{k}"}
        streamed = draw(st.booleans())
        if streamed:
            for part in fragments(draw, text):
                events.append({"type": stem + ".delta", **ref, "delta": part})
        done = draw(st.booleans())
        if done:
            events.append({"type": stem + ".done", **ref, key: text})
        item_done = draw(st.booleans())
        if item_done:
            finished = {**item, key: text, "status": "completed"}
            events.append({"type": "response.output_item.done", "output_index": k, "item": finished})
        calls.append((name, text if (streamed or done or item_done) else ""))
    error = None
    if draw(st.integers(0, 5)) == 0:
        code, message = draw(st.sampled_from([None, "server_error", "rate_limit_exceeded"])), draw(WORDS)
        events.append({"type": "error", "code": code, "message": message, "param": None})
        error = f"{code or 'error'}: {message}"
    terminal = draw(st.sampled_from([None, "response.completed", "response.incomplete", "response.failed"]))
    usage = (0, 0, 0, 0, 0)
    if terminal:
        response = {"id": rid, **head, "status": terminal.rsplit(".", 1)[1], "output": []}
        if draw(st.integers(0, 4)):
            response["usage"], usage = _openai_usage(
                draw, "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"
            )
        if terminal == "response.failed" and draw(st.booleans()):
            code, message = draw(st.sampled_from([None, "server_error"])), draw(WORDS)
            response["error"] = {"code": code, "message": message}
            error = f"{code or 'error'}: {message}"
        events.append({"type": terminal, "response": response})
    seq = iter(range(10**6))
    events = [("", {**e, "sequence_number": next(seq)}) for e in events]
    return events, (terminal is not None, error, response_id, usage, calls)


@st.composite
def responses_body(draw):
    if draw(st.integers(0, 5)) == 0:
        kind, message = draw(st.sampled_from(["invalid_request_error", "server_error"])), draw(WORDS)
        body = {"error": {"message": message, "type": kind, "param": None, "code": "x"}}
        return body, (f"{kind}: {message}", None, (0, 0, 0, 0, 0), [])
    output, calls = [], []
    for k in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["message", "reasoning", "function_call", "custom_tool_call"]))
        if kind in ("message", "reasoning"):
            output.append({"type": kind, "id": f"it_{k}", "content": [{"type": "output_text", "text": draw(WORDS)}]})
            continue
        key = "arguments" if kind == "function_call" else "input"
        name = draw(NAMES)
        text = compact(draw(ARG_VALUES)) if kind == "function_call" else draw(WORDS)
        output.append({"type": kind, "id": f"fc_{k}", "call_id": f"call_{k}", "name": name, key: text})
        calls.append((name, text))
    rid = "resp_" + draw(st.text("abc123", min_size=1, max_size=6))
    body = {"id": rid, "object": "response", "status": "completed", "output": output, "error": None}
    usage = (0, 0, 0, 0, 0)
    if draw(st.booleans()):
        body["usage"], usage = _openai_usage(
            draw, "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"
        )
    error = None
    if draw(st.integers(0, 4)) == 0:
        code, message = draw(st.sampled_from([None, "server_error"])), draw(WORDS)
        body["status"], body["error"] = "failed", {"code": code, "message": message}
        error = f"{code or 'error'}: {message}"
    return body, (error, rid, usage, calls)


GEMINI_USAGE_KEYS = [
    "promptTokenCount",
    "cachedContentTokenCount",
    "toolUsePromptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
]


@st.composite
def gemini_response(draw, last: bool = False):
    """One GenerateContentResponse, and what it says: (response, usage or
    None, calls, finished, error or None)."""
    r: dict = {}
    calls = []
    finished = False
    candidates = []
    for index in range(draw(st.integers(0, 2))):
        parts = []
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                parts.append({"text": draw(WORDS)})
            else:
                call = {"name": draw(NAMES)}
                if draw(st.integers(0, 3)):
                    call["args"] = draw(st.dictionaries(WORDS, ARG_VALUES, max_size=3))
                if draw(st.booleans()):
                    call["id"] = "fc1"
                parts.append({"functionCall": call})
                calls.append((call["name"], compact(call["args"]) if "args" in call else ""))
        candidate = {"content": {"role": "model", "parts": parts}, "index": index}
        if draw(st.integers(0, 2 if last else 6)) == 0:
            reason = draw(st.sampled_from(["STOP", "MAX_TOKENS", ""]))
            candidate["finishReason"] = reason
            finished = finished or bool(reason)
        candidates.append(candidate)
    if candidates or draw(st.booleans()):
        r["candidates"] = candidates
    usage = None
    if draw(st.booleans()):
        meta = {}
        for key in GEMINI_USAGE_KEYS:
            _put(meta, key, draw(st.one_of(st.just("absent"), COUNT)))
        meta["totalTokenCount"] = 0
        r["usageMetadata"] = meta
        prompt, cached, tool, cand, thoughts = (_n(meta.get(k)) for k in GEMINI_USAGE_KEYS)
        usage = (max(prompt - cached, 0) + tool, cand + thoughts, cached, 0, thoughts)
    r["modelVersion"] = "gemini-2.5-flash"
    r["responseId"] = "r1"
    error = None
    if draw(st.integers(0, 8)) == 0:
        message = draw(WORDS)
        if draw(st.booleans()):
            r["error"] = {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}
            error = f"RESOURCE_EXHAUSTED: {message}"
        else:
            r["error"] = {"code": 503, "message": message}
            error = f"503: {message}"
    return r, usage, calls, finished, error


@st.composite
def gemini_stream(draw):
    events = []
    usage, calls, complete, error = (0, 0, 0, 0, 0), [], False, None
    n = draw(st.integers(0, 5))
    for k in range(n):
        r, u, c, finished, e = draw(gemini_response(last=k == n - 1))
        events.append(("", r))
        usage = u if u is not None else usage
        calls += c
        complete = complete or finished
        error = e if e is not None else error
    return events, (complete, error, None, usage, calls)


@st.composite
def gemini_body(draw):
    r, u, c, _, e = draw(gemini_response(last=True))
    return r, (e, None, u if u is not None else (0, 0, 0, 0, 0), c)


CONVERSE_USAGE_KEYS = ["inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"]


def _converse_usage(draw):
    usage = {}
    for key in CONVERSE_USAGE_KEYS:
        _put(usage, key, draw(OPT_COUNT))
    usage["totalTokens"] = 0
    return usage, (*(_n(usage.get(k)) for k in CONVERSE_USAGE_KEYS), 0)


@st.composite
def converse_stream(draw):
    events = [("messageStart", {"role": "assistant"})]
    calls = []
    for index in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            for text in draw(st.lists(WORDS, min_size=1, max_size=3)):
                events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": text}}))
        else:
            name = draw(NAMES)
            tool = {"toolUseId": f"tooluse_{index}", "name": name}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": tool}}))
            args = compact(draw(ARG_VALUES))
            for part in fragments(draw, args):
                delta = {"toolUse": {"input": part}}
                events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
            calls.append((name, args))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": draw(st.sampled_from(["end_turn", "tool_use"]))}))
    complete, usage = False, (0, 0, 0, 0, 0)
    if draw(st.integers(0, 4)):
        u, usage = _converse_usage(draw)
        events.append(("metadata", {"usage": u, "metrics": {"latencyMs": draw(COUNT)}}))
        complete = True
    return events, (complete, None, None, usage, calls)


@st.composite
def converse_body(draw):
    content, calls = [], []
    for k in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            content.append({"text": draw(WORDS)})
            continue
        tool = {"toolUseId": f"t{k}", "name": draw(NAMES)}
        if draw(st.integers(0, 4)):
            tool["input"] = draw(ARG_VALUES)
        content.append({"toolUse": tool})
        calls.append((tool["name"], compact(tool["input"]) if "input" in tool else ""))
    body = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": "end_turn"}
    usage = (0, 0, 0, 0, 0)
    if draw(st.booleans()):
        body["usage"], usage = _converse_usage(draw)
    return body, (None, None, usage, calls)


STREAMS = {
    "anthropic": anthropic_stream,
    "openai_chat": openai_chat_stream,
    "openai_responses": responses_stream,
    "gemini": gemini_stream,
    "converse": converse_stream,
}
BODIES = {
    "anthropic": anthropic_body,
    "openai_chat": openai_chat_body,
    "openai_responses": responses_body,
    "gemini": gemini_body,
    "converse": converse_body,
}


# ---------------------------------------------------------------------------
# Framings: the bytes of a script on the wire
# ---------------------------------------------------------------------------

#: The framing × dialect pairs providers send, which every property test
#: iterates. A new dialect joins by a stream and a body script above and a row here.
REGISTRY = [
    ("sse", "anthropic"),
    ("sse", "openai_chat"),
    ("sse", "openai_responses"),
    ("sse", "gemini"),
    ("eventstream", "anthropic"),
    ("eventstream", "converse"),
    ("json_array", "gemini"),
    ("json", "anthropic"),
    ("json", "openai_chat"),
    ("json", "openai_responses"),
    ("json", "gemini"),
    ("json", "converse"),
]

JSON_WS = st.sampled_from(["", " ", "\n", "\r\n", "\t", "  \r\n "])


def serialized(draw, payload, multiline: bool = True) -> bytes:
    """`payload` as JSON text, in one of the styles providers use."""
    if isinstance(payload, str):
        return payload.encode()
    ascii_only = draw(st.booleans())
    style = draw(st.sampled_from(["compact", "spaced", "padded", "indented"] if multiline else ["compact", "spaced"]))
    if style == "compact":
        text = json.dumps(payload, ensure_ascii=ascii_only, separators=(",", ":"))
    elif style == "spaced":
        text = json.dumps(payload, ensure_ascii=ascii_only)
    elif style == "padded":
        text = json.dumps(payload, ensure_ascii=ascii_only, separators=(",", ":"))[:-1] + " " * 7 + "}"
    else:
        text = json.dumps(payload, ensure_ascii=ascii_only, indent=1)
    return text.encode("utf-8")


def typed_message(headers: list[tuple[str, int, bytes]], payload: bytes) -> bytes:
    """An event-stream message with headers of any value type (the
    simulator's writer only writes strings): (name, type, value bytes)."""
    import struct
    import zlib

    head = b"".join(bytes((len(n.encode()),)) + n.encode() + bytes((t,)) + v for n, t, v in headers)
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _string_header(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


EXTRA_HEADERS = st.sampled_from(
    [
        ("flag", 0, b""),
        ("off", 1, b""),
        ("b", 2, b"\x7f"),
        ("i16", 3, b"\x00\x07"),
        ("i32", 4, b"\x00\x00\x00\x07"),
        ("i64", 5, b"\x00" * 7 + b"\x07"),
        ("raw", 6, b"\x00\x03\xff\x00\x01"),
        ("date", 8, b"\x00\x00\x01\x8f\x00\x00\x00\x00"),
        ("id", 9, bytes(range(16))),
        (":event-type", 6, b"\x00\x05chunk"),  # not a string: ignored, a later one wins
    ]
)

BAD_BASE64 = st.sampled_from(["strip padding", "bad char", "trailing bits", "whitespace", "not a string", "no bytes"])


@st.composite
def eventstream_wire(draw, events, damage: bool = False):
    """Event-stream messages of `events` (unnamed events go in base64
    `chunk`s, as Bedrock InvokeModel sends them); returns (bytes, messages,
    error text of a trailing exception or error message, or None)."""
    import base64

    from aperture.sim.eventstream import encode_message

    out = []
    for name, payload in events:
        text = serialized(draw, payload, multiline=False)
        if name == "":
            name = "chunk"
            wrapper: dict = {"bytes": base64.b64encode(text).decode()}
            if draw(st.booleans()):  # Bedrock's filler, before or after
                filler = "abcdefghijklmnopqrstuvwxyz"[: draw(st.integers(0, 26))]
                wrapper = {"p": filler, **wrapper} if draw(st.booleans()) else {**wrapper, "p": filler}
            if damage and draw(st.integers(0, 5)) == 0:
                how = draw(BAD_BASE64)
                b64 = wrapper["bytes"]
                if how == "strip padding":
                    wrapper["bytes"] = b64.rstrip("=") if "=" in b64 else b64 + "="
                elif how == "bad char":
                    wrapper["bytes"] = "!" + b64[1:] if b64 else "!"
                elif how == "trailing bits":
                    wrapper["bytes"] = base64.b64encode(b"x").decode()[:1] + "R=="
                elif how == "whitespace":
                    wrapper["bytes"] = b64[:4] + "\n" + b64[4:]
                elif how == "not a string":
                    wrapper["bytes"] = [b64]
                else:
                    del wrapper["bytes"]
            text = json.dumps(wrapper, separators=(",", ":")).encode()
        headers = [(":event-type", name), (":content-type", "application/json"), (":message-type", "event")]
        headers = draw(st.permutations(headers))
        if draw(st.integers(0, 5)) == 0:
            extra = draw(st.lists(EXTRA_HEADERS, max_size=3))
            typed = [(n, 7, _string_header(v)) for n, v in headers]
            out.append(typed_message(extra + typed, text))
        else:
            out.append(encode_message(list(headers), text))
    error = None
    ending = draw(st.sampled_from([None, None, "exception", "exception without message", "error"]))
    if ending == "exception":
        message = draw(WORDS)
        kind = draw(st.sampled_from(["throttlingException", "modelStreamErrorException"]))
        out.append(
            encode_message(
                [(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
                json.dumps({"message": message}).encode(),
            )
        )
        error = f"{kind}: {message}"
    elif ending == "exception without message":
        out.append(
            encode_message([(":exception-type", "validationException"), (":message-type", "exception")], b"{}")
        )
        error = "validationException"
    elif ending == "error":
        code, message = draw(st.sampled_from(["InternalFailure", "ServiceUnavailable"])), draw(WORDS)
        out.append(
            encode_message([(":message-type", "error"), (":error-code", code), (":error-message", message)], b"")
        )
        error = f"{code}: {message}"
    return b"".join(out), len(out), error


@st.composite
def array_wire(draw, events):
    """A streamed JSON array of the events' payloads; returns (bytes,
    elements, whether the closing bracket was sent)."""
    parts = [draw(JSON_WS).encode(), b"["]
    for k, (_, payload) in enumerate(events):
        if k:
            parts += [draw(JSON_WS).encode(), b","]
        parts += [draw(JSON_WS).encode(), serialized(draw, payload)]
    closed = draw(st.integers(0, 4)) > 0
    if closed:
        parts += [draw(JSON_WS).encode(), b"]", draw(JSON_WS).encode()]
    return b"".join(parts), len(events), closed


@st.composite
def valid_input(draw, framing: str, dialect: str, damage: bool = False):
    """(body bytes, the reading it must give): (events, bad_events,
    complete, error, response_id, usage, tool_calls)."""
    if framing == "json":
        body, (error, rid, usage, calls) = draw(BODIES[dialect]())
        return draw(JSON_WS).encode() + serialized(draw, body) + draw(JSON_WS).encode(), (
            1,
            0,
            True,
            error,
            rid,
            usage,
            calls,
        )
    events, (complete, error, rid, usage, calls) = draw(STREAMS[dialect]())
    if framing == "sse":
        data, n = draw(wire([(payload, None) for _, payload in events]))
    elif framing == "eventstream":
        data, n, ending = draw(eventstream_wire(events, damage))
        error = ending or error
    else:
        data, n, closed = draw(array_wire(events))
        complete = complete and closed
    return data, (n, 0, complete, error, rid, usage, calls)


INSERTS = [b"\r", b"\n", b"\r\n", b":", b'"', b"\\", b"{", b"}", b"[", b"]", b",", b"\xff", b"\xc3", b"\\ud800"]


@st.composite
def corrupted_input(draw, framing: str, dialect: str):
    """A valid input of the pair, damaged: flipped, inserted, deleted bytes,
    a cut; event-stream chunks may also carry bad base64 under good CRCs."""
    data = bytearray(draw(valid_input(framing, dialect, damage=True))[0])
    for _ in range(draw(st.integers(0 if framing == "eventstream" else 1, 4))):
        k = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "insert":
            data[k:k] = draw(st.sampled_from(INSERTS + [b"data: x\n\n", b"1e999", b"\x00\x00\x00\x10"]))
        elif op == "truncate":
            del data[k:]
        elif k < len(data):
            if op == "flip":
                data[k] = draw(st.integers(0, 255))
            else:
                del data[k]
    return bytes(data)
