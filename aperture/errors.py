"""One error tree for everything the gateway answers with an error.

Each error knows its HTTP status and a short `kind` that the API formats map to
their own error type names (see `aperture.formats`). Messages name the problem
and never contain a credential.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error answered to the client in the caller's own API format."""

    status = 500
    kind = "api_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(GatewayError):
    status = 400
    kind = "invalid_request"


class MalformedBody(BadRequest):
    """The request body is not the JSON the API expects."""


class MissingModel(BadRequest):
    """No usable top-level "model" in the body."""


class Unauthenticated(GatewayError):
    status = 401
    kind = "authentication"


class Forbidden(GatewayError):
    status = 403
    kind = "permission"


class NotFound(GatewayError):
    status = 404
    kind = "not_found"


class UnknownModel(NotFound):
    pass


class MethodNotAllowed(GatewayError):
    status = 405
    kind = "invalid_request"


class RequestTimeout(GatewayError):
    """The client was too slow sending its request."""

    status = 408
    kind = "timeout"


class Conflict(GatewayError):
    status = 409
    kind = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    kind = "request_too_large"


class HeadersTooLarge(GatewayError):
    status = 431
    kind = "invalid_request"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limit"


class BadGateway(GatewayError):
    """The upstream could not be reached or answered with something broken."""

    status = 502
    kind = "api_error"


class Unavailable(GatewayError):
    status = 503
    kind = "overloaded"


class GatewayTimeout(GatewayError):
    status = 504
    kind = "timeout"


class ConfigError(Exception):
    """An invalid configuration; `problems` holds one line per problem, each
    starting with its JSON path (`providers.x.baseurl: must be a string`)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
