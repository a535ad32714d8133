"""Native byte scanners (Rust, PyO3). `aperture._pure` is the pure-Python twin
with the same API; `aperture.accel` picks one of the two once at import.

Status codes returned by `ModelScanner.feed` / `ModelScanner.finish`:
NEED_DATA = 0, FOUND = 1, MALFORMED = 2, MISSING = 3, NOT_STRING = 4, DUPLICATE = 5.
"""

NEED_DATA: int
FOUND: int
MALFORMED: int
MISSING: int
NOT_STRING: int
DUPLICATE: int

class ModelScanner:
    """Incremental RFC 8259 scanner that finds the value of the top-level
    "model" key of a JSON object, however the body is split into chunks.

    Nested objects, arrays and strings are skipped: a "model" key inside
    `messages` or a tool input never matches. Escapes in keys and in the model
    value are decoded. The whole document keeps being validated after the model
    is found, so a second top-level "model" key (DUPLICATE) or malformed JSON
    after it is still reported.

    The first error is sticky: once feed() or finish() returned an error code,
    every later call returns the same code.
    """

    model: str | None
    """The decoded model value once FOUND, else None."""
    model_start: int
    """Absolute offset (in the whole body) of the opening quote of the model value, -1 if not found."""
    model_end: int
    """Absolute offset just past the closing quote of the model value, -1 if not found."""
    offset: int
    """Bytes consumed so far."""
    error: str | None
    """Message for an error code, naming the problem and its byte offset."""

    def __init__(self) -> None: ...
    def feed(self, chunk: bytes) -> int:
        """Scan the next chunk. Returns NEED_DATA until the model value is
        complete, then FOUND; or an error code (MISSING when the top-level object
        closes without a model key)."""
    def finish(self) -> int:
        """The body has ended. FOUND if the document is complete and has a model;
        MISSING if complete without one; MALFORMED if empty, truncated or followed
        by anything but whitespace."""

class SseMeter:
    """Reads usage and tool calls off a text/event-stream response as it passes.

    `api` is an API format name ("anthropic_messages" or "openai_chat"). Lines
    are split on bytes (CR, LF, CRLF, also across chunks); events are dispatched
    on blank lines per the WHATWG rules; only the events that carry usage, tool
    calls, errors or the end of the stream are parsed as JSON. feed() never
    raises on bad input: malformed events are skipped and counted.
    """

    complete: bool
    """The provider's terminal event was seen (message_stop / data: [DONE])."""
    events: int
    """Events dispatched so far."""
    bad_events: int
    """Events whose JSON could not be read."""
    error: str | None
    """Text of an error event ("overloaded_error: Overloaded"), if one was seen."""

    def __init__(self, api: str) -> None: ...
    def feed(self, chunk: bytes) -> None: ...
    def usage(self) -> tuple[int, int, int, int, int]:
        """(input, output, cache_read, cache_write, reasoning) tokens seen so far."""
    def tool_calls(self) -> list[tuple[str, str]]:
        """(name, arguments JSON text) of each tool call seen so far, in order."""
