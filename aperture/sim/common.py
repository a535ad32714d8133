"""What both simulated APIs share: the token rules, the answer text, and tool
calls built from a tool's input schema.

Everything here is a pure function of the request, so that a test can compute
the exact numbers a simulated provider will report (see `aperture.sim.expected_usage`).

The rules
---------
- A "token" is one whitespace-separated word. The input size of a request is
  the number of words in every string value (recursively, keys excluded) of
  the parts a provider bills as input: Anthropic `system`, `messages`, `tools`;
  OpenAI `messages`, `tools`. At least 1.
- The answer text is the first N words of `VOCABULARY`, cycled, joined by
  single spaces; one word is one output token. N is the configured answer
  length, capped by the request's `max_tokens` / `max_completion_tokens`.
- A tool call is made when the request has tools and either the last user
  message contains "tool" (case-insensitive) in a request without a system
  prompt, or the tool choice forces one. (A coding agent's request always has
  a system prompt: it gets a tool call on the marker of `aperture.sim.agent`.)
  Its arguments come from the tool's input schema (`example_value`) and it
  counts `tool_call_tokens(arguments)` output tokens; a tool call is never cut
  short by the output cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import orjson

VOCABULARY = (
    "Lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim",
    "ad", "minim", "veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi",
    "aliquip", "ex", "ea", "commodo", "consequat", "duis", "aute", "irure", "in", "reprehenderit",
    "voluptate", "velit", "esse", "cillum", "fugiat", "nulla", "pariatur", "excepteur", "sint",
    "occaecat", "cupidatat", "non", "proident", "sunt", "culpa", "qui", "officia", "deserunt",
    "mollit", "anim", "id", "est", "laborum",
)

# The text deltas of a stream: the first word bare, the others with their
# leading space, so that the deltas concatenate to `answer_text(n)`.
_PIECES = (VOCABULARY[0],) + tuple(" " + w for w in VOCABULARY[1:])
_TEXT_CACHE: dict[int, str] = {}
# Answers up to this many words are kept prebuilt (text here, delta events in
# the API modules); a few MB at most, whatever lengths clients ask for.
CACHED_LENGTHS = 256


def answer_words(n: int) -> list[str]:
    """The n stream pieces of an answer: "Lorem", " ipsum", " dolor", ..."""
    if n <= len(_PIECES):
        return list(_PIECES[:max(n, 0)])
    size = len(VOCABULARY)
    return [VOCABULARY[0]] + [" " + VOCABULARY[i % size] for i in range(1, n)]


def answer_text(n: int) -> str:
    """The answer of n words (tokens)."""
    text = _TEXT_CACHE.get(n)
    if text is None:
        text = "".join(answer_words(n))
        if n <= CACHED_LENGTHS:
            _TEXT_CACHE[n] = text
    return text


def count_words(*values, marker: str = "cache_control") -> tuple[int, bool]:
    """(words in every string value, whether any object has a `marker` key:
    Anthropic's "cache_control", Bedrock Converse's "cachePoint").

    One walk answers both questions; an explicit stack instead of recursion
    keeps deep conversations from hitting the recursion limit.
    """
    words = 0
    marked = False
    stack = list(values)
    pop = stack.pop
    push = stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind is str:
            words += len(value.split())
        elif kind is dict:
            if marker in value:
                marked = True
            push(value.values())
        elif kind is list:
            push(value)
    return words, marked


def tool_call_tokens(arguments: object) -> int:
    """Output tokens of a tool call: 1 + (bytes of its compact JSON arguments) // 4."""
    return 1 + len(orjson.dumps(arguments)) // 4


def example_value(schema: object, depth: int = 0) -> object:
    """A value that fits a JSON schema: strings "x", numbers 1, booleans true,
    arrays of one item, objects with every listed property; `const` and the
    first `enum` value win; `anyOf`/`oneOf`/`allOf` take their first choice.
    Type names are read in any case."""
    if not isinstance(schema, dict) or depth > 16:
        return "x"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        choices = schema.get(key)
        if isinstance(choices, list) and choices:
            return example_value(choices[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        kind = kind.lower()  # Gemini schemas spell types in capitals ("OBJECT")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {name: example_value(sub, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [example_value(schema.get("items"), depth + 1)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x"


def example_arguments(schema: object) -> dict:
    """Tool arguments built from an input schema; always a JSON object."""
    value = example_value(schema)
    return value if isinstance(value, dict) else {}


def split_fragments(text: str, pieces: int = 3) -> list[str]:
    """`text` cut into `pieces` nearly equal non-empty parts (fewer when short)."""
    n = len(text)
    pieces = max(1, min(pieces, n))
    if n == 0:
        return []
    step, extra = divmod(n, pieces)
    out = []
    start = 0
    for i in range(pieces):
        end = start + step + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def message_text(content: object) -> str:
    """The text of a message's content: a string, or the `text` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part["text"] for part in content
                        if isinstance(part, dict) and part.get("type") in ("text", "input_text")
                        and isinstance(part.get("text"), str))
    return ""


def last_user_text(messages: object) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return message_text(message.get("content"))
    return ""


def anthropic_version_ok(value: object, platform_version: str) -> bool:
    """Whether a Claude body's `anthropic_version` is one Vertex / Bedrock take:
    the platform's own value ("vertex-2023-10-16", "bedrock-2023-05-31"), or an
    Anthropic API version date, which the anthropic SDK (2.x) sends instead."""
    if value == platform_version:
        return True
    return (isinstance(value, str) and len(value) == 10 and value[4] == value[7] == "-"
            and (value[:4] + value[5:7] + value[8:]).isdigit())


def as_count(value: object) -> int | None:
    """An integer request field (max_tokens...), or None when absent or not an integer."""
    return value if type(value) is int else None


# Answer and the API plans are built once per request: immutable named tuples,
# as a frozen dataclass costs three times as much to create.


class ToolCall(NamedTuple):
    name: str
    arguments: dict
    #: the input of a freeform tool (the Responses API's custom tools), sent
    #: as it is instead of `arguments`
    raw: str | None = None


class Answer(NamedTuple):
    """What the simulated model says: `words` of text, or one tool call.
    `text`: the stream pieces of a text other than the vocabulary's
    (aperture.sim.agent), one per word."""

    words: int
    tool: ToolCall | None
    output_tokens: int
    truncated: bool
    text: tuple[str, ...] | None = None


def pieces_of(answer: Answer, words: int | None = None) -> list[str]:
    """The stream pieces of a text answer (`words`: the visible words, when
    reasoning takes a share of the answer's)."""
    if answer.text is not None:
        return list(answer.text)
    return answer_words(answer.words if words is None else words)


def text_of(answer: Answer, words: int | None = None) -> str:
    """The whole text of a text answer."""
    if answer.text is not None:
        return "".join(answer.text)
    return answer_text(answer.words if words is None else words)


def make_answer(tool: tuple[str, object] | None, length: int, cap: int | None) -> Answer:
    """The answer for a request: a tool call (name, input schema) when one was
    chosen, otherwise `length` words cut to `cap`."""
    if tool is not None:
        arguments = example_arguments(tool[1])
        return Answer(0, ToolCall(tool[0], arguments), tool_call_tokens(arguments), False)
    length = max(length, 0)
    if cap is not None and cap < length:
        n = max(cap, 0)
        return Answer(n, None, n, True)
    return Answer(length, None, length, False)


@dataclass(frozen=True, slots=True)
class EventStream:
    """A streamed answer as the server writes it: the events before the first
    content delta, one entry per content delta (in token order, a ping folded
    into the delta it follows), and the events after the last one. The server
    paces the deltas and injects faults between these parts."""

    head: tuple[bytes, ...]
    deltas: tuple[bytes, ...]
    tail: tuple[bytes, ...]

    def joined(self) -> bytes:
        return b"".join((*self.head, *self.deltas, *self.tail))


#: The models `GET /v1/models` lists (any model name is accepted in requests):
#: (id, owner, display name, creation time).
MODELS = (
    ("claude-opus-4-7", "anthropic", "Claude Opus 4.7", 1767225600),
    ("claude-sonnet-4-5", "anthropic", "Claude Sonnet 4.5", 1759104000),
    ("claude-haiku-4-5", "anthropic", "Claude Haiku 4.5", 1760486400),
    ("gpt-5.4", "openai", "GPT-5.4", 1767225600),
    ("gpt-5.4-mini", "openai", "GPT-5.4 mini", 1767225600),
    ("gpt-4o", "openai", "GPT-4o", 1715367049),
)
