"""Vertex AI: Gemini and Claude models under a Google Cloud project. Wire facts:
reference/wire-formats.md §5.

    /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
        (also :streamGenerateContent, :countTokens)   flag google_generate_content
    /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict
        (also :streamRawPredict)                       flag google_raw_predict
    /v1/projects/{p}/locations/{l}/publishers/anthropic/models/count-tokens:rawPredict
        (the model is in the body)                     flag google_raw_predict

`v1beta1` is accepted as well as `v1`, and Vertex Express's project-less
`/v1/publishers/google/models/...`. Gemini bodies and streams are Gemini's,
Claude's are Anthropic's, and so are their errors.

Clients that do not know the project may write the placeholders
`_aperture_auto_vertex_project_id_` and `_aperture_auto_vertex_region_`; they
are replaced by the provider's `vertex_project` and `vertex_region`.
"""

from __future__ import annotations

from urllib.parse import quote

from aperture.errors import GatewayError
from aperture.formats.anthropic import anthropic_error
from aperture.formats.base import (BODY_JSON, ApiFormat, Route, decode_segment, not_found, only,
                                   split_action)
from aperture.formats.gemini import google_error, model_route

PROJECT_PLACEHOLDER = "_aperture_auto_vertex_project_id_"
REGION_PLACEHOLDER = "_aperture_auto_vertex_region_"

_GEMINI_ACTIONS = {
    "generateContent": ("gemini", False),
    "streamGenerateContent": ("gemini", True),
    "countTokens": (None, False),
}
_GOOGLE = ("google_generate_content",)
_CLAUDE = ("google_raw_predict",)
_CLAUDE_ACTIONS = ("rawPredict", "streamRawPredict")
# The model segment of a Claude model: names carry an @version.
_CLAUDE_SAFE = "-._~@"


class Vertex(ApiFormat):
    name = "vertex"
    paths = (("/v1/projects/", True), ("/v1beta1/projects/", True),
             ("/v1/publishers/", True), ("/v1beta1/publishers/", True))

    def match(self, method: str, path: str, query: str) -> Route:
        parts = path.split("/")
        # ["", version, "projects", p, "locations", l, "publishers", pub, "models", rest]
        # ["", version, "publishers", pub, "models", rest]
        start = 6 if parts[2] == "projects" else 2
        if (len(parts) < start + 4 or parts[start] != "publishers" or parts[start + 2] != "models"
                or (start == 6 and (parts[4] != "locations" or not parts[3] or not parts[5]))):
            raise not_found(method, path)
        prefix = "/".join(parts[:start + 3]) + "/"
        publisher = parts[start + 1]
        if publisher == "google":
            return model_route(_GOOGLE, method, path, query, prefix, _GEMINI_ACTIONS)
        if publisher != "anthropic" or start != 6:
            raise not_found(method, path)
        raw, action = split_action(path[len(prefix):], path)
        if action not in _CLAUDE_ACTIONS:
            raise not_found(method, path)
        only(method, "POST", path)
        if raw == "count-tokens" and action == "rawPredict":
            return Route(_CLAUDE, dialect=None, errors=anthropic_error)  # model in the body
        return Route(_CLAUDE, model=decode_segment(raw), body=BODY_JSON, dialect="anthropic",
                     prefix=prefix, suffix=":" + action, safe=_CLAUDE_SAFE, errors=anthropic_error)

    def upstream_path(self, route: Route, client_path: str, provider, model: str) -> str:
        path = super().upstream_path(route, client_path, provider, model)
        if "/_aperture_auto_vertex_" in path:
            parts = path.split("/")
            for i in (3, 5):
                if i < len(parts) and parts[i] in (PROJECT_PLACEHOLDER, REGION_PLACEHOLDER):
                    project = parts[i] == PROJECT_PLACEHOLDER
                    value = provider.vertex_project if project else provider.vertex_region
                    if not value:
                        raise GatewayError(
                            "provider %s has no %s in the configuration to replace %s in the path"
                            % (provider.id, "vertex_project" if project else "vertex_region", parts[i]))
                    parts[i] = quote(value, safe="-._~")
            path = "/".join(parts)
        return path

    error_body = staticmethod(google_error)
