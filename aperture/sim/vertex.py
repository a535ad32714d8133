"""Vertex AI (reference/wire-formats.md §5): Claude and Gemini under Google
Cloud resource paths. Gemini bodies are answered by `aperture.sim.gemini`
(with Vertex's usage and errors); this module is the Claude glue.

Routes, `{v}` = `v1` or `v1beta1`, `R` = `/{v}/projects/{p}/locations/{l}/publishers`:

============================================================  ==========================
``POST R/google/models/{m}:generateContent``                  Gemini JSON
``POST R/google/models/{m}:streamGenerateContent``            Gemini stream (`?alt=sse`
                                                              or the JSON array)
``POST R/google/models/{m}:countTokens``                      Gemini count
``POST R/anthropic/models/{m}:rawPredict``                    Claude: a Messages body
``POST R/anthropic/models/{m}:streamRawPredict``              without `model`, answered
                                                              as Anthropic answers it
                                                              (SSE when `stream` is true)
``POST R/anthropic/models/count-tokens:rawPredict``           ``{"input_tokens": N}``
                                                              (the model in the body)
============================================================  ==========================

Claude bodies must carry `anthropic_version` and no `model` (a 400
`invalid_request_error` otherwise); count-tokens bodies carry both. The
version is "vertex-2023-10-16" (reference §5.3), or an Anthropic API version
date such as "2023-06-01": the anthropic SDK 2.x sends its API version there.
The answers are byte for byte Anthropic's for the same request with the
path's model, and so is their usage: `expected_usage("vertex_anthropic",
body)` is `expected_usage("anthropic", body)`.

The credential is `Authorization: Bearer <token>`. A project or location
still spelled `_aperture_auto_vertex_project_id_` /
`_aperture_auto_vertex_region_` (the placeholders a gateway in front must
replace) is refused as Vertex refuses a project that does not exist or may
not be used: 403 `PERMISSION_DENIED`.

Errors the platform decides (credentials 401, permission 403, unknown path
404, method 405, quota 429) are Google's `{"error": {"code", "message",
"status"}}`; errors about a Claude body (400, 5xx, 529) are Anthropic's
(reference §9 leaves the envelope open; this follows who decides the error).
"""

from __future__ import annotations

from functools import partial

from aperture.sim import anthropic, gemini
from aperture.sim.common import anthropic_version_ok
from aperture.sim.routes import Call, Reject, Reply, Route, Streamed

NAME = "vertex"
ANTHROPIC_VERSION = "vertex-2023-10-16"
PLACEHOLDER_PROJECT = "_aperture_auto_vertex_project_id_"
PLACEHOLDER_REGION = "_aperture_auto_vertex_region_"
_BASE = "/{version:v1|v1beta1}/projects/{project}/locations/{location}/publishers/"
_PLATFORM_STATUSES = frozenset({401, 403, 404, 405, 429})


def check_resource(call: Call) -> None:
    """Refuse the placeholder project or location as an unknown project."""
    params = call.params
    if params["project"] == PLACEHOLDER_PROJECT or params["location"] == PLACEHOLDER_REGION:
        start = call.path.find("/projects/")
        resource = call.path[start + 1:].partition(":")[0]
        raise Reject(403, "Permission 'aiplatform.endpoints.predict' denied on resource "
                          "'//aiplatform.googleapis.com/%s' (or it may not exist)." % resource,
                     code="PERMISSION_DENIED")


def error_response(status: int, message: str | None, seq: int, param: str | None = None,
                   code: str | None = None) -> tuple[int, list, bytes]:
    """Claude routes: Google's shape for platform errors, Anthropic's for the rest."""
    if status in _PLATFORM_STATUSES:
        return gemini.google_error(status, message, code if code and code.isupper() else None, vertex=True)
    return anthropic.error_response(status, message, seq, param, code)


# -- Claude ---------------------------------------------------------------------------


def _check_version(request: dict) -> None:
    version = request.get("anthropic_version")
    if version is None:
        raise Reject(400, "anthropic_version: Field required")
    if not anthropic_version_ok(version, ANTHROPIC_VERSION):
        raise Reject(400, "anthropic_version: Input should be '%s'" % ANTHROPIC_VERSION)


def check_claude(call: Call) -> None:
    check_resource(call)
    request = call.request
    _check_version(request)
    if "model" in request:
        raise Reject(400, "model: Extra inputs are not permitted")
    problem = anthropic.validate({**request, "model": call.model_param()})
    if problem is not None:
        raise Reject(400, problem)


def raw_predict(call: Call) -> Reply | Streamed:
    """`:rawPredict` and `:streamRawPredict`: Anthropic's answer; it streams when `stream` is true."""
    return anthropic.answer({**call.request, "model": call.model_param()}, call)


def check_count_tokens(call: Call) -> None:
    check_resource(call)
    _check_version(call.request)
    problem = anthropic.validate(call.request, count_tokens=True)
    if problem is not None:
        raise Reject(400, problem)


def count_tokens(call: Call) -> Reply:
    return anthropic.count_tokens(call)


def _claude(suffix: str, action, check, model: str = "model") -> Route:
    return Route("POST", _BASE + "anthropic/models/" + suffix, action, check, model=model)


# -- Gemini -----------------------------------------------------------------------------


def check_gemini(call: Call) -> None:
    check_resource(call)
    gemini.check_generate(call)


def _gemini(verb: str, action, check) -> Route:
    return Route("POST", _BASE + "google/models/{model}:" + verb, partial(action, vertex=True), check,
                 model="model", errors=gemini.vertex_error_response)


ROUTES = (
    _claude("{model}:rawPredict", raw_predict, check_claude),
    _claude("{model}:streamRawPredict", raw_predict, check_claude),
    _claude("count-tokens:rawPredict", count_tokens, check_count_tokens, model="body"),
    _gemini("generateContent", gemini.generate, check_gemini),
    _gemini("streamGenerateContent", gemini.stream_generate, check_gemini),
    _gemini("countTokens", gemini.count_tokens, check_resource),
)


def _anthropic_usage(request: dict, output_tokens: int) -> dict:
    return anthropic.plan(request, output_tokens).usage


USAGE = {"vertex_anthropic": _anthropic_usage, "vertex_gemini": gemini.vertex_usage}
