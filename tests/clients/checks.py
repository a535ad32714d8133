"""What a capture must hold after an agent's run, computed from what the
simulator declares for each request the agent sent (its answer text, its
tool call and its usage: `aperture.sim`'s plans, pure functions of the
request, which the simulator's answers are made from)."""

from __future__ import annotations

import json

from aperture.sim import anthropic, gemini, openai_chat, openai_responses
from aperture.sim.common import text_of

#: the simulator's answer length, `SimSettings.output_tokens` of the embedded default
ANSWER_TOKENS = 12
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens")


def request_json(record: dict) -> dict:
    assert record["request_body"] is not None and not record["request_body_truncated"], record["id"]
    return json.loads(record["request_body"])


def declared(record: dict) -> tuple[dict, str | None, object]:
    """(usage as aperture records it, answer text or None, tool call or None)
    that the simulator declares for the record's request."""
    api = record["api"]
    body = request_json(record)
    if api in ("anthropic_messages", "google_raw_predict", "bedrock_model_invoke"):
        plan = anthropic.plan(body, ANSWER_TOKENS)
        usage = {"input_tokens": plan.input_tokens, "output_tokens": plan.answer.output_tokens,
                 "cache_read_tokens": plan.cache_read_input_tokens,
                 "cache_write_tokens": plan.cache_creation_input_tokens, "reasoning_tokens": 0}
        text = text_of(plan.answer)
    elif api == "openai_chat":
        plan = openai_chat.plan(body, ANSWER_TOKENS)
        usage = {"input_tokens": plan.prompt_tokens - plan.cached_tokens,
                 "output_tokens": plan.completion_tokens, "cache_read_tokens": plan.cached_tokens,
                 "cache_write_tokens": 0, "reasoning_tokens": plan.reasoning_tokens}
        text = text_of(plan.answer, plan.text_words)
    elif api == "openai_responses":
        plan = openai_responses.plan(body, ANSWER_TOKENS)
        u = plan.usage
        cached = u["input_tokens_details"]["cached_tokens"]
        usage = {"input_tokens": u["input_tokens"] - cached, "output_tokens": u["output_tokens"],
                 "cache_read_tokens": cached, "cache_write_tokens": 0,
                 "reasoning_tokens": u["output_tokens_details"]["reasoning_tokens"]}
        text = text_of(plan.answer, plan.counts.text_words)
    elif api == "gemini_generate_content":
        plan = gemini.plan(body, ANSWER_TOKENS)
        u = plan.usage()
        cached = u.get("cachedContentTokenCount", 0)
        thoughts = u.get("thoughtsTokenCount", 0)
        usage = {"input_tokens": u["promptTokenCount"] - cached,
                 "output_tokens": u["candidatesTokenCount"] + thoughts, "cache_read_tokens": cached,
                 "cache_write_tokens": 0, "reasoning_tokens": thoughts}
        text = text_of(plan.answer)
    else:
        raise AssertionError("no simulator plan for api %r" % api)
    tool = plan.answer.tool
    return usage, (None if tool is not None else text), tool


def tokens(record: dict) -> dict:
    return {k: record[k] for k in TOKEN_FIELDS}


def check_record(record: dict, *, api: str, provider: str, model: str, stream: bool = True) -> None:
    """One request, served and metered: 200, complete, the right route and
    model, and the token counts the simulator declared."""
    summary = {k: record[k] for k in ("path", "status", "state", "error")}
    assert (record["status"], record["state"]) == (200, "complete"), summary
    assert (record["api"], record["provider"], record["model"]) == (api, provider, model), summary
    assert record["stream"] is stream, summary
    assert record["captured"] and record["request_body"], summary
    usage, _, _ = declared(record)
    assert tokens(record) == usage, summary
    assert record["input_tokens"] > 0 and record["output_tokens"] > 0


def recorded_calls(record: dict) -> list[tuple[str, object]]:
    """The record's tool calls, arguments parsed when they are JSON."""
    out = []
    for call in record["tool_calls"]:
        try:
            args = json.loads(call["arguments"])
        except ValueError:
            args = call["arguments"]
        out.append((call["name"], args))
    return out


def check_tool_call(record: dict, name: str, path: str) -> None:
    """The record holds exactly the one tool call the simulator declared,
    named `name` in the agent's vocabulary, reading `path`."""
    _, text, tool = declared(record)
    assert text is None and tool is not None, "the simulator declared no tool call"
    assert tool.name == name
    expected = tool.raw if tool.raw is not None else tool.arguments
    assert recorded_calls(record) == [(name, expected)]
    assert path in json.dumps(expected)


def answer_text(record: dict) -> str:
    _, text, tool = declared(record)
    assert tool is None and text is not None, "the simulator declared a tool call"
    assert record["tool_calls"] == []
    return text


def check_quote(text: str, path: str, secret: str) -> None:
    """A marked exchange's final answer quotes the file it had read."""
    assert text.startswith("The file %s says: " % path), text
    assert secret in text, text


def check_no_secret(records: list[dict], *secrets: str) -> None:
    """No placeholder key of the client is in any capture (headers, path, bodies)."""
    for record in records:
        blob = repr({k: v for k, v in record.items()}).encode() + (record["request_body"] or b"") \
            + (record["response_body"] or b"")
        for secret in secrets:
            assert secret.encode() not in blob, (record["id"], record["path"])


def one_session(records: list[dict]) -> str:
    sessions = {r["session"] for r in records}
    assert len(sessions) == 1 and "" not in sessions, sessions
    return sessions.pop()
