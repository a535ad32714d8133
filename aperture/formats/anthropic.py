"""Anthropic Messages (`/v1/messages`). Wire facts: reference/wire-formats.md §1."""

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
    "request_too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "api_error": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "conflict": "invalid_request_error",
}


class AnthropicMessages(ApiFormat):
    name = "anthropic_messages"
    paths = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
    sse_api = "anthropic_messages"

    def error_body(self, error: GatewayError, request_id: str):
        body = orjson.dumps({
            "type": "error",
            "error": {"type": _ERROR_TYPES.get(error.kind, "api_error"), "message": error.message},
            "request_id": request_id,
        })
        return body, [(b"content-type", JSON), (b"request-id", request_id.encode())]

    def read_usage(self, body: dict):
        usage = body.get("usage")
        tools = []
        content = body.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                    tools.append(ToolCall(str(block.get("name", "")),
                                          orjson.dumps(block.get("input", {})).decode()))
        if not isinstance(usage, dict):
            return Usage(), tuple(tools)
        details = usage.get("output_tokens_details")
        reasoning = as_int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        return Usage(
            input_tokens=as_int(usage.get("input_tokens")),
            output_tokens=as_int(usage.get("output_tokens")),
            cache_read_tokens=as_int(usage.get("cache_read_input_tokens")),
            cache_write_tokens=as_int(usage.get("cache_creation_input_tokens")),
            reasoning_tokens=reasoning,
        ), tuple(tools)
