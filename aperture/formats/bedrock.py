"""AWS Bedrock Runtime under the `/bedrock` prefix
(`ANTHROPIC_BEDROCK_BASE_URL=http://ai/bedrock`). Wire facts:
reference/wire-formats.md §6.

    POST /bedrock/model/{modelId}/invoke                      bedrock_model_invoke
    POST /bedrock/model/{modelId}/invoke-with-response-stream bedrock_model_invoke
    POST /bedrock/model/{modelId}/converse                    bedrock_converse
    POST /bedrock/model/{modelId}/converse-stream             bedrock_converse
    POST /bedrock/model/{modelId}/count-tokens                either

The prefix is removed and the rest appended to the provider's baseurl exactly
as the client encoded it: a model id may be an ARN whose `/` travels as `%2F`,
which must never become a path separator. Routing uses the decoded id. Invoke
bodies are the model's own (Anthropic's for Claude, metered as such), streams
the AWS binary event-stream. Errors are Bedrock's: `{"message": ...}` with the
exception name in `x-amzn-errortype`.
"""

from __future__ import annotations

import orjson

from aperture.capture.record import Usage
from aperture.errors import GatewayError
from aperture.formats.base import (BODY_JSON, JSON, ApiFormat, Route, as_int, decode_segment,
                                   not_found, only)

PREFIX = "/bedrock"
_INVOKE = ("bedrock_model_invoke",)
_CONVERSE = ("bedrock_converse",)
# action -> (flags, meter dialect)
ACTIONS = {
    "invoke": (_INVOKE, "anthropic"),
    "invoke-with-response-stream": (_INVOKE, "anthropic"),
    "converse": (_CONVERSE, "converse"),
    "converse-stream": (_CONVERSE, "converse"),
    "count-tokens": (_INVOKE + _CONVERSE, None),
}
# aperture's error kinds -> Bedrock's exception names (service-2.json)
_EXCEPTIONS = {
    "invalid_request": "ValidationException",
    "authentication": "AccessDeniedException",
    "permission": "AccessDeniedException",
    "not_found": "ResourceNotFoundException",
    "request_too_large": "ValidationException",
    "rate_limit": "ThrottlingException",
    "api_error": "InternalServerException",
    "overloaded": "ServiceUnavailableException",
    "timeout": "ModelTimeoutException",
    "conflict": "ConflictException",
}
_UNAVAILABLE = frozenset({502, 503})
# InvokeModel reports usage in headers too (reference §6.3).
_USAGE_HEADERS = (b"x-amzn-bedrock-input-token-count", b"x-amzn-bedrock-output-token-count",
                  b"x-amzn-bedrock-cache-read-input-token-count",
                  b"x-amzn-bedrock-cache-write-input-token-count")


class Bedrock(ApiFormat):
    name = "bedrock"
    paths = ((PREFIX + "/", True),)

    def match(self, method: str, path: str, query: str) -> Route:
        parts = path.split("/")  # ["", "bedrock", "model", id, action]
        if len(parts) != 5 or parts[2] != "model":
            raise not_found(method, path)
        spec = ACTIONS.get(parts[4])
        if spec is None:
            raise not_found(method, path)
        only(method, "POST", path)
        flags, dialect = spec
        upstream = path[len(PREFIX):]
        return Route(flags, model=decode_segment(parts[3], "model id"), body=BODY_JSON,
                     dialect=dialect, path=upstream, prefix="/model/",
                     suffix="/" + parts[4], safe=":")

    def error_body(self, error: GatewayError, request_id: str):
        if error.status in _UNAVAILABLE:
            name = "ServiceUnavailableException"
        else:
            name = _EXCEPTIONS.get(error.kind, "InternalServerException")
        return orjson.dumps({"message": error.message}), [
            (b"content-type", JSON), (b"x-amzn-errortype", name.encode()),
            (b"x-amzn-requestid", request_id.encode())]

    def usage_from_headers(self, headers):
        found = {name: value for name, value in headers if name in _USAGE_HEADERS}
        if not found:
            return None
        counts = []
        for name in _USAGE_HEADERS:
            value = found.get(name, b"")
            counts.append(as_int(int(value)) if value.isdigit() else 0)
        return Usage(input_tokens=counts[0], output_tokens=counts[1], cache_read_tokens=counts[2],
                     cache_write_tokens=counts[3])

    def upstream_error(self, status: int, headers) -> str:
        for name, value in headers:
            if name == b"x-amzn-errortype":
                kind = value.decode("latin-1").split(":", 1)[0].rpartition("#")[2]
                return "%s (upstream answered %d)" % (kind, status)
        return super().upstream_error(status, headers)
