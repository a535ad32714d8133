"""What a simulated format declares, what the server hands it, what it answers.

A format is one module (`anthropic`, `openai_chat`, `openai_responses`,
`gemini`, `vertex`, `bedrock`) listed in `aperture.sim.registry`. It provides:

``NAME``
    the format's name, e.g. "gemini".
``ROUTES``
    a tuple of `Route`: a method, a path shape, and the pure functions that
    answer it.
``error_response(status, message, seq, param=None, code=None) -> (status, headers, body)``
    an error in the format's own shape (the server calls it for every
    refusal and for injected `<status>` faults); `code` is the format's own
    error code when a `Reject` names one.
``USAGE``
    {api name: function(request, output_tokens) -> usage dict}, the names
    `aperture.sim.expected_usage` accepts for this format.
``owns(headers, query) -> bool`` (optional)
    whether a request whose path matches no route looks like this format's
    (a header only its clients send); its 404 is then in this format's shape.
``new_state() -> object`` (optional)
    per-simulator mutable state handed to the actions as `Call.state` (the
    Responses API keeps its stored responses there).

Path shapes
-----------
A shape is a path with `{name}` parameters, each one path segment
(`[^/]+`), or `{name:a|b}` for a parameter limited to the listed values. A
request path matches when it *ends with* the shape at a segment boundary, so
a provider baseurl with a prefix works: `/anything/v1/messages` is
`/v1/messages`. Parameter values are percent-decoded (Bedrock model ids arrive
as `arn%3Aaws...%2F...`). When several shapes match, the one with more literal
characters wins (`/v1/models/{model}:generateContent` over
`/v1/models/{model}`), and among equals a route with a `when` predicate that
holds wins over one without (`GET /v1/models` is Anthropic's when the request
carries `anthropic-version`, Gemini's with a Google key, else OpenAI's).

Answers
-------
`Route.check(call)` runs first and may raise `Reject` (validation, unknown
ids); then the server applies latency and faults; then `Route.action(call)`
returns a `Reply` (a whole body) or a `Streamed` answer (head, paced deltas,
tail, and the format's own mid-stream failure). Both are pure functions of
the call: the server alone decides when their bytes go out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple
from urllib.parse import unquote

from aperture.sim.common import EventStream


class Reject(Exception):
    """An error answer decided while reading or checking the request."""

    def __init__(self, status: int, message: str | None = None, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code  # the format's own error code (OpenAI code, Google status, AWS exception...)


@dataclass(slots=True)
class Call:
    """One request as a format's functions see it."""

    method: str
    path: str
    query: dict[str, str]  # the first value of each query parameter
    headers: dict[str, str]  # lowercased names
    params: dict[str, str]  # the path shape's parameters, percent-decoded
    request: Any  # the parsed JSON body (a dict) for routes with `body`, else None
    seq: int  # the simulator's request counter: ids derive from it
    state: Any = None  # the format's per-simulator state (see `new_state`)
    length: int = 12  # answer length in tokens (words), before the request's cap
    ping_every: int = 0  # Anthropic streams: a ping every N content deltas
    latency_ms: int = 0  # the head delay the server applies, for latency figures in answers
    token_rate: float = 0.0  # output tokens per second the server paces streams at (0: no pacing)

    def model_param(self) -> str:
        return self.params.get("model", "")


class Reply(NamedTuple):
    """A whole answer: status, headers, body (the server adds content-length)."""

    headers: list[tuple[bytes, bytes]]
    body: bytes
    status: int = 200


class Streamed(NamedTuple):
    """A streamed answer. `failure(sent)` is the format's mid-stream error
    (the `error-event` fault) once `sent` of the content deltas went out."""

    headers: list[tuple[bytes, bytes]]
    events: EventStream
    failure: Callable[[int], bytes]


Answer = Reply | Streamed

_PARAM = re.compile(r"\{(\w+)(?::([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of a format: `method shape` answered by `action`."""

    method: str
    shape: str
    action: Callable[[Call], Answer]
    check: Callable[[Call], None] | None = None
    #: where the model name (which may carry `sim-error-<fault>`) is: "body"
    #: (the JSON body's "model"), a path parameter's name, or None
    model: str | None = "body"
    #: the body must be a JSON object (parsed into `Call.request`)
    body: bool = True
    #: latency and faults apply (False for listings such as GET /v1/models)
    faults: bool = True
    #: an extra condition on (headers, query) for paths several formats share
    when: Callable[[dict, dict], bool] | None = None
    #: this route's error shape when it is not its module's `error_response`
    errors: Callable | None = None
    pattern: re.Pattern = field(init=False, repr=False, compare=False)
    tail: str = field(init=False, repr=False, compare=False)
    lead: str = field(init=False, repr=False, compare=False)
    literal: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = []
        end = 0
        literal = 0
        for m in _PARAM.finditer(self.shape):
            text = self.shape[end:m.start()]
            literal += len(text)
            parts.append(re.escape(text))
            name, choices = m.group(1), m.group(2)
            parts.append("(?P<%s>%s)" % (name, "|".join(map(re.escape, choices.split("|")))
                                         if choices else "[^/]+"))
            end = m.end()
        text = self.shape[end:]
        literal += len(text)
        parts.append(re.escape(text) + r"\Z")
        object.__setattr__(self, "pattern", re.compile("".join(parts)))
        # The literal text after the last parameter: a cheap `endswith` test
        # that rules out most routes before the pattern runs.
        object.__setattr__(self, "tail", text)
        # For a shape whose last segment is a bare parameter ("/v1/models/{id}"):
        # its literal segments before that one ("/v1/models/"), tested as cheaply.
        head, _, segment = self.shape.rpartition("/")
        bare = segment.startswith("{") and segment.endswith("}") and segment.count("{") == 1
        object.__setattr__(self, "lead", head + "/" if bare and "{" not in head else "")
        object.__setattr__(self, "literal", literal)

    def match(self, path: str) -> dict[str, str] | None:
        """The decoded parameters when `path` ends with this shape, else None."""
        if not path.endswith(self.tail):
            return None
        lead = self.lead
        if lead:  # a shape ending in a parameter: the literal segments before it must be there
            start = path.rfind("/") + 1 - len(lead)
            if start < 0 or not path.startswith(lead, start):
                return None
        if self.tail == self.shape:  # no parameters: the suffix test was all (shapes start with "/")
            return {}
        found = self.pattern.search(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}

    @property
    def last(self) -> str:
        """The shape's last segment: a literal ("invoke"), a verb after a
        parameter (":generateContent"), or "" when it is all parameter."""
        segment = self.shape.rpartition("/")[2]
        if "{" not in segment:
            return segment
        verb = segment.rpartition("}")[2]
        return verb if verb.startswith(":") else ""


def sort_routes(routes) -> tuple[Route, ...]:
    """Most specific first: more literal characters, then routes with `when`."""
    return tuple(sorted(routes, key=lambda r: (-r.literal, r.when is None)))
