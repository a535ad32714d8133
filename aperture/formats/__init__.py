"""The API formats the gateway speaks, looked up by method and path.

Each format is one module (DESIGN.md, "API formats"); this registry is the only
place that lists them.
"""

from __future__ import annotations

from aperture.formats.anthropic import AnthropicMessages
from aperture.formats.base import ApiFormat
from aperture.formats.openai_chat import OpenAIChat

FORMATS: tuple[ApiFormat, ...] = (AnthropicMessages(), OpenAIChat())
BY_NAME: dict[str, ApiFormat] = {f.name: f for f in FORMATS}
_BY_POST_PATH: dict[str, ApiFormat] = {path: f for f in FORMATS for path in f.paths}

#: the format used for errors on paths that belong to no format
DEFAULT_FORMAT: ApiFormat = BY_NAME["openai_chat"]


def match(method: str, path: str) -> ApiFormat | None:
    """The format serving `method path`, or None."""
    if method == "POST":
        return _BY_POST_PATH.get(path)
    return None


def known_path(path: str) -> ApiFormat | None:
    """The format owning `path` whatever the method (for 405 answers)."""
    return _BY_POST_PATH.get(path)
