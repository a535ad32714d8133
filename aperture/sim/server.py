"""The provider simulator's HTTP side: credentials, fault injection, pacing.

Theory of operation
-------------------
`Simulator.handle` is an ingress handler (`aperture.ingress.protocol`). For
each request it reads the whole body, records the request in `seen`, and asks
`aperture.sim.registry` for the route: every format (Anthropic, OpenAI Chat
and Responses, Gemini, Vertex AI, Bedrock) declares its paths as shapes
matched against the path's end (a provider baseurl may carry a prefix, so
`/anything/v1/messages` is `/v1/messages`). It checks the credential, parses
the JSON body, lets the route check the request, and asks the route's pure
action for the answer's bytes: a whole body, or a stream in three parts
(head, content deltas, tail) with the format's own mid-stream failure. This
module only decides *when* bytes go out:

- `latency` (or the `x-sim-latency` header) delays the response head;
- `token_rate` (or `x-sim-token-rate`) paces the content deltas of a stream
  (SSE events, Gemini JSON-array elements, AWS event-stream messages); with no
  pacing and no fault the whole stream leaves in one write;
- a fault, from the `x-sim-error` header or a model name containing
  `sim-error-<fault>` (for clients that cannot set headers; the path's model
  segment for Gemini, Vertex and Bedrock), is one of:

  =============  ==========================================================
  ``<status>``   an error answer in the format's shape, e.g. 429, 500, 529
                 (Anthropic's overload; the others' 503), any 400..599
  ``cut``        the head and part of the body, then the connection closes
                 without the terminating chunk
  ``stall``      the head and the first event (half a JSON body), then
                 silence for `STALL_SECONDS`, then the connection closes
  ``slow-head``  `SLOW_HEAD_SECONDS` (or `x-sim-latency`) before the head,
                 then a normal answer
  ``error-event``  a stream that ends half-way with the format's own
                 mid-stream error: Anthropic's `error` event, an OpenAI Chat
                 error chunk, Responses' `response.failed`, Google's error
                 object, a Bedrock `modelStreamErrorException` message (a
                 JSON answer gets the format's overload status instead)
  =============  ==========================================================

`x-sim-tokens` overrides the answer length. `require_key` refuses any other
credential (x-api-key, a bearer token, x-goog-api-key, `?key=`, or the access
key id of a SigV4 signature) with the format's 401 (Gemini: its 400
API_KEY_INVALID; Bedrock: its 403). The request counter numbers every
request; ids in answers derive from it (`aperture.sim.anthropic.message_id`...).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qsl

import orjson

from aperture.ingress.protocol import HttpConnection, Request, Response, ServerState
from aperture.sim import registry
from aperture.sim.routes import Call, Reject, Reply, Route, Streamed

SLOW_HEAD_SECONDS = 60.0
STALL_SECONDS = 3600.0
_PAUSE_SLICE = 0.1  # how often a long wait looks whether the client is still there


@dataclass(frozen=True, slots=True)
class SimSettings:
    latency: float = 0.0  # seconds before the response head
    token_rate: float = 0.0  # output tokens per second in streams; 0 = as fast as possible
    output_tokens: int = 12  # answer length in tokens (words) before the request's cap
    ping_every: int = 0  # Anthropic: a ping every N content deltas (0: only the one after block start)
    require_key: str | None = None  # when set, any other credential gets a 401
    history: int = 100  # how many requests `Simulator.seen` keeps


class SeenRequest(NamedTuple):
    method: str
    path: str  # the request target: the path, plus "?query" when there is one
    headers: dict[str, str]  # lowercased names
    body: bytes


_FAULTS = frozenset({"cut", "stall", "slow-head", "error-event"})


class Simulator:
    """The handler: `await sim.handle(req, resp)`."""

    __slots__ = ("settings", "seen", "states", "_seq")

    def __init__(self, settings: SimSettings = SimSettings()) -> None:
        self.settings = settings
        self.seen: deque[SeenRequest] = deque(maxlen=settings.history)
        self.states = registry.new_states()
        self._seq = 0

    async def handle(self, req: Request, resp: Response) -> None:
        req.send_continue()
        reader = req.body
        body = reader.read_nowait()  # usually the whole body, already here
        if body is None or (body and not reader.at_eof):
            parts = [body] if body else []
            while chunk := await reader.read():
                parts.append(chunk)
            body = b"".join(parts)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in req.headers}
        self.seen.append(SeenRequest(req.method, req.path + "?" + req.query if req.query else req.path,
                                     headers, body))
        self._seq += 1
        seq = self._seq

        query = _query(req.query) if req.query else {}
        fmt, route, params = registry.match(req.method, req.path, headers, query)
        if fmt is None:
            _error(resp, registry.guess(headers, query).error_response,
                   Reject(404, "Unknown request URL: %s %s" % (req.method, req.path)), seq)
            return
        try:
            await self._answer(req, resp, fmt, route, params, headers, query, body, seq)
        except Reject as rej:
            _error(resp, route.errors if route is not None and route.errors else fmt.error_response,
                   rej, seq)

    async def _answer(self, req: Request, resp: Response, fmt, route: Route | None, params: dict,
                      headers: dict, query: dict, body: bytes, seq: int) -> None:
        settings = self.settings
        if settings.require_key is not None and _credential(headers, query) != settings.require_key:
            raise Reject(401)
        if route is None:
            raise Reject(405, "Method %s not allowed" % req.method)
        request = None
        if route.body:
            try:
                request = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise Reject(400, "The request body is not valid JSON.") from None
            if type(request) is not dict:
                raise Reject(400, "The request body must be a JSON object.")
        call = Call(req.method, req.path, query, headers, params, request, seq,
                    self.states.get(fmt.NAME), settings.output_tokens, settings.ping_every)
        if route.check is not None:
            route.check(call)
        if not route.faults:
            _send(resp, route.action(call))
            return

        fault = headers.get("x-sim-error")
        if fault is None and route.model is not None:
            model = request.get("model") if route.model == "body" else params.get(route.model)
            if type(model) is str and "sim-error-" in model:
                fault = model.partition("sim-error-")[2]
        delay = settings.latency
        if "x-sim-latency" in headers:
            delay = _number(headers, "x-sim-latency", float)
        elif fault == "slow-head":
            delay = SLOW_HEAD_SECONDS
        if fault is not None and fault not in _FAULTS:
            status = int(fault) if fault.isdigit() else 0
            if not 400 <= status <= 599:
                raise Reject(400, "unknown x-sim-error fault %r" % fault)
            if delay > 0 and not await _pause(req, delay):
                return
            raise Reject(status)
        if delay > 0 and not await _pause(req, delay):
            return
        if fault == "slow-head":  # the delay was the fault: a normal answer follows
            fault = None

        if "x-sim-tokens" in headers:
            call.length = _number(headers, "x-sim-tokens", int)
        rate = settings.token_rate
        if "x-sim-token-rate" in headers:
            rate = _number(headers, "x-sim-token-rate", float)
        call.latency_ms = round(delay * 1000)
        call.token_rate = rate
        answer = route.action(call)
        if type(answer) is Streamed:
            await self._stream(req, resp, answer, fault, rate)
        elif fault is None:
            _send(resp, answer)
        elif fault == "error-event":
            raise Reject(529)
        else:
            await self._broken_body(req, resp, answer.headers, answer.body, fault)

    async def _stream(self, req: Request, resp: Response, answer: Streamed, fault: str | None,
                      rate: float) -> None:
        events = answer.events
        resp.start(200, answer.headers, None)
        if fault is None and rate <= 0:
            resp.end(events.joined())  # the whole stream in one write
            return
        if fault == "stall":
            resp.write(events.head[0] if events.head else events.deltas[0])
            if await _pause(req, STALL_SECONDS):
                await _hang_up(req)
            return
        deltas = events.deltas
        if fault is not None:  # cut and error-event stop half-way through the content
            deltas = deltas[:max(len(deltas) // 2, min(len(deltas), 1))]
        resp.write(b"".join(events.head))
        if rate > 0:
            loop = asyncio.get_running_loop()
            interval = 1.0 / rate
            due = loop.time()
            for delta in deltas:
                due += interval
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                resp.write(delta)
                await resp.drain()
        else:
            resp.write(b"".join(deltas))
        if fault == "cut":
            await _hang_up(req)
        elif fault == "error-event":
            resp.end(answer.failure(len(deltas)))
        else:
            resp.end(b"".join(events.tail))

    async def _broken_body(self, req: Request, resp: Response, head: list, data: bytes,
                           fault: str) -> None:
        """cut / stall for a JSON answer: the head (with the full length) and half the body."""
        resp.start(200, head, len(data))
        resp.write(data[:len(data) // 2])
        if fault != "stall" or await _pause(req, STALL_SECONDS):
            await _hang_up(req)



def _error(resp: Response, error_response, rej: Reject, seq: int) -> None:
    status, head, data = error_response(rej.status, rej.message, seq, rej.param, rej.code)
    resp.send(status, head, data)

def _send(resp: Response, answer: Reply) -> None:
    resp.send(answer.status, answer.headers, answer.body)


def _query(query: str) -> dict[str, str]:
    """The first value of each query parameter."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(name, value)
    return out


def _credential(headers: dict, query: dict) -> str | None:
    """The key a request carries: x-api-key, a bearer token, x-goog-api-key,
    the `key` query parameter, or the access key id of an AWS SigV4 signature."""
    key = headers.get("x-api-key")
    if key is not None:
        return key
    auth = headers.get("authorization")
    if auth is not None:
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        if auth.startswith("AWS4-HMAC-SHA256 "):
            credential = auth.partition("Credential=")[2]
            return credential.partition("/")[0] or None
    key = headers.get("x-goog-api-key")
    if key is not None:
        return key
    return query.get("key")


_LIMITS = {"x-sim-latency": 86400.0, "x-sim-tokens": 1_000_000, "x-sim-token-rate": 1e9}


def _number(headers: dict, name: str, kind):
    """A numeric override header, within 0 and its limit (NaN is neither)."""
    try:
        value = kind(headers[name])
    except ValueError:
        raise Reject(400, "%s: not a number: %r" % (name, headers[name])) from None
    if not 0 <= value <= _LIMITS[name]:
        raise Reject(400, "%s must be between 0 and %s" % (name, _LIMITS[name]))
    return value


async def _pause(req: Request, seconds: float) -> bool:
    """Wait `seconds`, or less when the client goes away meanwhile (then False).

    A client that closes its side while nothing is being written to it is
    only seen as end-of-input: the transport stops reading. (Reading also
    stops when a client pipelines its next request; such a client loses the
    waiting answer.) A waiting handler that returns unfinished makes the
    server drop the connection.
    """
    if seconds <= _PAUSE_SLICE:
        await asyncio.sleep(seconds)
        return True
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    transport = req.conn.transport
    while True:
        if transport is None or transport.is_closing() or not transport.is_reading():
            return False
        left = end - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(left, _PAUSE_SLICE))


async def _hang_up(req: Request) -> None:
    """Close the connection after what was written so far (no terminating
    chunk), then wait to be cancelled: the server cancels a handler whose
    connection is gone, which is how this one ends."""
    transport = req.conn.transport
    if transport is not None:
        transport.close()
    await asyncio.sleep(STALL_SECONDS)


async def start_simulator(host: str = "127.0.0.1", port: int = 0,
                          settings: SimSettings = SimSettings(), *,
                          simulator: Simulator | None = None) -> tuple[asyncio.AbstractServer, int]:
    """Listen on host:port (0: any free port) in the running loop; returns the
    server and the bound port. Pass `simulator` to keep a handle on `seen`."""
    sim = simulator if simulator is not None else Simulator(settings)
    state = ServerState(sim.handle)
    server = await asyncio.get_running_loop().create_server(lambda: HttpConnection(state), host, port)
    return server, server.sockets[0].getsockname()[1]
