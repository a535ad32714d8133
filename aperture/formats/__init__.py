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

__all__ = ["FORMATS", "BY_NAME", "DEFAULT_FORMAT", "ApiFormat", "Route"]
