"""The management endpoints, as functions of (identity, state) -> (status, JSON body).

The HTTP layer routes to these and serializes the body; errors are raised as
`aperture.errors.GatewayError`s, which carry their status.

    GET /v1/models     models(identity, config, policy)
    GET /api/providers providers(identity, config, policy)
    GET /api/whoami    whoami(identity, policy)
    GET /api/config    get_config(identity, store)          admin only
    PUT /api/config    put_config(identity, store, body)    admin only
    GET /bedrock/inference-profiles  bedrock_inference_profiles(identity, config, policy, query)

What a caller may see (reference aperture.md §2.1, §2.3): `/v1/models` and
`/api/providers` list only the models the caller's grants allow; a caller with
no role sees empty lists (and `/api/whoami` says why). `/v1/models` lists each
bare model id once, attributed to the first provider in config order that
serves it and is granted (the provider id is in `owned_by` and
`metadata.provider`), with its `pricing` (per-token USD strings, reference
aperture.md §2.1) when the model has a price (aperture.pricing); a model
without one has no `pricing`, never zeros.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from aperture import pricing
from aperture.config import COMPATIBILITY_FLAGS
from aperture.errors import BadRequest, Forbidden

if TYPE_CHECKING:
    from aperture.config import Config
    from aperture.configstore import ConfigStore
    from aperture.identity import Identity
    from aperture.policy import Policy

__all__ = ["models", "providers", "whoami", "get_config", "put_config",
           "bedrock_inference_profiles"]

_FLAGS = tuple(sorted(COMPATIBILITY_FLAGS))


def models(identity: Identity, config: Config, policy: Policy) -> tuple[int, dict]:
    data: list[dict[str, Any]] = []
    seen: set[str] = set()
    book = pricing.book_for(config)
    for provider, model in policy.allowed_models(identity, config.providers):
        if model in seen:
            continue
        seen.add(model)
        entry = {
            "id": model,
            "object": "model",
            "created": 0,
            "owned_by": provider.id,
            "metadata": {"provider": {"id": provider.id, "name": provider.name or provider.id}},
        }
        price = book.price(provider.id, model)
        if price is not None:
            entry["pricing"] = pricing.pricing_fields(price)
        data.append(entry)
    return 200, {"object": "list", "data": data}


def providers(identity: Identity, config: Config, policy: Policy) -> tuple[int, list]:
    granted: dict[str, list[str]] = {}
    for provider, model in policy.allowed_models(identity, config.providers):
        granted.setdefault(provider.id, []).append(model)
    out = []
    for pid, names in granted.items():
        p = config.providers[pid]
        flags = set(_FLAGS) | p.compatibility
        out.append(
            {
                "id": p.id,
                "name": p.name or p.id,
                "description": p.description,
                "models": names,
                "compatibility": {flag: flag in p.compatibility for flag in sorted(flags)},
            }
        )
    return 200, out


def whoami(identity: Identity, policy: Policy) -> tuple[int, dict]:
    """Who the gateway takes the caller for, the role and model globs their
    grants give (config and tailnet policy file together; no globs without a
    role, since they give nothing then), and the capability objects the
    tailnet policy file grants them (`tailnet_grants`)."""
    access = policy.access(identity)
    return 200, {
        "login": identity.login,
        "display_name": identity.display_name,
        "node": {"name": identity.node_name, "id": identity.node_id},
        "tags": list(identity.tags),
        "groups": list(identity.groups),
        "role": access.role,
        "models": list(access.models) if access.role is not None else [],
        "tailnet_grants": [orjson.loads(text) for text in identity.tailnet_grants],
        "source": identity.source,
    }


def _require_admin(identity: Identity, store: ConfigStore) -> None:
    from aperture.configstore import ADMIN_REQUIRED

    if store.current[1].role(identity) != "admin":
        raise Forbidden(ADMIN_REQUIRED)


def get_config(identity: Identity, store: ConfigStore) -> tuple[int, dict]:
    _require_admin(identity, store)
    return 200, store.get()


def put_config(identity: Identity, store: ConfigStore, body: bytes) -> tuple[int, dict]:
    _require_admin(identity, store)  # before reading the body: nothing for non-admins
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"body is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(doc, dict):
        raise BadRequest('body must be a JSON object {"config": "...", "hash": "..."}')
    return 200, store.put(doc, identity)


# --- Bedrock's ListInferenceProfiles ------------------------------------------------

_PROFILE_TYPES = ("SYSTEM_DEFINED", "APPLICATION")


def _bedrock_region(provider) -> str:
    """The AWS region of a Bedrock provider's baseurl (bedrock-runtime.REGION.amazonaws.com)."""
    parts = provider.host.split(".")
    if len(parts) >= 4 and parts[0].startswith("bedrock") and parts[-2:] == ["amazonaws", "com"]:
        return parts[1]
    return "us-east-1"


def bedrock_inference_profiles(identity: Identity, config: Config, policy: Policy,
                               query: str) -> tuple[int, dict]:
    """`GET /bedrock/inference-profiles` (the Bedrock control plane's
    ListInferenceProfiles, which Claude Code calls in Bedrock mode): the models
    of the Bedrock providers that the caller's grants allow, each as a
    system-defined inference profile, in the shape the AWS SDKs read. All of
    them in one page (no `nextToken`); `?type=APPLICATION` lists none."""
    from urllib.parse import parse_qs

    wanted = parse_qs(query).get("type", [None])[0] if query else None
    if wanted is not None and wanted not in _PROFILE_TYPES:
        raise BadRequest("1 validation error detected: Value '%s' at 'typeEquals' failed to "
                         "satisfy constraint: Member must satisfy enum value set: [%s]"
                         % (wanted, ", ".join(_PROFILE_TYPES)))
    from aperture.routing import BEDROCK_FLAGS, without_region

    summaries = []
    seen: set[str] = set()
    if wanted != "APPLICATION":
        for provider, model in policy.allowed_models(identity, config.providers):
            if provider.compatibility.isdisjoint(BEDROCK_FLAGS) or model in seen:
                continue
            seen.add(model)
            region = _bedrock_region(provider)
            foundation = without_region(model.rpartition("/")[2])
            summaries.append({
                "inferenceProfileName": model,
                "description": "%s through aperture provider %s" % (model, provider.id),
                "inferenceProfileArn": "arn:aws:bedrock:%s::inference-profile/%s" % (region, model),
                "models": [{"modelArn": "arn:aws:bedrock:%s::foundation-model/%s"
                                        % (region, foundation)}],
                "inferenceProfileId": model,
                "status": "ACTIVE",
                "type": "SYSTEM_DEFINED",
            })
    return 200, {"inferenceProfileSummaries": summaries}
