"""The API formats the gateway speaks.

Each format is one module (DESIGN.md, "API formats"); this registry is the only
place that lists them. The gateway puts every format's paths in its route
table (`aperture.gateway`); a format then answers `match(method, path, query)`
with the `Route` of the request.
"""

from __future__ import annotations

from aperture.formats.anthropic import AnthropicMessages
from aperture.formats.base import ApiFormat, Route
from aperture.formats.bedrock import Bedrock
from aperture.formats.gemini import Gemini
from aperture.formats.openai_chat import OpenAIChat
from aperture.formats.openai_responses import OpenAIResponses
from aperture.formats.vertex import Vertex

FORMATS: tuple[ApiFormat, ...] = (AnthropicMessages(), OpenAIChat(), OpenAIResponses(), Gemini(),
                                  Vertex(), Bedrock())
BY_NAME: dict[str, ApiFormat] = {f.name: f for f in FORMATS}

#: the format used for errors on paths that belong to no format
DEFAULT_FORMAT: ApiFormat = BY_NAME["openai_chat"]

# Path prefixes no route serves whole, and the format whose clients use them.
_SUGGESTED = (
    ("/bedrock/", "bedrock"),
    ("/v1beta/", "gemini"), ("/v1beta1/", "vertex"), ("/upload/v1beta/", "gemini"),
    ("/v1/projects/", "vertex"), ("/v1/publishers/", "vertex"),
    ("/v1/messages", "anthropic_messages"), ("/v1/complete", "anthropic_messages"),
    ("/v1/files", "anthropic_messages"), ("/v1/organizations/", "anthropic_messages"),
)


def format_for_path(path: str, headers=()) -> ApiFormat:
    """The format whose error shape answers a request on a path no route
    serves: the one the path suggests (`/bedrock/...` AWS, `/v1beta/...`
    Google, `/v1/messages/...` Anthropic), or a header only Anthropic's
    clients send; OpenAI's otherwise."""
    if path == "/bedrock":
        return BY_NAME["bedrock"]
    for prefix, name in _SUGGESTED:
        if path.startswith(prefix):
            return BY_NAME[name]
    for name, _ in headers:
        if name == b"anthropic-version":
            return BY_NAME["anthropic_messages"]
    return DEFAULT_FORMAT

__all__ = ["FORMATS", "BY_NAME", "DEFAULT_FORMAT", "format_for_path", "ApiFormat", "Route"]
