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

class Meter:
    """Reads token usage, tool calls, errors and completeness off a provider
    response as its bytes pass: one *framing* (how the body is cut into
    events) × one *dialect* (what the events of one API say).

    `Meter(framing, dialect)`; an unknown name raises ValueError
    ("unknown meter framing: 'x' (expected one of sse, eventstream,
    json_array, json)", likewise for the dialect). Every combination of a
    known framing and a known dialect works; the ones providers send are:

    | framing     | dialects                                         |
    |-------------|--------------------------------------------------|
    | sse         | anthropic, openai_chat, openai_responses, gemini |
    | eventstream | anthropic (Bedrock InvokeModel), converse        |
    | json_array  | gemini                                           |
    | json        | all five                                         |

    feed() never raises on bad input and reads the same however the body is
    split into chunks (bytes are read in place, a bytearray is copied);
    finish() says the body ended (idempotent; feed() after it is ignored).
    Readings can be taken at any time.

    Framings
    --------
    sse: text/event-stream per WHATWG. Lines end at CR, LF or CRLF (also
        split across chunks); one optional space after the field's colon;
        `data` lines join with LF; `event` names the event ("" when absent);
        comments (`:`) are ignored; a BOM at the very start is dropped; a
        blank line dispatches an event that has data; an event without its
        blank line at the end is never dispatched. An event whose lines add
        up to more than 16 MiB is not buffered: one event, one bad event.
    eventstream: AWS event-stream (`application/vnd.amazon.eventstream`).
        A prelude (total length, headers length, CRC-32) with a bad CRC or
        impossible lengths (total < 16, headers > total - 16, headers over
        128 KiB, payload over 24 MiB) is one bad event and ends the reading
        for good. Every whole message is an event; a message CRC mismatch or
        a malformed header section (a header past the section, an unknown
        value type, a non-UTF-8 name or string) makes it a bad event, and
        reading goes on. All ten header value types are read; the standard
        headers count only with string values (the last one wins). By
        `:message-type`:
        - event, `:event-type` "chunk": the payload is a JSON object whose
          `bytes` string is standard base64 (padding required, canonical);
          the decoded bytes are one unnamed event for the dialect. Anything
          else (not an object, no string `bytes`, bad base64) is a bad
          event. Other members (Bedrock's "p" filler) are ignored.
        - event of another type: the payload, named by `:event-type`.
        - exception: error = "<:exception-type>: <payload.message>" (only the
          type when the payload has no string `message`; "exception" when
          the header is absent).
        - error: error = "<:error-code>: <:error-message>" ("error" / ""
          when absent).
        Other message types are counted and ignored.
    json_array: a streamed JSON array (Gemini without alt=sse). A tokenizer
        tracking only depth, strings and escapes finds the elements (JSON
        whitespace anywhere between tokens); each element is one unnamed
        event. An element over 16 MiB is one event and one bad event,
        skipped without buffering. Structural damage (first non-whitespace
        byte not `[`, an element starting with `,` `]` `}` or `:`, anything
        but `,` or `]` after an element, non-whitespace after the closing
        `]`) is one bad event and ends the reading. Complete needs the
        closing `]` as well as the dialect's condition.
    json: a whole JSON body, kept up to 16 MiB (over that: dropped, nothing
        counted, one bad event at finish()). finish() parses it: an object
        is one event read by the dialect's whole-body rules, and makes the
        response complete; anything else (an empty body included) is a bad
        event. Only finish() reads the body: until then nothing is counted.

    Dialects
    --------
    Only events that can matter are parsed as JSON (a substring test per
    dialect picks them); a parsed event that is not a JSON object is a bad
    event. JSON is read by serde_json's rules (strict UTF-8, at most 127
    nested containers, no lone surrogates, numbers kept as written); a tool
    input that is a JSON value is written back compact, members in the
    provider's order. A token count is a JSON integer in 0..2**64-1,
    anything else is absent. Usage is (input, output, cache_read,
    cache_write, reasoning): input is the input NOT served from cache,
    output includes reasoning. Sums saturate at 2**64-1, differences at 0.

    anthropic (Anthropic Messages; Claude on Vertex and Bedrock InvokeModel):
        stream: usage from `message_start.message.usage`, then each
        `message_delta.usage` (cumulative: a present integer replaces the
        earlier value): input_tokens, output_tokens, cache_read_input_tokens,
        cache_creation_input_tokens, output_tokens_details.reasoning_tokens.
        Each `content_block_start` of type tool_use / server_tool_use is a
        call keyed by `index`: its `input_json_delta.partial_json` fragments
        joined, or, when they add up to nothing, `content_block.input` as
        compact JSON. `message_stop` completes; a Bedrock
        `amazon-bedrock-invocationMetrics` object on it sets input / output
        / cache_read / cache_write from inputTokenCount / outputTokenCount /
        cacheReadInputTokenCount / cacheWriteInputTokenCount (a present
        integer replaces). An `error` event: error = "type: message".
        body (Message): usage from `usage` (same keys); calls from
        `content[]` tool_use / server_tool_use blocks (compact `input`, "{}"
        when absent); a top-level `error` object: "type: message".
    openai_chat (Chat Completions):
        stream: the last `usage` object wins whole: input = prompt_tokens -
        prompt_tokens_details.cached_tokens - cache_write_tokens (>= 0),
        output = completion_tokens, cache_read = cached_tokens, cache_write
        = cache_write_tokens, reasoning =
        completion_tokens_details.reasoning_tokens (missing fields are 0).
        Each new (choice index, tool_calls[].index) pair is a call named by
        `function.name`; later fragments append `function.arguments`.
        `data: [DONE]` completes. A non-null `error`: "type: message".
        body (chat.completion): calls from
        `choices[].message.tool_calls[].function` (the `arguments` string,
        its compact JSON when not a string, "" when absent); usage as above;
        a top-level `error` object: "type: message".
    openai_responses (Responses API; the JSON `type` decides):
        stream: `response.created` / `response.in_progress` set response_id
        from `response.id` (the first seen). `response.output_item.added`
        with item.type function_call / custom_tool_call starts a call named
        `item.name`, keyed by `item.id` (else `output_index`).
        `response.function_call_arguments.delta` /
        `response.custom_tool_call_input.delta` append `delta` to the call of
        that `item_id` (else that `output_index`). A call whose deltas add
        up to nothing takes the `arguments` / `input` of its `.done` event or
        of its item in `response.output_item.done`. `response.completed`,
        `response.incomplete`, `response.failed` complete, with usage from
        `response.usage`: input = input_tokens - cached - written (>= 0),
        output = output_tokens, cache_read = input_tokens_details.
        cached_tokens, cache_write = input_tokens_details.cache_write_tokens,
        reasoning = output_tokens_details.reasoning_tokens.
        `response.failed` with a `response.error` object: error = "code:
        message". An `error` event: error = "code: message" ("error" when
        the code is not a string).
        body (Response): response_id = `id`; usage as above; calls from
        `output[]` function_call (name, arguments) and custom_tool_call
        (name, input) items; an `error` object: "type-or-code: message".
    gemini (Gemini API, Gemini on Vertex): every event and the body are a
        GenerateContentResponse. The last `usageMetadata` wins whole
        (missing fields are 0): input = max(promptTokenCount -
        cachedContentTokenCount, 0) + toolUsePromptTokenCount, output =
        candidatesTokenCount + thoughtsTokenCount, cache_read =
        cachedContentTokenCount, cache_write = 0, reasoning =
        thoughtsTokenCount. Every `candidates[].content.parts[].functionCall`
        is a call (name, compact `args`, "" when absent). Complete: a
        candidate with a non-empty string `finishReason`. A top-level
        `error` object: "STATUS: message" (the code when there is no status
        string).
    converse (Bedrock Converse / ConverseStream; events named by
        `:event-type`): `contentBlockStart` with `start.toolUse` starts a
        call keyed by `contentBlockIndex`; `contentBlockDelta` with a string
        `delta.toolUse.input` appends to it; `metadata` completes and its
        `usage` wins whole: input = inputTokens, output = outputTokens,
        cache_read = cacheReadInputTokens, cache_write =
        cacheWriteInputTokens, reasoning 0.
        body (ConverseResponse): usage from `usage` (same keys); calls from
        `output.message.content[].toolUse` (name, compact `input`, "" when
        absent).
    """

    complete: bool
    """The provider's terminal event / condition was seen (see above)."""
    events: int
    """Events read: SSE events, event-stream messages, array elements; 1 for
    a parsed JSON body."""
    bad_events: int
    """Events that could not be read (parsed and not a JSON object, bad
    base64, CRC mismatch, malformed headers), were too large, or framing
    damage."""
    error: str | None
    """A provider error reported in the body or stream, as "kind: message"."""
    response_id: str | None
    """openai_responses only: the id of the Response."""

    def __init__(self, framing: str, dialect: str) -> None: ...
    def feed(self, chunk: bytes) -> None:
        """Read the next chunk (bytes, read in place; bytearray is copied)."""
    def finish(self) -> None:
        """The body ended (idempotent; feed() after it is ignored)."""
    def usage(self) -> tuple[int, int, int, int, int]:
        """(input, output, cache_read, cache_write, reasoning) tokens seen so far."""
    def tool_calls(self) -> list[tuple[str, str]]:
        """(name, arguments JSON text) of each tool call seen so far, in order."""
