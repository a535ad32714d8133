"""The simulator facing a coding agent (Claude Code, Codex, Gemini CLI, OpenCode).

A real agent sends a system prompt and reminders that talk about tools all the
time, so the simulator's generic rule (a tool call when the user's message
says "tool") holds only for requests without a system prompt. An agent gets a
tool call only when its user asks for one with the marker below, which makes
one harmless, read-only exchange of two turns:

1. The last user message contains ``sim-read-file:PATH`` (PATH: no
   whitespace, and no quote or punctuation at its end; agents want it
   absolute) and the request offers a tool that
   reads a file or runs a command. The answer is one call of that tool,
   reading PATH, in the agent's own vocabulary (`read_call`): Claude Code's
   ``Read`` with ``file_path``, Gemini CLI's ``read_file``, OpenCode's
   ``read`` with ``filePath``, a shell tool (``exec_command``, ``shell``,
   ``Bash``) running ``cat PATH``, or Codex's freeform ``exec`` with a
   script that runs ``cat PATH`` through its nested ``exec_command``.
2. The conversation's last message is a tool result and an earlier user
   message has the marker. The answer is text that quotes the result:
   ``The file PATH says: `` followed by the result's text, whitespace
   collapsed (`quote`). Its output tokens are its words, the simulator's
   word rule.

Everything else (no marker, or no tool it knows) is answered by the format's
usual rules. Each format module supplies the user texts, the last tool
result and the tools of its own request shape to `agent_answer`.
"""

from __future__ import annotations

import re
import shlex

import orjson

from aperture.sim.common import Answer, ToolCall, tool_call_tokens

MARKER = "sim-read-file:"
# PATH ends at whitespace; quotes and punctuation around a prompt's last word are not part of it.
_MARKER = re.compile(re.escape(MARKER) + r"""(\S+?)["'`.,;:!?)\]>]*(?=\s|\Z)""")

# Tools that read a file, by name, in order of preference; and the argument
# that names the file.
READERS = ("Read", "read_file", "read", "view", "ReadFile")
PATH_ARGUMENTS = ("file_path", "filePath", "absolute_path", "path", "filename", "file")
# Tools that run a command, and the argument that holds it.
SHELLS = ("exec_command", "shell_command", "shell", "Bash", "bash", "run_shell_command")
COMMAND_ARGUMENTS = ("cmd", "command")
# Freeform tools that run JavaScript which calls the other tools (Codex's
# `exec`, whose nested tools are on a global `tools` object). Their schema,
# as the format modules hand it over, is {"freeform": description}.
CODE_TOOLS = ("exec",)


def marked_path(text: str) -> str | None:
    """The PATH of the last marker in `text`, or None."""
    found = None
    for m in _MARKER.finditer(text):
        found = m.group(1)
    return found


def _properties(schema: object) -> dict:
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            return props
    return {}


def read_call(tools: list[tuple[str, object]], path: str) -> ToolCall | None:
    """A call that reads `path` with one of `tools` ((name, parameters
    schema) pairs), or None when none of them reads files or runs commands."""
    by_name = {}
    for name, schema in tools:
        by_name.setdefault(name, schema)
    for name in READERS:
        if name in by_name:
            props = _properties(by_name[name])
            key = next((k for k in PATH_ARGUMENTS if k in props), None)
            if key is not None:
                return ToolCall(name, {key: path})
    for name in CODE_TOOLS:
        schema = by_name.get(name)
        if isinstance(schema, dict) and "tools.exec_command" in str(schema.get("freeform", "")):
            command = "cat " + shlex.quote(path)
            script = "const r = await tools.exec_command({cmd: %s});\ntext(r);" % orjson.dumps(
                command).decode()
            return ToolCall(name, {}, script)
    for name in SHELLS:
        if name in by_name:
            props = _properties(by_name[name])
            key = next((k for k in COMMAND_ARGUMENTS if k in props), None)
            if key is None:
                continue
            kind = props[key].get("type") if isinstance(props[key], dict) else None
            if kind == "array":
                return ToolCall(name, {key: ["cat", path]})
            return ToolCall(name, {key: "cat " + shlex.quote(path)})
    return None


def quote(path: str, result: str) -> str:
    """The answer to the tool result of a marked request."""
    return "The file %s says: %s" % (path, " ".join(result.split()))


def text_answer(text: str) -> Answer:
    """An answer of `text`, one output token per word (stream pieces: the
    first word bare, the others with their leading space)."""
    words = text.split(" ")
    pieces = tuple([words[0]] + [" " + w for w in words[1:]])
    return Answer(len(pieces), None, len(pieces), False, pieces)


def agent_answer(user_texts: list[str], last_user_text: str, result: str | None,
                 tools: list[tuple[str, object]]) -> Answer | None:
    """The answer of the marked two-turn exchange (see the module docstring),
    or None when the request is not part of one.

    `user_texts`: the text of every user message, in order; `last_user_text`:
    the last message's text when it is a user message (not a tool result);
    `result`: the text of the last message when it is a tool result, else
    None; `tools`: (name, parameters schema) of the tools offered.
    """
    if result is not None:
        path = None
        for text in user_texts:
            path = marked_path(text) or path
        return None if path is None else text_answer(quote(path, result))
    path = marked_path(last_user_text)
    if path is None:
        return None
    call = read_call(tools, path)
    if call is None:
        return None
    tokens = tool_call_tokens(call.arguments) if call.raw is None else 1 + len(call.raw.encode()) // 4
    return Answer(0, call, tokens, False)


def result_text(content: object) -> str:
    """The text of a tool result's content in any of the formats' shapes: a
    string, a list of parts with `text` (Anthropic, OpenAI, Converse), or a
    JSON value (Gemini's `response`, Converse's `json`), written as JSON
    unless it is an object with one string `output` or `content`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif "json" in part:
                    texts.append(result_text(part["json"]))
            elif isinstance(part, str):
                texts.append(part)
        return "\n".join(texts)
    if isinstance(content, dict):
        for key in ("output", "content"):
            if isinstance(content.get(key), str):
                return content[key]
    return orjson.dumps(content).decode()
