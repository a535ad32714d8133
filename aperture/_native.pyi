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

    The grammar is strict: whitespace is space, tab, LF and CR only; numbers
    are `-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?`; raw bytes below
    0x20 in strings and unknown escapes are errors; the top-level value must be
    an object; nesting deeper than 1024 objects/arrays is an error. The keys of
    the top-level object and the model value are decoded (`\\uXXXX` surrogate
    pairs joined; a lone surrogate is an error) and must be valid UTF-8. The
    non-ASCII bytes of every other string are NOT UTF-8 validated: they are
    skipped in bulk.

    The first error is sticky: once feed() or finish() returned an error code,
    every later call returns the same code.
    """

    model: str | None
    """The decoded model value once FOUND, else None."""
    model_start: int
    """Absolute offset (in the whole body) of the opening quote of the model value, -1 if not found."""
    model_end: int
    """Absolute offset just past the closing quote of the model value, -1 if not found.
    `body[:model_start] + new_json_string + body[model_end:]` rewrites the model."""
    offset: int
    """Bytes consumed so far. After an error it stops just past the byte at
    which the error was detected (finish() errors: the end of the body)."""
    error: str | None
    """Message for an error code, naming the problem and its byte offset, e.g.
    "unexpected character 'x' at byte 17", "unterminated string at byte 1000",
    'duplicate top-level "model" key at byte 42' (the offset of that key),
    'missing top-level "model" key (object closed at byte 9)'. Bytes outside
    printable ASCII are shown as 0xNN. Both implementations give the same text."""

    def __init__(self) -> None: ...
    def feed(self, chunk: bytes) -> int:
        """Scan the next chunk (bytes, read in place; bytearray is copied).
        Returns NEED_DATA until the model value is complete, then FOUND; or an
        error code: MALFORMED, NOT_STRING (as soon as the first byte of a
        non-string top-level model value is seen), DUPLICATE, MISSING (when
        the top-level object closes without a model key)."""
    def finish(self) -> int:
        """The body has ended. FOUND if the document is complete and has a model;
        MISSING if complete without one; MALFORMED if empty, truncated or followed
        by anything but whitespace."""

class SseMeter:
    """Reads usage and tool calls off a text/event-stream response as it passes.

    `api` is an API format name ("anthropic_messages" or "openai_chat"); any
    other name raises ValueError. Lines are split on bytes (CR, LF, CRLF, also
    across chunks); events are dispatched on blank lines per the WHATWG rules
    (one optional space after the colon, `data` lines joined with LF, comments
    ignored, an event without its blank line at the end is never dispatched, a
    BOM at the very start is dropped). Only the events that can carry usage,
    tool calls, errors or the end of the stream (picked by a substring test)
    are parsed as JSON. feed() never raises on bad input: malformed events are
    skipped and counted. An event whose lines add up to more than 16 MiB is
    not buffered: it is skipped and counted as bad.

    anthropic_messages: usage from `message_start.message.usage`, then each
    `message_delta.usage` (cumulative: a present integer replaces the earlier
    value, nothing is added). Each `content_block_start` of type `tool_use` or
    `server_tool_use` is a tool call; its arguments are its
    `input_json_delta.partial_json` fragments joined, or, when they add up to
    nothing, `content_block.input` as compact JSON. `message_stop` completes.

    openai_chat: the last non-null `usage` object; input is `prompt_tokens`
    less `cached_tokens` and `cache_write_tokens` (never below 0). Each new
    (choice index, tool_calls index) pair is a call; later fragments append
    `function.arguments`. `data: [DONE]` completes.
    """

    complete: bool
    """The provider's terminal event was seen (message_stop / data: [DONE])."""
    events: int
    """Events dispatched so far."""
    bad_events: int
    """Events whose JSON could not be read (only events that were parsed), or too large."""
    error: str | None
    """Text of an error event ("overloaded_error: Overloaded"), if one was seen."""

    def __init__(self, api: str) -> None: ...
    def feed(self, chunk: bytes) -> None:
        """Read the next chunk (bytes, read in place; bytearray is copied)."""
    def usage(self) -> tuple[int, int, int, int, int]:
        """(input, output, cache_read, cache_write, reasoning) tokens seen so far."""
    def tool_calls(self) -> list[tuple[str, str]]:
        """(name, arguments JSON text) of each tool call seen so far, in order."""
