"""Stored Responses API responses: which provider a sub-resource request goes to."""

from __future__ import annotations

import pytest

from aperture.config import parse_config
from aperture.errors import Forbidden, NotFound
from aperture.formats import BY_NAME
from aperture.gateway import Snapshot
from aperture.identity import Identity
from aperture.policy import Policy
from aperture.responses import StoredResponses

CAP = "tailscale.com/cap/aperture"
ALICE = Identity(login="alice@example.com")
BOB = Identity(login="bob@example.com")
ADMIN = Identity(login="ops@example.com")
NOBODY = Identity(login="zed@example.com")


def snapshot(*providers: str) -> Snapshot:
    config = parse_config("""{"providers": {%s}}""" % ", ".join(
        '"%s": {"baseurl": "https://%s.example", "models": ["gpt-5.4", "gpt-5.4-mini"],'
        ' "compatibility": {"openai_responses": true}}' % (p, p) for p in providers))
    policy = Policy.compile({"grants": [
        {"src": ["alice@example.com", "bob@example.com"],
         "app": {CAP: [{"role": "user"}, {"models": "*/gpt-5.4"}]}},
        {"src": ["ops@example.com"], "app": {CAP: [{"role": "admin"}, {"models": "**"}]}},
    ]})
    return Snapshot(config, policy, {})


def route(response_id: str = "resp_1"):
    return BY_NAME["openai_responses"].match("GET", "/v1/responses/" + response_id, "")


def test_a_remembered_response_goes_to_its_provider():
    stored = StoredResponses()
    stored.remember("resp_1", "azure", "gpt-5.4", ALICE.principal)
    provider, model = stored.route(route(), ALICE, snapshot("openai", "azure"))
    assert (provider.id, model) == ("azure", "gpt-5.4")
    # an admin may read anyone's; another user gets the answer of an unknown id
    assert stored.route(route(), ADMIN, snapshot("openai", "azure"))[0].id == "azure"
    with pytest.raises(NotFound, match="response resp_1 not found$"):
        stored.route(route(), BOB, snapshot("openai", "azure"))


def test_the_store_is_asked_for_ids_this_worker_did_not_see():
    asked = []

    def lookup(rid):
        asked.append(rid)
        return ("openai", "gpt-5.4", "alice@example.com") if rid == "resp_old" else None

    stored = StoredResponses(lookup)
    assert stored.route(route("resp_old"), ALICE, snapshot("openai", "azure"))[0].id == "openai"
    with pytest.raises(NotFound, match="no record of the provider that made it, and 2 providers"):
        stored.route(route("resp_new"), ALICE, snapshot("openai", "azure"))
    assert asked == ["resp_old", "resp_new"]


def test_an_unknown_id_goes_to_the_only_responses_provider():
    provider, model = StoredResponses().route(route("resp_x"), ALICE, snapshot("openai"))
    assert (provider.id, model) == ("openai", "")
    with pytest.raises(Forbidden, match="access denied: no role granted"):
        StoredResponses().route(route("resp_x"), NOBODY, snapshot("openai"))
    with pytest.raises(NotFound, match="and 0 providers serve the openai_responses API format"):
        StoredResponses().route(route("resp_x"), ALICE, snapshot())


def test_grants_apply_to_the_stored_responses_model():
    stored = StoredResponses()
    stored.remember("resp_1", "openai", "gpt-5.4-mini", ALICE.principal)
    with pytest.raises(Forbidden, match="model openai/gpt-5.4-mini not granted"):
        stored.route(route(), ALICE, snapshot("openai"))


def test_a_response_of_a_provider_no_longer_configured():
    stored = StoredResponses()
    stored.remember("resp_1", "gone", "gpt-5.4", ALICE.principal)
    with pytest.raises(NotFound, match="made by provider gone, which no longer serves"):
        stored.route(route(), ALICE, snapshot("openai"))


def test_the_recent_map_is_bounded():
    stored = StoredResponses(size=3)
    for i in range(5):
        stored.remember("resp_%d" % i, "openai", "gpt-5.4", "u")
    assert [stored.owner("resp_%d" % i) is not None for i in range(5)] == [False, False, True, True, True]
