"""Anthropic Messages (`/v1/messages`). Wire facts: reference/wire-formats.md §1."""

from __future__ import annotations

import orjson

from aperture.errors import GatewayError
from aperture.formats.base import JSON, ApiFormat, Route, only

_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "api_error": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "conflict": "invalid_request_error",
}

# The model is in the body: one route each, shared by every request.
_MESSAGES = Route(("anthropic_messages",), dialect="anthropic")
_COUNT_TOKENS = Route(("anthropic_messages",), dialect=None)


def anthropic_error(error: GatewayError, request_id: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An error in Anthropic's shape (also Claude on Vertex)."""
    body = orjson.dumps({
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(error.kind, "api_error"), "message": error.message},
        "request_id": request_id,
    })
    return body, [(b"content-type", JSON), (b"request-id", request_id.encode())]


class AnthropicMessages(ApiFormat):
    name = "anthropic_messages"
    paths = (("/v1/messages", False), ("/v1/messages/count_tokens", False))

    def match(self, method: str, path: str, query: str) -> Route:
        only(method, "POST", path)
        return _MESSAGES if path == "/v1/messages" else _COUNT_TOKENS

    error_body = staticmethod(anthropic_error)
