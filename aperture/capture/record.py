"""The record of one finished exchange, and the sink it is handed to.

The exchange builds a `Record` when it ends, whatever the outcome (complete,
refused, failed, interrupted) and hands it to the configured `RecordSink`.
Headers in a record have already had every credential removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

# States of an exchange (issue: capture every exchange).
COMPLETE = "complete"
CLIENT_DISCONNECTED = "client_disconnected"
UPSTREAM_ERROR = "upstream_error"
REFUSED = "refused"
INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # JSON text as the provider sent it ("" when none)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0  # input not served from cache
    output_tokens: int = 0  # includes reasoning tokens
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens, reported separately


@dataclass(slots=True)
class Record:
    id: str  # unique, time-ordered (see aperture.ids)
    time: float  # start of the exchange, seconds since the epoch
    user: str  # Identity.principal
    node_name: str
    node_id: str
    tags: tuple[str, ...]
    provider: str  # provider id, "" when refused before routing
    model: str  # model as forwarded upstream ("" when unknown)
    api: str  # API format name, e.g. "anthropic_messages"
    method: str
    path: str  # client path including query string
    status: int  # status answered to the client (0 if none was sent)
    stream: bool  # response was text/event-stream
    usage: Usage
    tool_calls: tuple[ToolCall, ...]
    duration_ms: float
    ttfb_ms: float | None  # time to the first response byte sent to the client
    state: str  # one of the states above
    error: str  # error text, "" if none
    # As on the wire ((bytes, bytes) pairs) or decoded ((str, str) pairs); the
    # credentials are masked when the record is encoded (codec.record_entry),
    # before it reaches a journal, a store or a log.
    request_headers: tuple | list
    response_headers: tuple | list
    request_body: bytes  # as the client sent it
    response_body: bytes  # as the client received it
    session_hint: str = ""  # client-sent session id if any (see capture.sessions)
    request_body_truncated: bool = False
    response_body_truncated: bool = False
    response_id: str = ""  # the provider's id of a stored response (Responses API)
    #: estimated cost in nano-dollars (1e-9 USD), None when the model has no
    #: price; set by the gateway's observers before the capture sink sees it
    cost: int | None = None


class RecordSink(Protocol):
    def submit(self, record: Record, hold=None) -> None:
        """Take a finished record. Must not block the event loop. `hold`, when
        given, is the client connection about to receive the response's last
        bytes; a sink may keep its writes back (`hold.hold()`) until the
        record is safe, then `hold.release()` them."""

    def close(self) -> None:
        """Flush and release resources (called once at shutdown)."""


class LogSink:
    """A sink that only logs one line per exchange (used when capture is off)."""

    keeps_bodies = False  # exchanges keep no copy of the bodies for it
    stores = False  # a record may follow its response's last byte

    def __init__(self) -> None:
        self._log = logging.getLogger("aperture.exchange")

    def submit(self, record: Record, hold=None) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._log.info(
                "%s %s %s %s -> %d %s in=%d out=%d %.1fms",
                record.user, record.method, record.path, record.model or "-",
                record.status, record.state, record.usage.input_tokens,
                record.usage.output_tokens, record.duration_ms,
            )

    def close(self) -> None:
        pass
