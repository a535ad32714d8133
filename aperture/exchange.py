"""One request through the gateway, top to bottom (DESIGN.md, "The journey of
one request"): route -> identity -> model -> routing -> policy -> upstream ->
relay -> metering -> capture.

Theory of operation
-------------------
The API format turns the method and path into a `Route`: the compatibility
flag the action needs, where the model is (a path segment, the body's
top-level "model", or, for a stored response's sub-resource, the provider
that made that response), what the body must be and which meter reads the
answer.

The body is read chunk by chunk into the JSON scanner. When the model is in
the body, chunks read before it is known are held (and only those); when it
is in the path, the first chunk is read before anything is decided, so a small
body is checked whole before a byte reaches a provider. Once the provider is
chosen the held bytes go upstream, followed by the rest of the body as it
arrives. The scanner keeps validating the rest, so a second top-level
"model" or broken JSON later on stops the exchange before the offending chunk
is forwarded.

The response goes back as it arrives: each chunk the upstream connection hands
over is written to the client at once (byte for byte; only the framing is the
gateway's own), fed to the meter (the route's dialect, in the framing the
response's content type names), and appended to the capture. Waiting on the
client's write buffer (`drain`) is what slows the upstream read when the
client is slow.

Every exchange ends in exactly one record handed to the sink, whatever
happened. For a response that completes, the record is submitted *before* its
last byte is written, so a capture can never miss an exchange whose client got
a complete answer. With capture off (records only logged) it follows the last
byte instead, off the client's wait.

Failure rules: errors before the response head is sent are answered in the
caller's API format (`GatewayError.status`). So are upstream failures after
the provider's head but before any byte of it reached the client (the client
head waits for the first body bytes): a reset or a malformed body there is a
502, silence past the idle timeout a 504. After that the only honest signal
is to close the connection without finishing the response. A client that goes
away cancels this task: the upstream connection is then dropped, never reused.
A provider error reported inside a stream (an error event, an event-stream
exception) makes the record an `upstream_error`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from time import monotonic as _monotonic

import orjson

from aperture import accel
from aperture.capture.sessions import session_from_tail
from aperture.capture.record import (CLIENT_DISCONNECTED, COMPLETE, INCOMPLETE, REFUSED,
                                     UPSTREAM_ERROR, Record, ToolCall, Usage)
from aperture.errors import (BadGateway, Forbidden, GatewayError, GatewayTimeout, MalformedBody,
                             MethodNotAllowed, MissingModel, NotFound, PayloadTooLarge)
from aperture.flow import ConnectionLost
from aperture.formats.base import BODY_JSON, BODY_MODEL, ApiFormat, Route
from aperture.headers import client_response_headers, upstream_request_headers
from aperture.ids import new_id
from aperture.upstream.auth import PENDING, drop_query_credentials, scrub_query
from aperture.upstream.connection import UpstreamConnection, UpstreamTimeout
from aperture.upstream.events import ResponseHead

log = logging.getLogger("aperture.exchange")

# Response media types -> the meter's framing (JSON is "json", or Gemini's
# streamed "json_array" when the route says so).
_FRAMINGS = {b"text/event-stream": "sse", b"application/vnd.amazon.eventstream": "eventstream"}
_STREAMED = frozenset({"sse", "eventstream", "json_array"})
_FOUND = accel.FOUND
_NEED_DATA = accel.NEED_DATA
_MISSING = accel.MISSING
_JSON_WS = b" \t\r\n"


@functools.lru_cache(maxsize=256)
def host_header(provider) -> bytes:
    host = "[%s]" % provider.host if ":" in provider.host else provider.host
    default = 443 if provider.scheme == "https" else 80
    return (host if provider.port == default else "%s:%d" % (host, provider.port)).encode("ascii", "replace")


def scan_error(scanner, status: int) -> GatewayError:
    if status == accel.MISSING:
        return MissingModel('request body has no top-level "model" field')
    if status == accel.NOT_STRING:
        return MissingModel('"model" must be a string')
    if status == accel.DUPLICATE:
        return MalformedBody('request body has more than one top-level "model" field')
    return MalformedBody("request body is not valid JSON: %s" % scanner.error)


def framing_of(content_type: bytes, status: int, route: Route) -> str | None:
    """The meter framing of a response, None when it is not metered."""
    media = content_type.split(b";", 1)[0].strip().lower()
    framing = _FRAMINGS.get(media)
    if framing is not None:
        return framing
    if media == b"application/json" or media.endswith(b"+json"):
        return "json_array" if route.array_stream and status < 300 else "json"
    return None


class BodyCheck:
    """The scanner over a body whose model is in the path (`BODY_JSON`): the
    body must be one JSON object and nothing after it but whitespace. The
    scanner stops reading at the object's end when it has no "model" (that
    is only an error for `BODY_MODEL`), so the rest is looked at here."""

    __slots__ = ("scanner", "closed", "seen")

    def __init__(self) -> None:
        self.scanner = accel.ModelScanner()
        self.closed = False  # the object has ended; only whitespace may follow
        self.seen = 0  # bytes fed

    def feed(self, chunk: bytes) -> None:
        seen = self.seen
        self.seen = seen + len(chunk)
        if self.closed:
            rest = chunk
        else:
            scanner = self.scanner
            status = scanner.feed(chunk)
            if status == _NEED_DATA or status == _FOUND:
                return
            if status != _MISSING:
                if status == accel.MALFORMED:
                    raise scan_error(scanner, status)
                return  # a "model" key the path already named: not this route's business
            self.closed = True
            rest = chunk[scanner.offset - seen:]
        if rest.strip(_JSON_WS):
            offset = seen + len(chunk) - len(rest.lstrip(_JSON_WS))
            raise MalformedBody("request body is not valid JSON: unexpected data after the "
                                "object at byte %d" % offset)

    def finish(self) -> None:
        if not self.closed:
            status = self.scanner.finish()
            if status == accel.MALFORMED:
                raise scan_error(self.scanner, status)


class Capture:
    """Bytes kept for the record, up to a limit. Past the limit only the last
    `TAIL` bytes are kept aside (a client session id sits at the end of a
    Claude Code body), not stored."""

    TAIL = 64 * 1024
    __slots__ = ("parts", "size", "limit", "truncated", "tail")

    def __init__(self, limit: int) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.truncated = False
        self.tail = b""

    def add(self, data: bytes) -> None:
        if not self.limit:
            return  # bodies are not kept (capture off)
        room = self.limit - self.size
        if len(data) > room:
            self.truncated = True
            self.tail = (self.tail + data)[-self.TAIL:]
            if room <= 0:
                return
            data = data[:room]
        self.parts.append(data)
        self.size += len(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


class Exchange:
    __slots__ = ("gw", "req", "resp", "fmt", "route", "api", "id", "t0", "wall", "identity",
                 "model", "provider", "upstream", "state", "error", "usage", "tools", "stream",
                 "req_body", "resp_body", "resp_headers", "submitted", "meter", "response_id",
                 "unrouted")

    def __init__(self, gateway, req, resp, fmt: ApiFormat) -> None:
        self.gw = gateway
        self.req = req
        self.resp = resp
        self.fmt = fmt
        self.route: Route | None = None
        self.api = fmt.name  # the route's API once known
        self.id = new_id()
        self.t0 = _monotonic()
        self.wall = time.time()
        self.identity = None
        self.model = ""
        self.provider = ""
        self.upstream: UpstreamConnection | None = None
        self.state = COMPLETE
        self.error = ""
        self.usage = _NO_USAGE
        self.tools: tuple[ToolCall, ...] = ()
        self.stream = False
        self.req_body = Capture(gateway.body_bytes)
        self.resp_body = Capture(gateway.body_bytes)
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.submitted = False
        self.meter = None
        self.response_id = ""
        #: a path or method aperture does not serve (logged and counted, see `_fail`)
        self.unrouted = False

    # -- the journey ----------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except GatewayError as exc:
            self._fail(exc)
        except (asyncio.CancelledError, ConnectionLost):
            self.state = CLIENT_DISCONNECTED
            self.error = self.error or "client disconnected"
            self._read_usage()  # keep what was counted before the client left
            self._drop_upstream()
            raise
        except Exception:
            log.exception("exchange %s failed", self.id)
            self._fail(GatewayError("internal error in the gateway (logged as %s)" % self.id))
        finally:
            if not self.submitted:
                self._submit()

    async def refuse(self, error: GatewayError, *, unrouted: bool = True) -> None:
        """Answer and capture a request that is not served: one on a path no
        format owns (`error`, a 404 in the format the path suggests), or,
        with `unrouted` False, one whose head broke the HTTP rules on a path
        this exchange's format owns (`error`, its 4xx/5xx)."""
        self.unrouted = unrouted
        self.api = ""
        if not unrouted:
            try:
                self.api = self.fmt.match(self.req.method, self.req.path, self.req.query).flags[0]
            except GatewayError:
                pass  # no action of the format: the record names none
        try:
            self.identity = self.req.conn.identity or await self.gw.identify(self.req)
        except GatewayError as exc:  # not even a known caller: that answer instead
            error = exc
            self.unrouted = False
        try:
            self._fail(error)
        finally:
            if not self.submitted:
                self._submit()

    async def _run(self) -> None:
        gw, req = self.gw, self.req
        settings = gw.settings
        self.identity = req.conn.identity or await gw.identify(req)
        try:
            route = self.route = self.fmt.match(req.method, req.path, req.query)
        except (NotFound, MethodNotAllowed):
            self.unrouted = True  # no API action: the record names none
            self.api = ""
            raise
        self.api = route.flags[0]
        if req.content_length is not None and req.content_length > settings.max_body_bytes:
            raise PayloadTooLarge("request body of %d bytes exceeds the limit of %d bytes"
                                  % (req.content_length, settings.max_body_bytes))
        req.send_continue()

        # The model: in the body, in the path, or that of a stored response.
        if route.body == BODY_MODEL:
            scanner = accel.ModelScanner()
            held, ended = await self._read_until_model(scanner)
            model = scanner.model
            if not model:
                raise MissingModel('"model" must not be empty')
        else:
            scanner = BodyCheck() if route.body == BODY_JSON else None
            held, ended = await self._read_first_chunk(scanner)
            model = route.model
        self.model = model or ""
        snapshot = gw.current()
        if model is not None:
            provider, upstream_model, listed = snapshot.router.resolve(route.flags, model)
            self.provider = provider.id
            if snapshot.policy is not None:
                denial = snapshot.policy.check(self.identity, provider.id, listed)
                if denial is not None:
                    raise Forbidden(denial)
        else:  # grants checked on the stored response's model, or its provider's
            provider, upstream_model = gw.responses.route(route, self.identity, snapshot)
            listed = upstream_model
            self.provider = provider.id
        body = b"".join(held)
        if route.body == BODY_MODEL and upstream_model != model:
            # `provider/model` -> `model`: splice the new value into the held bytes.
            body = (body[:scanner.model_start] + orjson.dumps(upstream_model)
                    + body[scanner.model_end:])
        self.model = listed  # the provider's name for it (a Bedrock id may come in another form)

        # The request to the provider: its path, its credential, the client's headers.
        target = provider.base_path + self.fmt.upstream_path(route, req.path, provider, upstream_model)
        query = req.query
        if query and provider.auth_mode != "passthrough":
            query = drop_query_credentials(query)
        target = (target + "?" + query if query else target).encode("latin-1")
        credential = snapshot.credentials[provider.id]
        key = credential.current()
        if key is PENDING:
            key = await credential.fetch()
        headers = upstream_request_headers(req.headers, host=host_header(provider),
                                           auth_mode=provider.auth_mode, key=key)
        # The body's length, or None to send it chunked. The headers are
        # written as they are: the client's were validated by llhttp, the ones
        # aperture adds (host, key) at config load.
        read = sum(map(len, held))  # bytes of the client's body read so far
        if ended:
            length = len(body)
        elif req.content_length is not None:
            length = req.content_length + len(body) - read
        else:
            length = None
        request = (req.method.encode(), target, headers, length)

        up, head = await self._send_request(provider, request, body, ended, scanner, read)
        await self._relay(up, head)

    async def _read_until_model(self, scanner) -> tuple[list[bytes], bool]:
        body = self.req.body
        limit = self.gw.settings.max_body_bytes
        held: list[bytes] = []
        total = 0
        while True:
            chunk = await body.read()
            if not chunk:
                status = scanner.finish()
                if status != _FOUND:
                    raise scan_error(scanner, status)
                return held, True
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge("request body exceeds the limit of %d bytes" % limit)
            held.append(chunk)
            self.req_body.add(chunk)
            status = scanner.feed(chunk)
            if status == _FOUND:
                if not body.at_eof:
                    return held, False
                status = scanner.finish()  # the whole body is here: check all of it
                if status == _FOUND:
                    return held, True
            if status != _NEED_DATA:
                raise scan_error(scanner, status)

    async def _read_first_chunk(self, check: BodyCheck | None) -> tuple[list[bytes], bool]:
        """The first chunk of a body whose model is not in it (often the
        whole body), checked before anything is decided."""
        body = self.req.body
        chunk = await body.read()
        if not chunk:
            if check is not None:
                check.finish()
            return [], True
        if len(chunk) > self.gw.settings.max_body_bytes:
            raise PayloadTooLarge("request body exceeds the limit of %d bytes"
                                  % self.gw.settings.max_body_bytes)
        self.req_body.add(chunk)
        if check is not None:
            check.feed(chunk)
            if body.at_eof:
                check.finish()
        return [chunk], body.at_eof

    async def _send_request(self, provider, request, body: bytes, ended: bool, scanner,
                            read: int = 0):
        """Send the request (method, target, headers, length) and wait for
        the response head; returns the connection and the head.

        A pooled connection may have been closed by the provider while it sat
        idle; that shows as a close before any response byte. Like Go's
        Transport, the request is then sent once more on a new connection,
        but only when the whole body is in hand (nothing of it was streamed
        and lost) and the connection was a reused one.
        """
        pool = self.gw.pool
        timeout = self.gw.settings.first_byte_timeout
        for attempt in (1, 2):
            up = self.upstream = await pool.acquire(provider.scheme, provider.host, provider.port)
            try:
                up.send_request(*request, body, ended)  # head and body in one write
                if not ended:
                    await self._stream_body(up, scanner, read)
                await up.drain()
                head = await up.next_event(timeout)  # 1xx heads are skipped by the reader
            except UpstreamTimeout:
                raise GatewayTimeout("upstream %s sent no response within %gs"
                                     % (provider.id, timeout)) from None
            except BadGateway:
                if not (attempt == 1 and up.reused and ended and up.bytes_received == 0):
                    raise
                self._drop_upstream()
                continue
            return up, head
        raise BadGateway("upstream %s closed the connection without a response" % provider.id)

    async def _stream_body(self, up: UpstreamConnection, scanner, total: int) -> None:
        """The rest of the body, checked as it goes (`scanner` is the model
        scanner, a `BodyCheck`, or None for a body that is not read); `total`
        bytes of it were read already. What is waiting is taken in one go and
        sent in one write, without joining the pieces."""
        body = self.req.body
        limit = self.gw.settings.max_body_bytes
        model_scanner = type(scanner) is not BodyCheck and scanner is not None
        capture = self.req_body
        while True:
            await up.drain()
            chunk = await body.read()
            if not chunk:
                if model_scanner:
                    status = scanner.finish()
                    if status != _FOUND:
                        raise scan_error(scanner, status)
                elif scanner is not None:
                    scanner.finish()
                up.send_end()
                return
            parts = [chunk]
            while more := body.read_nowait():
                parts.append(more)
            for chunk in parts:
                total += len(chunk)
                if total > limit:
                    raise PayloadTooLarge("request body exceeds the limit of %d bytes" % limit)
                if model_scanner:
                    status = scanner.feed(chunk)
                    if status != _FOUND:
                        raise scan_error(scanner, status)
                elif scanner is not None:
                    scanner.feed(chunk)
                capture.add(chunk)
            up.send_body(parts)

    async def _relay(self, up: UpstreamConnection, head: ResponseHead) -> None:
        settings = self.gw.settings
        resp = self.resp
        upstream_headers = head.headers  # names lowercased by the reader
        headers = client_response_headers(upstream_headers)
        self.resp_headers = headers
        content_length = None
        content_type = b""
        for name, value in upstream_headers:
            if name == b"content-length":
                content_length = int(value)
            elif name == b"content-type":
                content_type = value
        if self.req.method == "HEAD" or head.status in (204, 304):
            content_length = None
        framing = framing_of(content_type, head.status, self.route)
        self.stream = framing in _STREAMED
        dialect = self.route.dialect
        if framing is not None and dialect is not None:
            self.meter = accel.Meter(framing, dialect)
        resp.start(head.status, headers, content_length)

        # The body: each chunk read is metered, captured and written to the
        # client from the upstream's read callback (no wake-up of this task
        # per chunk); this task waits for the end.
        meter = self.meter
        capture = self.resp_body
        client = self.req.conn.write_flow
        sent = 0
        # A stored record comes before the last byte; one that is only
        # logged (capture off) after it, off the client's wait.
        record_first = self.gw.record_first

        def relay(data: bytes) -> bool:
            nonlocal sent
            if meter is not None:
                meter.feed(data)
            capture.add(data)
            sent += len(data)
            if record_first and content_length is not None and sent >= content_length:
                self._finish_ok()  # record first, then the last byte
            resp.write(data)
            return client.paused  # full: stop reading the upstream until it drains

        idle = settings.idle_timeout
        client.on_resume = up.resume
        try:
            await up.relay(relay, idle)
        except UpstreamTimeout:
            self._cut("upstream %s sent nothing for %gs" % (self.provider, idle), GatewayTimeout)
            return
        except BadGateway as exc:  # the body ended early, or broke
            self._cut(exc.message)
            return
        finally:
            client.on_resume = None
        if record_first and not self.submitted:
            self._finish_ok()
        resp.end()
        if not self.submitted:
            self._finish_ok()
        self.gw.pool.release(up)
        self.upstream = None

    # -- endings --------------------------------------------------------------

    def _read_usage(self) -> None:
        meter = self.meter
        if meter is not None:
            meter.finish()
            self.usage = Usage(*meter.usage())
            self.tools = tuple(ToolCall(n, a) for n, a in meter.tool_calls())
            if meter.error and not self.error:
                self.error = meter.error
            if meter.response_id:
                self.response_id = meter.response_id
        status = self.resp.status
        if 200 <= status < 300 and self.usage == _NO_USAGE and self.resp_headers:
            usage = self.fmt.usage_from_headers(self.resp_headers)
            if usage is not None:
                self.usage = usage
        elif status >= 400 and not self.error:
            self.error = self.fmt.upstream_error(status, self.resp_headers)

    def _finish_ok(self) -> None:
        self._read_usage()
        meter = self.meter
        if meter is not None and self.stream:
            if meter.error:
                self.state = UPSTREAM_ERROR
            elif not meter.complete:
                self.state = INCOMPLETE
                self.error = self.error or "stream ended without its final event"
        self._submit(sending=True)

    def _cut(self, message: str, error: type[GatewayError] = BadGateway) -> None:
        """The upstream failed after the response started: keep what was
        counted, mark it incomplete, close the client connection. While no
        byte of the response has reached the client, it gets an answer
        instead (`error`: 502, or 504 for a timeout)."""
        if self.resp.retract():
            self.meter = None
            self.stream = False
            self._fail(error(message))
            return
        self._read_usage()
        self.state = INCOMPLETE
        self.error = message
        self._drop_upstream()
        self._submit()
        self.req.conn.abort()

    def _fail(self, exc: GatewayError) -> None:
        self.error = exc.message
        if self.unrouted:
            self._log_unrouted(exc.status)
        self._drop_upstream()
        self.state = UPSTREAM_ERROR if exc.status in (502, 503, 504) and self.provider else REFUSED
        if self.resp.started:
            self._submit()
            self.req.conn.abort()
            return
        route = self.route
        errors = route.errors if route is not None and route.errors is not None else self.fmt.error_body
        body, headers = errors(exc, self.id)
        self.resp.keep_alive = self.resp.keep_alive and self.req.body.at_eof
        self._submit_with_response(exc.status, headers, body)
        self.resp.send(exc.status, headers, body)

    def _log_unrouted(self, status: int) -> None:
        """A request aperture has no route for: one log line (who, method,
        path, status; a `key=` query value removed) and the counter in
        /metrics, so that an operator sees what each client calls."""
        req = self.req
        ident = self.identity
        path = req.path + ("?" + scrub_query(req.query) if req.query else "")
        peer = req.conn.peer
        log.info("unrouted request: %s %s from %s (%s) answered %d", req.method, path,
                 ident.principal if ident is not None else "?",
                 peer[0] if isinstance(peer, tuple) and peer else peer, status)
        counts = getattr(self.gw.sink, "counts", None)
        if counts is not None:
            counts.observe_unrouted(req.method, status)

    def _submit_with_response(self, status, headers, body) -> None:
        self.resp_headers = headers
        self.resp_body.add(body)
        self.resp.status = status
        self._submit(sending=True)

    def _drop_upstream(self) -> None:
        up = self.upstream
        if up is not None:
            self.upstream = None
            self.gw.pool.discard(up)

    def _submit(self, sending: bool = False) -> None:
        """Hand the record to the sink. `sending`: called just before the
        response's last bytes are written (the first ones too, for a response
        written in one piece)."""
        if self.submitted:
            return
        self.submitted = True
        now = _monotonic()
        resp = self.resp
        first = resp.first_byte_at if resp.first_byte_at is not None else (now if sending else None)
        ttfb = None if first is None else (first - self.t0) * 1000.0
        ident = self.identity
        req = self.req
        path = req.path + ("?" + scrub_query(req.query) if req.query else "")
        user = ident.principal if ident is not None else ""
        if self.response_id:
            self.gw.responses.remember(self.response_id, self.provider, self.model, user)
        record = Record(
            id=self.id, time=self.wall, user=user,
            node_name=ident.node_name if ident is not None else "",
            node_id=ident.node_id if ident is not None else "",
            tags=ident.tags if ident is not None else (),
            provider=self.provider, model=self.model, api=self.api,
            method=req.method, path=path, status=resp.status, stream=self.stream,
            usage=self.usage, tool_calls=self.tools,
            duration_ms=(now - self.t0) * 1000.0, ttfb_ms=ttfb,
            state=self.state, error=self.error,
            request_headers=req.headers, response_headers=self.resp_headers,
            request_body=self.req_body.value(), response_body=self.resp_body.value(),
            request_body_truncated=self.req_body.truncated,
            response_body_truncated=self.resp_body.truncated,
            session_hint=session_from_tail(self.req_body.tail) if self.req_body.truncated else "",
            response_id=self.response_id,
        )
        self.gw.sink.submit(record, req.conn if sending else None)


_NO_USAGE = Usage()
