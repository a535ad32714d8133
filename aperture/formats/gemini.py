"""Gemini API (`/v1beta/models/{model}:ACTION`). Wire facts: reference/wire-formats.md §4.

The model is the path segment between `models/` and the last colon, percent-
decoded (a fully qualified `provider/model` may come as `gemini/gemini-2.5-pro`
or `gemini%2Fgemini-2.5-pro`). When routing renames it, the segment is
rewritten before forwarding; otherwise the path goes upstream as the client
wrote it.

`:streamGenerateContent?alt=sse` answers with SSE; without `alt=sse` the
answer is one JSON array whose elements arrive one by one, metered element by
element. Errors use Google's shape (`google_error`), shared with Vertex.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson

from aperture.errors import GatewayError
from aperture.formats.base import (BODY_JSON, JSON, ApiFormat, Route, decode_segment, not_found,
                                   only, split_action)

# aperture's error kinds -> (Google's status name)
_STATUSES = {
    "invalid_request": "INVALID_ARGUMENT",
    "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "request_too_large": "INVALID_ARGUMENT",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "api_error": "INTERNAL",
    "overloaded": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
    "conflict": "ABORTED",
}
_UNAVAILABLE = frozenset({502, 503})

# action -> (meter dialect, whether it streams)
ACTIONS = {
    "generateContent": ("gemini", False),
    "streamGenerateContent": ("gemini", True),
    "countTokens": (None, False),
    "embedContent": (None, False),
    "batchEmbedContents": (None, False),
}
# The model segment may hold what a model name holds; "/" only encoded.
MODEL_SAFE = "-._~@"


def google_error(error: GatewayError, request_id: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An error in Google's shape (Gemini API and Gemini on Vertex)."""
    status = "UNAVAILABLE" if error.status in _UNAVAILABLE else _STATUSES.get(error.kind, "INTERNAL")
    body = orjson.dumps({"error": {"code": error.status, "message": error.message, "status": status}})
    return body, [(b"content-type", JSON), (b"x-request-id", request_id.encode())]


def sse_requested(query: str) -> bool:
    return "alt=" in query and ("alt", "sse") in parse_qsl(query)


def model_route(flags: tuple[str, ...], method: str, path: str, query: str, prefix: str,
                actions: dict) -> Route:
    """The route of `{prefix}{model}:{action}` (Gemini, and Gemini on Vertex)."""
    raw, action = split_action(path[len(prefix):], path)
    spec = actions.get(action)
    if spec is None:
        raise not_found(method, path)
    only(method, "POST", path)
    dialect, streams = spec
    return Route(flags, model=decode_segment(raw), body=BODY_JSON, dialect=dialect,
                 array_stream=streams and not sse_requested(query),
                 prefix=prefix, suffix=":" + action, safe=MODEL_SAFE)


class Gemini(ApiFormat):
    name = "gemini"
    paths = (("/v1beta/models/", True), ("/v1/models/", True))
    _FLAGS = ("gemini_generate_content",)

    def match(self, method: str, path: str, query: str) -> Route:
        prefix = "/v1beta/models/" if path.startswith("/v1beta/") else "/v1/models/"
        return model_route(self._FLAGS, method, path, query, prefix, ACTIONS)

    error_body = staticmethod(google_error)
