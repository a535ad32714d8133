"""One request through the gateway, top to bottom (DESIGN.md, "The journey of
one request"): identity -> model -> routing -> policy -> upstream -> relay ->
metering -> capture.

Theory of operation
-------------------
The body is read chunk by chunk into the model scanner. Chunks read before the
model is known are held (and only those); once the provider is chosen they go
upstream, followed by the rest of the body as it arrives. The scanner keeps
validating the rest, so a second top-level "model" or broken JSON after it
stops the exchange before the offending chunk is forwarded.

The response goes back as it arrives: each chunk h11 hands over is written to
the client at once (byte for byte; only the framing is the gateway's own), fed
to the meter, and appended to the capture. Waiting on the client's write
buffer (`drain`) is what slows the upstream read when the client is slow.

Every exchange ends in exactly one record handed to the sink, whatever
happened. For a response that completes, the record is submitted *before* its
last byte is written, so a capture can never miss an exchange whose client got
a complete answer.

Failure rules: errors before the response head is sent are answered in the
caller's API format (`GatewayError.status`). After that the only honest signal
is to close the connection without finishing the response. A client that goes
away cancels this task: the upstream connection is then dropped, never reused.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import h11
import orjson

from aperture import accel
from aperture.capture.sessions import session_from_tail
from aperture.capture.record import (CLIENT_DISCONNECTED, COMPLETE, INCOMPLETE, REFUSED,
                                     UPSTREAM_ERROR, Record, ToolCall, Usage)
from aperture.errors import (BadGateway, Forbidden, GatewayError, GatewayTimeout, MalformedBody,
                             MissingModel, PayloadTooLarge)
from aperture.flow import ConnectionLost
from aperture.formats.base import ApiFormat
from aperture.headers import client_response_headers, for_record, upstream_request_headers
from aperture.ids import new_id
from aperture.upstream.connection import UpstreamConnection, UpstreamTimeout

log = logging.getLogger("aperture.exchange")

_EVENT_STREAM = b"text/event-stream"
#: JSON response bodies up to this size are parsed for usage once complete
MAX_METERED_JSON = 16 * 1024 * 1024
_FOUND = accel.FOUND
_NEED_DATA = accel.NEED_DATA


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
    __slots__ = ("gw", "req", "resp", "fmt", "id", "t0", "wall", "identity", "model", "provider",
                 "upstream", "state", "error", "usage", "tools", "stream", "req_body", "resp_body",
                 "resp_headers", "submitted", "meter", "json_body")

    def __init__(self, gateway, req, resp, fmt: ApiFormat) -> None:
        self.gw = gateway
        self.req = req
        self.resp = resp
        self.fmt = fmt
        self.id = new_id()
        self.t0 = req.conn.loop.time()
        self.wall = time.time()
        self.identity = None
        self.model = ""
        self.provider = ""
        self.upstream: UpstreamConnection | None = None
        self.state = COMPLETE
        self.error = ""
        self.usage = Usage()
        self.tools: tuple[ToolCall, ...] = ()
        self.stream = False
        self.req_body = Capture(gateway.settings.capture_body_bytes)
        self.resp_body = Capture(gateway.settings.capture_body_bytes)
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.submitted = False
        self.meter = None
        self.json_body: list[bytes] | None = None

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

    async def _run(self) -> None:
        gw, req = self.gw, self.req
        settings = gw.settings
        self.identity = await gw.identify(req)
        if req.content_length is not None and req.content_length > settings.max_body_bytes:
            raise PayloadTooLarge("request body of %d bytes exceeds the limit of %d bytes"
                                  % (req.content_length, settings.max_body_bytes))
        req.send_continue()

        scanner = accel.ModelScanner()
        held, ended = await self._read_until_model(scanner)
        self.model = scanner.model
        if not self.model:
            raise MissingModel('"model" must not be empty')
        config, router, policy = gw.current()
        provider, upstream_model = router.route(self.fmt.name, self.model)
        self.provider = provider.id
        if policy is not None:
            denial = policy.check(self.identity, provider.id, upstream_model)
            if denial is not None:
                raise Forbidden(denial)
        body = b"".join(held)
        if upstream_model != self.model:
            # `provider/model` -> `model`: splice the new value into the held bytes.
            body = (body[:scanner.model_start] + orjson.dumps(upstream_model)
                    + body[scanner.model_end:])
        self.model = upstream_model

        headers = upstream_request_headers(
            req.headers, host=host_header(provider), auth_mode=provider.auth_mode,
            authorization=provider.authorization, apikey=provider.apikey)
        if ended:
            headers.append((b"content-length", b"%d" % len(body)))
        elif req.content_length is not None:
            headers.append((b"content-length",
                            b"%d" % (req.content_length + len(body) - sum(map(len, held)))))
        else:
            headers.append((b"transfer-encoding", b"chunked"))
        target = (provider.base_path + req.path).encode("latin-1")
        if req.query:
            target += b"?" + req.query.encode("latin-1")
        # `_parsed=True` skips h11's per-header regex validation, which costs
        # more than the rest of the request path: the client's headers were
        # already validated by llhttp, and the ones aperture adds (host, key)
        # were validated at config load. h11 still checks the framing headers.
        request = h11.Request(method=req.method.encode(), target=target, headers=headers,
                              _parsed=True)

        up, head = await self._send_request(provider, request, body, ended, scanner)
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

    async def _send_request(self, provider, request, body: bytes, ended: bool, scanner):
        """Send the request and wait for the response head; returns the
        connection and the first response event.

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
                if ended:
                    up.send(request, h11.Data(data=body), h11.EndOfMessage())
                else:
                    up.send(request, h11.Data(data=body))
                    await self._stream_body(up, scanner)
                await up.drain()
                event = await up.next_event(timeout)
                while type(event) is h11.InformationalResponse:
                    event = await up.next_event(timeout)
            except UpstreamTimeout:
                raise GatewayTimeout("upstream %s sent no response within %gs"
                                     % (provider.id, timeout)) from None
            except BadGateway:
                if not (attempt == 1 and up.reused and ended and up.bytes_received == 0):
                    raise
                self._drop_upstream()
                continue
            if type(event) is h11.Response:
                return up, event
            if attempt == 1 and up.reused and ended and up.bytes_received == 0:
                self._drop_upstream()
                continue
            raise BadGateway("upstream %s closed the connection without a response" % provider.id)
        raise BadGateway("upstream %s closed the connection without a response" % provider.id)

    async def _stream_body(self, up: UpstreamConnection, scanner) -> None:
        body = self.req.body
        limit = self.gw.settings.max_body_bytes
        total = self.req_body.size
        while True:
            await up.drain()
            chunk = await body.read()
            if not chunk:
                status = scanner.finish()
                if status != _FOUND:
                    raise scan_error(scanner, status)
                up.send(h11.EndOfMessage())
                return
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge("request body exceeds the limit of %d bytes" % limit)
            status = scanner.feed(chunk)
            if status != _FOUND:
                raise scan_error(scanner, status)
            self.req_body.add(chunk)
            up.send(h11.Data(data=chunk))

    async def _relay(self, up: UpstreamConnection, event: h11.Response) -> None:
        settings = self.gw.settings
        resp = self.resp
        # raw_items(): one list, where iterating h11's Headers costs two
        # Python calls per header.
        upstream_headers = [(name.lower(), value) for name, value in event.headers.raw_items()]
        headers = client_response_headers(upstream_headers)
        self.resp_headers = headers
        content_length = None
        content_type = b""
        for name, value in upstream_headers:
            if name == b"content-length":
                content_length = int(value)
            elif name == b"content-type":
                content_type = value
        if self.req.method == "HEAD" or event.status_code in (204, 304):
            content_length = None
        self.stream = content_type.split(b";", 1)[0].strip().lower() == _EVENT_STREAM
        if self.stream and self.fmt.sse_api:
            self.meter = accel.Meter("sse", "anthropic" if self.fmt.sse_api == "anthropic_messages" else "openai_chat")
        elif content_type.startswith(b"application/json"):
            self.json_body = []
        resp.start(event.status_code, headers, content_length)

        meter = self.meter
        json_body = self.json_body
        capture = self.resp_body
        sent = json_size = 0
        idle = settings.idle_timeout
        try:
            while True:
                event = await up.next_event(idle)
                kind = type(event)
                if kind is h11.Data:
                    data = event.data
                    if meter is not None:
                        meter.feed(data)
                    elif json_body is not None:
                        json_body.append(data)
                        json_size += len(data)
                        if json_size > MAX_METERED_JSON:
                            # Too large to parse for usage: relay it, count nothing.
                            json_body = self.json_body = None
                    capture.add(data)
                    sent += len(data)
                    if content_length is not None and sent >= content_length:
                        self._finish_ok()  # record first, then the last byte
                    resp.write(data)
                    await resp.drain()
                elif kind is h11.EndOfMessage:
                    if not self.submitted:
                        self._finish_ok()
                    resp.end()
                    self.gw.pool.release(up)
                    self.upstream = None
                    return
                else:  # ConnectionClosed before the end of the body
                    raise BadGateway("upstream %s closed the connection mid-response" % self.provider)
        except UpstreamTimeout:
            self._cut("upstream %s sent nothing for %gs" % (self.provider, idle))
        except BadGateway as exc:
            self._cut(exc.message)

    # -- endings --------------------------------------------------------------

    def _read_usage(self) -> None:
        meter = self.meter
        if meter is not None:
            self.usage = Usage(*meter.usage())
            self.tools = tuple(ToolCall(n, a) for n, a in meter.tool_calls())
            if meter.error and not self.error:
                self.error = meter.error
        elif self.json_body:
            try:
                parsed = orjson.loads(b"".join(self.json_body))
            except orjson.JSONDecodeError:
                return
            if isinstance(parsed, dict):
                self.usage, self.tools = self.fmt.read_usage(parsed)
                err = parsed.get("error")
                if isinstance(err, dict) and not self.error:
                    self.error = "%s: %s" % (err.get("type", "error"), err.get("message", ""))

    def _finish_ok(self) -> None:
        self._read_usage()
        if self.meter is not None and not self.meter.complete:
            self.state = INCOMPLETE
            self.error = self.error or "stream ended without its final event"
        self._submit(sending=True)

    def _cut(self, message: str) -> None:
        """The upstream failed after the response started: keep what was
        counted, mark it incomplete, close the client connection."""
        self._read_usage()
        self.state = INCOMPLETE
        self.error = message
        self._drop_upstream()
        self._submit()
        self.req.conn.abort()

    def _fail(self, exc: GatewayError) -> None:
        self.error = exc.message
        self._drop_upstream()
        self.state = UPSTREAM_ERROR if exc.status in (502, 503, 504) and self.provider else REFUSED
        if self.resp.started:
            self._submit()
            self.req.conn.abort()
            return
        body, headers = self.fmt.error_body(exc, self.id)
        self.resp.keep_alive = self.resp.keep_alive and self.req.body.at_eof
        self._submit_with_response(exc.status, headers, body)
        self.resp.send(exc.status, headers, body)

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
        now = self.req.conn.loop.time()
        resp = self.resp
        first = resp.first_byte_at if resp.first_byte_at is not None else (now if sending else None)
        ttfb = None if first is None else (first - self.t0) * 1000.0
        ident = self.identity
        req = self.req
        path = req.path + ("?" + req.query if req.query else "")
        record = Record(
            id=self.id, time=self.wall,
            user=ident.principal if ident is not None else "",
            node_name=ident.node_name if ident is not None else "",
            node_id=ident.node_id if ident is not None else "",
            tags=ident.tags if ident is not None else (),
            provider=self.provider, model=self.model, api=self.fmt.name,
            method=req.method, path=path, status=resp.status, stream=self.stream,
            usage=self.usage, tool_calls=self.tools,
            duration_ms=(now - self.t0) * 1000.0, ttfb_ms=ttfb,
            state=self.state, error=self.error,
            request_headers=for_record(req.headers),
            response_headers=for_record(self.resp_headers),
            request_body=self.req_body.value(), response_body=self.resp_body.value(),
            request_body_truncated=self.req_body.truncated,
            response_body_truncated=self.resp_body.truncated,
            session_hint=session_from_tail(self.req_body.tail) if self.req_body.truncated else "",
        )
        self.gw.sink.submit(record, req.conn if sending else None)
