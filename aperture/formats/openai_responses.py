"""OpenAI Responses (`/v1/responses`, Codex's API). Wire facts: reference/wire-formats.md §3.

`POST /v1/responses` (and `/v1/responses/compact`, `/v1/responses/input_tokens`)
carry the model in the body like Chat Completions. The sub-resources of a
stored response carry none:

    GET    /v1/responses/{id}                 (also ?stream=true&starting_after=N)
    DELETE /v1/responses/{id}
    POST   /v1/responses/{id}/cancel
    GET    /v1/responses/{id}/input_items

Such a request goes to the provider that served that response id, as the
gateway remembers it (see `aperture.gateway`), and is not metered: its usage
was counted when the response was made.
"""

from __future__ import annotations

from aperture.formats.base import BODY_ANY, ApiFormat, Route, decode_segment, not_found, only
from aperture.formats.openai_chat import openai_error

_FLAGS = ("openai_responses",)
_CREATE = Route(_FLAGS, dialect="openai_responses")
_INPUT_TOKENS = Route(_FLAGS, dialect=None)

# sub-resource -> the method it takes
_SUB_RESOURCES = {"": ("GET", "DELETE"), "cancel": ("POST",), "input_items": ("GET",)}


class OpenAIResponses(ApiFormat):
    name = "openai_responses"
    paths = (("/v1/responses", False), ("/v1/responses/", True))

    def match(self, method: str, path: str, query: str) -> Route:
        if path == "/v1/responses" or path == "/v1/responses/compact":
            only(method, "POST", path)
            return _CREATE
        if path == "/v1/responses/input_tokens":
            only(method, "POST", path)
            return _INPUT_TOKENS
        raw, _, sub = path[len("/v1/responses/"):].partition("/")
        methods = _SUB_RESOURCES.get(sub)
        if methods is None or not raw:
            raise not_found(method, path)
        if method not in methods:
            only(method, methods[0], path)
        response_id = decode_segment(raw, "response id")
        return Route(_FLAGS, body=BODY_ANY, response_id=response_id)

    error_body = staticmethod(openai_error)
