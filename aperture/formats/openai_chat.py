"""OpenAI Chat Completions (`/v1/chat/completions`, and `/v1/embeddings` which
OpenAI-compatible providers serve beside it). Wire facts: reference/wire-formats.md §2."""

from __future__ import annotations

import orjson

from aperture.capture.record import ToolCall, Usage
from aperture.errors import GatewayError
from aperture.formats.base import JSON, ApiFormat, as_int

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


class OpenAIChat(ApiFormat):
    name = "openai_chat"
    paths = frozenset({"/v1/chat/completions", "/v1/embeddings"})
    sse_api = "openai_chat"

    def error_body(self, error: GatewayError, request_id: str):
        body = orjson.dumps({"error": {
            "message": error.message,
            "type": _ERROR_TYPES.get(error.kind, "api_error"),
            "param": None,
            "code": getattr(error, "code", None),
        }})
        return body, [(b"content-type", JSON), (b"x-request-id", request_id.encode())]

    def read_usage(self, body: dict):
        tools = []
        choices = body.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                message = choice.get("message") if isinstance(choice, dict) else None
                calls = message.get("tool_calls") if isinstance(message, dict) else None
                if isinstance(calls, list):
                    for call in calls:
                        fn = call.get("function") if isinstance(call, dict) else None
                        if isinstance(fn, dict):
                            args = fn.get("arguments", "")
                            tools.append(ToolCall(str(fn.get("name", "")),
                                                  args if isinstance(args, str) else orjson.dumps(args).decode()))
        usage = body.get("usage")
        if not isinstance(usage, dict):
            return Usage(), tuple(tools)
        return usage_from_openai(usage), tuple(tools)


def usage_from_openai(usage: dict) -> Usage:
    """OpenAI reports cached input inside prompt_tokens; aperture's input_tokens
    is the input not served from cache, as Anthropic reports it."""
    prompt = as_int(usage.get("prompt_tokens"))
    pdet = usage.get("prompt_tokens_details")
    cached = as_int(pdet.get("cached_tokens")) if isinstance(pdet, dict) else 0
    written = as_int(pdet.get("cache_write_tokens")) if isinstance(pdet, dict) else 0
    cdet = usage.get("completion_tokens_details")
    reasoning = as_int(cdet.get("reasoning_tokens")) if isinstance(cdet, dict) else 0
    return Usage(
        input_tokens=max(prompt - cached - written, 0),
        output_tokens=as_int(usage.get("completion_tokens")),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    )
