"""OpenAI Chat Completions (`/v1/chat/completions`, and `/v1/embeddings` which
OpenAI-compatible providers serve beside it). Wire facts: reference/wire-formats.md §2."""

from __future__ import annotations

import orjson

from aperture.errors import GatewayError
from aperture.formats.base import JSON, ApiFormat, Route, only

_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "api_error": "api_error",
    "overloaded": "service_unavailable",
    "timeout": "timeout",
    "conflict": "conflict",
}

_CHAT = Route(("openai_chat",), dialect="openai_chat")


def openai_error(error: GatewayError, request_id: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An error in OpenAI's shape (Chat Completions and Responses)."""
    body = orjson.dumps({"error": {
        "message": error.message,
        "type": _ERROR_TYPES.get(error.kind, "api_error"),
        "param": None,
        "code": getattr(error, "code", None),
    }})
    return body, [(b"content-type", JSON), (b"x-request-id", request_id.encode())]


class OpenAIChat(ApiFormat):
    name = "openai_chat"
    paths = (("/v1/chat/completions", False), ("/v1/embeddings", False))

    def match(self, method: str, path: str, query: str) -> Route:
        only(method, "POST", path)
        return _CHAT

    error_body = staticmethod(openai_error)
