"""What every API format module provides, and the route it answers a request with.

A format knows its client-side paths, what each path means (a `Route`), how
its errors look, and which meter dialect reads its responses (DESIGN.md, "API
formats"). Adding a format means adding one module that subclasses
`ApiFormat` and registering it in `aperture.formats`.

A `Route` is decided from the method and path alone, before any byte of the
body is read: the compatibility flag a provider needs for this action, where
the model is (a path segment, already decoded, or the body's top-level
`model`, or nowhere for a stored-response sub-resource), what the body must
be, the meter dialect for the answer, and the upstream path once the provider
and the model it knows are chosen.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from aperture.capture.record import Usage
from aperture.errors import BadRequest, GatewayError, MethodNotAllowed, NotFound

JSON = b"application/json"

# What the request body must be.
BODY_MODEL = 0  # a JSON object whose top-level "model" names the model
BODY_JSON = 1  # a JSON object (the model is in the path)
BODY_ANY = 2  # forwarded as it comes, not read (stored-response sub-resources)

_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})?")


class Route:
    """One request's meaning (see the module docstring). Routes of the
    body-model formats are built once and shared; the others per request."""

    __slots__ = ("flags", "model", "body", "dialect", "array_stream", "path", "prefix", "suffix",
                 "safe", "response_id", "errors")

    def __init__(self, flags: tuple[str, ...], *, model: str | None = None, body: int = BODY_MODEL,
                 dialect: str | None = None, array_stream: bool = False, path: str | None = None,
                 prefix: str = "", suffix: str = "", safe: str = "",
                 response_id: str | None = None, errors=None) -> None:
        #: compatibility flags of which the provider must have one (the first names the API)
        self.flags = flags
        #: the model named by the path, decoded; None when it is in the body or absent
        self.model = model
        self.body = body
        #: meter dialect of the answer (aperture.accel.Meter), None: not metered
        self.dialect = dialect
        #: a JSON answer is a streamed array of responses (Gemini without alt=sse)
        self.array_stream = array_stream
        #: the upstream path, None for the client's own path
        self.path = path
        #: for a model renamed by routing: the path is prefix + quote(model) + suffix
        self.prefix = prefix
        self.suffix = suffix
        self.safe = safe
        #: the stored response a sub-resource request is about
        self.response_id = response_id
        #: the error shape when it is not the format's own (Claude on Vertex)
        self.errors = errors


class ApiFormat:
    name = ""
    #: (path, is_prefix) pairs this format owns; every method reaches `match`
    paths: tuple[tuple[str, bool], ...] = ()

    def match(self, method: str, path: str, query: str) -> Route:
        """The route of a request on one of this format's paths, or a
        GatewayError (404 unknown action, 405 wrong method, 400 bad model)."""
        raise NotImplementedError

    def upstream_path(self, route: Route, client_path: str, provider, model: str) -> str:
        """The path appended to the provider's baseurl: the client's own path
        (or the route's), with the model segment rewritten when routing
        renamed the model (`provider/model` -> `model`)."""
        if route.model is not None and model != route.model:
            return route.prefix + quote(model, safe=route.safe) + route.suffix
        return route.path if route.path is not None else client_path

    def error_body(self, error: GatewayError, request_id: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The body and extra headers of an error answered in this format."""
        raise NotImplementedError

    def usage_from_headers(self, headers: list[tuple[bytes, bytes]]) -> Usage | None:
        """Usage reported in the response headers, for answers whose body has none."""
        return None

    def upstream_error(self, status: int, headers: list[tuple[bytes, bytes]]) -> str:
        """The error text of a provider's error answer whose body named none."""
        return "upstream answered %d" % status


def only(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise MethodNotAllowed("%s is not allowed on %s; use %s" % (method, path, allowed))


def decode_segment(raw: str, what: str = "model") -> str:
    """A percent-encoded path segment, decoded strictly: every `%` starts two
    hex digits, the bytes are UTF-8 and not control characters. A segment
    that is empty or not decodable is the caller's mistake (400)."""
    if not raw:
        raise BadRequest("the %s in the path is empty" % what)
    if "%" in raw:
        data = bytearray()
        pos = 0
        for m in _PERCENT.finditer(raw):
            if m.group(1) is None:
                raise BadRequest("the %s in the path is not decodable: '%%' must start two hex digits"
                                 % what)
            data += raw[pos:m.start()].encode("latin-1")
            data.append(int(m.group(1), 16))
            pos = m.end()
        data += raw[pos:].encode("latin-1")
    else:
        data = raw.encode("latin-1")
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the %s in the path is not decodable: not UTF-8" % what) from None
    if not value.strip():
        raise BadRequest("the %s in the path is empty" % what)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadRequest("the %s in the path contains control characters" % what)
    return value


def split_action(rest: str, path: str, what: str = "model") -> tuple[str, str]:
    """`{model}:{action}` (the last colon separates them) -> (raw model, action)."""
    raw, colon, action = rest.rpartition(":")
    if not colon:
        raise NotFound("no route for %s: expected .../%s:ACTION" % (path, what.upper()))
    return raw, action


def not_found(method: str, path: str) -> NotFound:
    return NotFound("no route for %s %s" % (method, path))


def as_int(value) -> int:
    return value if type(value) is int and value > 0 else 0
