"""What every API format module provides.

A format knows its client-side paths, where the model name is, how its errors
look, and how usage and tool calls appear in its non-streaming bodies (streams
are read by `aperture.accel.SseMeter`). Adding a format means adding one module
that subclasses `ApiFormat` and registering it in `aperture.formats`.
"""

from __future__ import annotations

from aperture.capture.record import ToolCall, Usage
from aperture.errors import GatewayError

JSON = b"application/json"


class ApiFormat:
    name = ""
    #: exact client paths (without query) served for POST
    paths: frozenset[str] = frozenset()
    #: the model is the top-level "model" key of the JSON body
    model_in_body = True
    #: api name understood by SseMeter, or None when streams are not metered
    sse_api: str | None = None

    def error_body(self, error: GatewayError, request_id: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The body and extra headers of an error answered in this format."""
        raise NotImplementedError

    def read_usage(self, body: dict) -> tuple[Usage, tuple[ToolCall, ...]]:
        """Usage and tool calls of a whole (non-streaming) JSON response."""
        raise NotImplementedError


def as_int(value) -> int:
    return value if type(value) is int and value > 0 else 0
