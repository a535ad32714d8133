"""The client side of the gateway: one asyncio protocol per TCP connection.

Theory of operation
-------------------
httptools (llhttp) parses the bytes; its callbacks only record what happened
(STYLE.md, habit 4). `on_headers_complete` turns the parsed head into a
`Request` whose body is a `ReadBuffer` that `on_body` fills, and hands it to the
application as one task per request, the "exchange".

Requests on one connection are answered strictly in order (RFC 9112 §9.3.2,
pipelining): while an exchange runs, later requests that were already parsed
wait in `_pipeline`, and reading is paused so that a client cannot queue
unbounded work. When the running exchange ends, the next one starts.

Bad input is answered here, before any application code runs: malformed HTTP
-> 400 and close; a head over `max_head_bytes` -> 431; conflicting or duplicate
framing headers (llhttp rejects Content-Length with Transfer-Encoding, and
duplicate Content-Length) -> 400. Malformed chunked framing in a body whose
head was accepted fails that request's body with a 400 naming the problem,
which the exchange answers in the caller's API format; the connection then
closes. Nothing sent after a request that ends the connection is parsed: an
HTTP/1.0 request with Transfer-Encoding is answered and the connection closed
(RFC 9112 §6.1: its framing cannot be trusted, so what follows it is not a
request), as after `Connection: close`.

One timer per connection watches the client (no timer is created or
cancelled per request): a request head must arrive whole within
`header_timeout` of its first byte (else 408 and close), a request body must
make progress at least every `body_timeout` (else the body fails with 408,
answered by the exchange), and a keep-alive connection idle for
`keepalive_timeout` is closed. The timer fires at the earliest deadline it
knows of, then recomputes from timestamps.

A client that closes its side (FIN) or resets the connection has gone: like
nginx, which aborts the upstream request when the client closes while a
response is pending, the running exchange is cancelled at once (it drops its
upstream connection, never reused) and requests waiting in the pipeline are
dropped. Losing the connection wakes everything that waits on it (body
readers, writers blocked on back-pressure).

Past `max_connections` open connections, a new connection is answered 503 and
closed at once, without reading it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from time import monotonic as _monotonic
from typing import Awaitable, Callable

import httptools

from aperture.errors import BadRequest, GatewayError, HeadersTooLarge, RequestTimeout
from aperture.flow import ConnectionLost, ReadBuffer, WriteFlow

log = logging.getLogger("aperture.ingress")

HIGH_WATER = 64 * 1024  # transport write buffer limits
LOW_WATER = 16 * 1024

_STATUS_PHRASES = {
    100: b"Continue", 200: b"OK", 201: b"Created", 204: b"No Content",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict",
    411: b"Length Required", 413: b"Payload Too Large", 415: b"Unsupported Media Type",
    422: b"Unprocessable Entity", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    499: b"Client Closed Request", 500: b"Internal Server Error", 501: b"Not Implemented",
    502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
    529: b"Overloaded",
}
# Prebuilt status lines: the head of every response starts with one of these.
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in _STATUS_PHRASES.items()}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+")
_VERSIONS = frozenset({"1.0", "1.1"})
_BUSY_BODY = b"too many connections\n"
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s"
        % (len(_BUSY_BODY), _BUSY_BODY))


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Status\r\n" % status
    return line


class Request:
    """One parsed request head plus its streaming body."""

    __slots__ = ("method", "target", "path", "query", "headers", "keep_alive", "content_length",
                 "chunked", "expect_continue", "body", "http_version", "_continue_sent", "conn")

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.path = ""
        self.query = ""
        self.headers: list[tuple[bytes, bytes]] = []  # names lowercased, values as sent
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.body: ReadBuffer
        self.http_version = "1.1"
        self._continue_sent = False
        self.conn: HttpConnection

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def send_continue(self) -> None:
        """Answer `Expect: 100-continue`: the client may send its body now."""
        if self.expect_continue and not self._continue_sent:
            self._continue_sent = True
            self.conn.write_raw(CONTINUE)


class Response:
    """Writes one response to the client: head, body chunks, end.

    The head is held until the first body write so that small responses leave
    in one `transport.write`. Framing: `content_length` when known, chunked
    transfer-encoding otherwise.
    """

    __slots__ = ("_conn", "_head", "started", "finished", "status", "_chunked", "keep_alive",
                 "bytes_sent", "first_byte_at", "_head_only")

    def __init__(self, conn: "HttpConnection", keep_alive: bool, head_only: bool = False) -> None:
        self._conn = conn
        self._head: bytes | None = None
        self.started = False
        self.finished = False
        self.status = 0
        self._chunked = False
        self.keep_alive = keep_alive
        self.bytes_sent = 0
        self.first_byte_at: float | None = None
        self._head_only = head_only

    def start(self, status: int, headers: list[tuple[bytes, bytes]], content_length: int | None) -> None:
        assert not self.started, "response already started"
        self.started = True
        self.status = status
        parts = [status_line(status)]
        for name, value in headers:
            parts.append(b"%s: %s\r\n" % (name, value))
        if content_length is not None:
            parts.append(b"content-length: %d\r\n" % content_length)
        elif status >= 200 and status not in (204, 304) and not self._head_only:
            self._chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self._head = b"".join(parts)

    def retract(self) -> bool:
        """Take back a started response none of whose bytes were written (the
        head waits for the first body write): True if it was, and another
        response may be started in its place."""
        if not self.started or self.first_byte_at is not None or self.finished:
            return False
        self.started = False
        self._head = None
        self._chunked = False
        self.status = 0
        return True

    def write(self, data: bytes) -> None:
        """Queue body bytes on the transport (no waiting; see `drain`)."""
        if self._head_only:
            data = b""
        if self._chunked and data:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        if data:
            if self.first_byte_at is None:
                self.first_byte_at = _monotonic()  # uvloop's clock counts milliseconds
            self.bytes_sent += len(data)
            self._conn.write_raw(data)

    async def drain(self) -> None:
        await self._conn.write_flow.drain()

    def end(self, data: bytes = b"") -> None:
        """Write the last bytes (and the chunked terminator)."""
        if self.finished:
            return
        self.finished = True
        if self._chunked:
            tail = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)) if data else b"0\r\n\r\n"
            self._chunked = False
            self.write(tail)
        else:
            self.write(data)

    def send(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole small response at once."""
        self.start(status, headers, len(body))
        self.end(body)


Handler = Callable[[Request, Response], Awaitable[None]]


def check_transfer_coding(value: bytes) -> None:
    """A request's Transfer-Encoding must be exactly `chunked` (case and
    optional whitespace aside): any other coding is one the gateway does not
    implement (RFC 9112 §6.1: 501), and anything that is not a list of tokens
    is malformed (400). llhttp is more lenient than this."""
    codings = [c.strip(b" \t").lower() for c in value.split(b",")]
    if codings == [b"chunked"]:
        return
    for coding in codings:
        if not coding or not _TOKEN.fullmatch(coding):
            raise BadRequest("malformed Transfer-Encoding header")
    raise GatewayError("transfer coding %s not supported (only chunked)"
                       % ", ".join(c.decode("ascii") for c in codings if c != b"chunked"),
                       status=501)


def _none() -> int:
    return 0


class ServerState:
    """What every connection of one worker shares."""

    __slots__ = ("handler", "connections", "max_head_bytes", "keepalive_timeout", "header_timeout",
                 "body_timeout", "max_connections", "refused", "_refused_logged", "draining",
                 "on_connection", "fd_budget", "other_fds", "refuse_bad_request")

    def __init__(self, handler: Handler, *, max_head_bytes: int = 64 * 1024,
                 keepalive_timeout: float = 75.0, header_timeout: float = 30.0,
                 body_timeout: float = 60.0, max_connections: int = 16384,
                 on_connection: Callable[["HttpConnection"], None] | None = None) -> None:
        self.handler = handler
        self.connections: set[HttpConnection] = set()
        self.max_head_bytes = max_head_bytes
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.refused = 0  # connections answered 503 for the limit
        self._refused_logged = -60.0
        self.draining = False
        self.on_connection = on_connection
        #: descriptors for client and provider connections together (None:
        #: no limit), and how many the application holds (its provider
        #: connections)
        self.fd_budget: int | None = None
        self.other_fds: Callable[[], int] = _none
        #: (request, response, error) -> a coroutine that answers a request
        #: whose head broke the rules after its path was read, or None to
        #: answer it in plain text here (the application's error format)
        self.refuse_bad_request: Callable | None = None

    def over_limit(self, now: float) -> bool:
        n = len(self.connections)
        if n < self.max_connections and (self.fd_budget is None
                                         or n + self.other_fds() < self.fd_budget):
            return False
        self.refused += 1
        if now - self._refused_logged >= 60.0:
            self._refused_logged = now
            log.warning("%d connections open, the limit (--max-connections): new connections "
                        "are answered 503 (%d so far)", len(self.connections), self.refused)
        return True


class HttpConnection(asyncio.Protocol):
    __slots__ = ("state", "loop", "transport", "peer", "parser", "write_flow", "_request", "_head_bytes",
                 "_pipeline", "_task", "_timer", "_timer_due", "_last_activity", "_head_started",
                 "_stop_parsing", "_response", "identity", "_reading_paused", "_pause_reasons", "_lost",
                 "user_data", "_held", "_close_after_held")

    def __init__(self, state: ServerState) -> None:
        self.state = state
        # The loop, kept: on CPython 3.11 each asyncio.get_running_loop() is a
        # getpid() system call, and the request path would make several.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.parser = httptools.HttpRequestParser(self)
        self.write_flow = WriteFlow(self.loop)
        self._request: Request | None = None
        self._head_bytes = 0
        self._pipeline: deque[Request] = deque()
        self._task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None  # see _on_timer
        self._timer_due = 0.0
        self._last_activity = 0.0  # last bytes from the client, or the end of a response
        self._head_started = 0.0  # first byte of the request head being read
        self._stop_parsing = False  # nothing more from this client is a request
        self._response: Response | None = None  # the running exchange's
        self._reading_paused = False
        self._pause_reasons = 0
        self._lost = False
        self.identity = None  # resolved once per connection by the application
        self.user_data = None
        self._held: list[bytes] | None = None  # writes kept back, see hold()
        self._close_after_held = False

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        now = self._last_activity = self.loop.time()
        state = self.state
        if state.over_limit(now):
            self._stop_parsing = True
            transport.write(BUSY)
            transport.close()
            return
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = (peer[0], peer[1])
        state.connections.add(self)
        if state.on_connection is not None:
            state.on_connection(self)
        self._arm(now + state.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._held = None
        self.state.connections.discard(self)
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        self.write_flow.lost()
        if self._request is not None:
            self._request.body.fail(ConnectionLost())
        for req in self._pipeline:
            req.body.fail(ConnectionLost())
        self._pipeline.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def pause_writing(self) -> None:
        self.write_flow.pause()

    def resume_writing(self) -> None:
        self.write_flow.resume()

    def data_received(self, data: bytes) -> None:
        if self._stop_parsing:
            return
        self._last_activity = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, GatewayError):
                self._reject(cause.status, cause.message, cause)
            else:
                log.exception("request parsing failed", exc_info=cause)
                self._reject(400, "bad request")
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            req = self._request
            if req is not None and req.method:
                # The head was accepted and its exchange answers: fail the body.
                self._stop_parsing = True
                self._request = None
                req.body.fail(BadRequest("malformed request body: %s" % (exc,)))
            else:
                self._reject(400, "malformed HTTP request: %s" % (exc,))
        else:
            if self._request is not None:
                self._watch_request()

    def eof_received(self) -> bool | None:
        # The client closed its side: it has gone. Returning None closes the
        # transport, and connection_lost cancels what runs (see the module
        # docstring).
        return None

    # -- httptools callbacks: record only ---------------------------------

    def on_message_begin(self) -> None:
        self._head_started = self._last_activity
        req = Request()
        req.conn = self
        req.body = ReadBuffer(self.loop, self._pause_for_body, self._resume_for_body)
        self._request = req
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.state.max_head_bytes:
            raise HeadersTooLarge("request header section exceeds %d bytes" % self.state.max_head_bytes)
        self._request.target += url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.state.max_head_bytes:
            raise HeadersTooLarge("request header section exceeds %d bytes" % self.state.max_head_bytes)
        self._request.headers.append((name.lower(), value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        req = self._request
        assert req is not None
        parser = self.parser
        req.method = parser.get_method().decode("ascii", "replace")
        target = req.target
        if not target.startswith(b"/"):
            raise BadRequest("request target must be an absolute path")
        qpos = target.find(b"?")
        if qpos >= 0:
            req.path = target[:qpos].decode("latin-1")
            req.query = target[qpos + 1:].decode("latin-1")
        else:
            req.path = target.decode("latin-1")
        # From here on an error is answered in the path's API format.
        req.http_version = parser.get_http_version()
        if req.http_version not in _VERSIONS:
            raise GatewayError("HTTP version %s not supported" % req.http_version, status=505)
        if parser.should_upgrade():
            raise BadRequest("protocol upgrades are not supported")
        req.keep_alive = parser.should_keep_alive() and not self.state.draining
        hosts = 0
        for name, value in req.headers:
            if name == b"content-length":
                req.content_length = int(value)  # llhttp already validated the digits
            elif name == b"transfer-encoding":
                check_transfer_coding(value)
                req.chunked = True
                if req.http_version == "1.0":
                    req.keep_alive = False  # RFC 9112 §6.1: faulty framing, close after it
            elif name == b"host":
                hosts += 1
            elif name == b"expect":
                if value.lower() == b"100-continue":
                    req.expect_continue = True
                else:
                    raise GatewayError("unsupported Expect header", status=417)
        if hosts != 1 and (hosts or req.http_version == "1.1"):
            # RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with two
            raise BadRequest("missing Host header" if not hosts else "more than one Host header")
        if self._task is None:
            self._start(req)
        else:
            self._pipeline.append(req)
            self._pause_reading(1)

    def on_body(self, body: bytes) -> None:
        self._request.body.feed(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        req = self._request
        if req is not None:
            req.body.feed_eof()
            if not req.keep_alive:
                self._stop_parsing = True  # what follows a closing request is not a request
        self._request = None

    # -- running exchanges --------------------------------------------------

    def _start(self, req: Request) -> None:
        response = self._response = Response(self, req.keep_alive, head_only=req.method == "HEAD")
        self._task = self.loop.create_task(self._run(req, response))

    async def _run(self, req: Request, response: Response, answer=None) -> None:
        try:
            await (self.state.handler(req, response) if answer is None else answer)
        except asyncio.CancelledError:
            if not self._lost:
                raise
            return
        except ConnectionLost:
            return
        except Exception:
            log.exception("unhandled error in exchange for %s %s", req.method, req.path)
            if not response.started and not self._lost:
                response.keep_alive = False
                response.send(500, [(b"content-type", b"text/plain")], b"internal error\n")
            else:
                self.abort()
            return
        finally:
            self._task = None
        self._after_response(req, response)

    def _after_response(self, req: Request, response: Response) -> None:
        if self._lost:
            return
        if not response.finished:
            # The handler returned without finishing its response: the only
            # honest signal left is to close the connection.
            self.abort()
            return
        self._last_activity = self.loop.time()
        if not response.keep_alive or self.state.draining:
            self._close()
            return
        if self._request is req:
            # The handler answered without reading the whole body (an error
            # answered early). The rest of the body cannot be skipped safely
            # on a keep-alive connection: close.
            self._close()
            return
        if self._pipeline:
            nxt = self._pipeline.popleft()
            self._resume_reading(1)
            self._start(nxt)

    # -- writing and flow control --------------------------------------------

    def write_raw(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            return
        transport = self.transport
        if not self._lost and not transport.is_closing():  # type: ignore[union-attr]
            transport.write(data)  # type: ignore[union-attr]

    def hold(self) -> None:
        """Keep every write (and a close) back until `release`: the capture
        journal takes a record before the last bytes of its response go out,
        and appends the records of one loop pass together."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Write what was kept back, in order, then close if a close waited."""
        held, self._held = self._held, None
        if held:
            self.write_raw(b"".join(held))
        if self._close_after_held:
            self._close_after_held = False
            self._close()

    def _close(self) -> None:
        if self._held is not None:
            self._close_after_held = True
        elif not self._lost:
            self.transport.close()  # type: ignore[union-attr]

    def _pause_for_body(self) -> None:
        self._pause_reading(2)

    def _resume_for_body(self) -> None:
        self._resume_reading(2)

    def _pause_reading(self, reason: int) -> None:
        self._pause_reasons |= reason
        if not self._reading_paused and self.transport is not None and not self._lost:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self, reason: int) -> None:
        self._pause_reasons &= ~reason
        if self._reading_paused and not self._pause_reasons and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _reject(self, status: int, message: str, error: GatewayError | None = None) -> None:
        """Answer a request that could not be parsed, then close. A head
        whose path was read goes to the application (`refuse_bad_request`),
        which answers in that path's API format and records it."""
        if self._lost:
            return
        req = self._request
        hook = self.state.refuse_bad_request
        if (error is not None and hook is not None and self._task is None and req is not None
                and req.path):
            response = Response(self, False, head_only=req.method == "HEAD")
            answer = hook(req, response, error)
            if answer is not None:
                self._stop_parsing = True  # nothing after a broken head is a request
                self._request = None
                self._response = response
                self._task = self.loop.create_task(self._run(req, response, answer))
                return
        if self._task is None:
            body = (message + "\n").encode()
            self.write_raw(
                status_line(status)
                + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                  b"connection: close\r\n\r\n" % len(body) + body)
            self._close()
        else:
            # The bad bytes follow requests that were parsed whole: those are
            # answered, in order, and the connection closes after the last.
            self._stop_parsing = True
            self._request = None
            if self._pipeline:
                self._pipeline[-1].keep_alive = False
            else:
                self._response.keep_alive = False

    def abort(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abort()

    # -- the client's timeouts (one timer, see the module docstring) and drain ----

    def _arm(self, due: float) -> None:
        self._timer_due = due
        self._timer = self.loop.call_at(due, self._on_timer)

    def _watch_request(self) -> None:
        """A request is still being read: make sure the timer fires by its deadline."""
        req = self._request
        state = self.state
        if req.method:  # type: ignore[union-attr]
            due = self._last_activity + state.body_timeout
        else:
            due = self._head_started + state.header_timeout
        if due < self._timer_due:
            timer = self._timer
            if timer is not None:
                timer.cancel()
            self._arm(due)

    def _on_timer(self) -> None:
        self._timer = None
        if self._lost:
            return
        state = self.state
        now = self.loop.time()
        req = self._request
        if req is not None and not req.method:  # reading a head
            due = self._head_started + state.header_timeout
            if now >= due:
                self._reject(408, "request head not received within %gs" % state.header_timeout)
                return
        elif req is not None:  # reading a body
            due = self._last_activity + state.body_timeout
            if now >= due:
                self._stop_parsing = True
                self._request = None
                req.body.fail(RequestTimeout("request body stalled: no data for %gs"
                                             % state.body_timeout))
                due = now + state.keepalive_timeout
        elif self._task is None and not self._pipeline:  # idle between requests
            due = self._last_activity + state.keepalive_timeout
            if now >= due:
                self._close()
                return
        else:  # a request is being answered: the exchange's own timeouts apply
            due = now + state.keepalive_timeout
        self._arm(due)

    @property
    def busy(self) -> bool:
        return self._task is not None or self._request is not None or bool(self._pipeline)

    def shutdown(self) -> None:
        """Close now if idle; otherwise the in-flight exchange finishes with
        `connection: close` (keep_alive is off once the server is draining)."""
        if not self.busy and not self._lost:
            self._close()
