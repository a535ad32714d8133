"""Grants from the tailnet policy file: WhoIs `CapMap` -> Identity.tailnet_grants -> Policy."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile

import pytest

from aperture.errors import Forbidden
from aperture.identity import Identity
from aperture.identity.sources import make_source
from aperture.identity.whois import NO_USER_NOR_TAGS, WhoisSource, identity_from_whois
from aperture.mgmt import whoami
from aperture.policy import APERTURE_CAP, Policy
from tests.fakes.tailscaled import FakeTailscaled, tagged, user

CUSTOM = "example.com/cap/aperture"

CONFIG = {"grants": [
    {"src": ["alice@example.com"], "app": {APERTURE_CAP: [{"role": "user"},
                                                         {"models": "anthropic/claude-haiku-4-5"}]}},
]}


def alice(cap_map=None) -> dict:
    return user("alice@example.com", "Alice", node_name="alice-laptop", cap_map=cap_map)


# --- reading CapMap ----------------------------------------------------------------------


def test_capmap_under_the_aperture_capability_becomes_tailnet_grants():
    doc = alice({APERTURE_CAP: [{"role": "user"}, {"models": "openai/**", "extra": [1, 2]}],
                 "example.org/other": [{"ignored": True}]})
    ident = identity_from_whois(doc)
    assert ident.tailnet_grants == ('{"role":"user"}', '{"extra":[1,2],"models":"openai/**"}')


def test_the_capability_name_is_configurable():
    doc = alice({APERTURE_CAP: [{"role": "admin"}], CUSTOM: [{"role": "user"}]})
    assert identity_from_whois(doc, CUSTOM).tailnet_grants == ('{"role":"user"}',)
    assert identity_from_whois(doc).tailnet_grants == ('{"role":"admin"}',)
    assert identity_from_whois(alice(), CUSTOM).tailnet_grants == ()


def test_a_tagged_node_carries_its_tailnet_grants_too():
    doc = tagged(["tag:ci"], cap_map={APERTURE_CAP: [{"role": "user"}]})
    ident = identity_from_whois(doc)
    assert ident.login == "" and ident.tags == ("tag:ci",)
    assert ident.tailnet_grants == ('{"role":"user"}',)


def test_same_grants_in_any_key_order_make_one_identity():
    a = identity_from_whois(alice({APERTURE_CAP: [{"role": "user", "models": "x/y"}]}))
    b = identity_from_whois(alice({APERTURE_CAP: [{"models": "x/y", "role": "user"}]}))
    assert a.tailnet_grants == b.tailnet_grants


@pytest.mark.parametrize("cap_map,words", [
    ([1], "CapMap is not an object"),
    ({APERTURE_CAP: {"role": "user"}}, "is not a list"),
])
def test_malformed_capmap_is_a_malformed_answer(cap_map, words):
    doc = alice()
    doc["CapMap"] = cap_map
    with pytest.raises(ValueError, match=words):
        identity_from_whois(doc)


def test_capmap_missing_or_null_is_no_grants():
    doc = alice()
    del doc["CapMap"]
    assert identity_from_whois(doc).tailnet_grants == ()
    doc["CapMap"] = None
    assert identity_from_whois(doc).tailnet_grants == ()


def test_a_node_without_user_or_tags_is_refused_saying_so():
    doc = alice({APERTURE_CAP: [{"role": "admin"}]})
    doc["UserProfile"]["LoginName"] = ""
    with pytest.raises(Forbidden) as e:
        identity_from_whois(doc)
    assert e.value.message == NO_USER_NOR_TAGS == "tailnet peer has neither a user nor tags"


# --- merging with the config's grants ---------------------------------------------------------


def ident(*caps: str, login: str = "alice@example.com", tags: tuple[str, ...] = ()) -> Identity:
    return Identity(login=login, tags=tags, source="tailscale", tailnet_grants=caps)


def test_tailnet_grants_add_to_the_config_grants():
    policy = Policy.compile(CONFIG)
    plain = ident()
    extended = ident('{"role":"user"}', '{"models":"openai/gpt-5.4-mini"}')
    assert policy.check(plain, "openai", "gpt-5.4-mini") == \
        "access denied: model openai/gpt-5.4-mini not granted"
    assert policy.check(extended, "openai", "gpt-5.4-mini") is None
    assert policy.check(extended, "anthropic", "claude-haiku-4-5") is None
    assert policy.check(extended, "anthropic", "claude-sonnet-4-6") == \
        "access denied: model anthropic/claude-sonnet-4-6 not granted"
    assert policy.access(extended).models == ("anthropic/claude-haiku-4-5", "openai/gpt-5.4-mini")


def test_a_role_from_the_policy_file_alone_is_enough():
    policy = Policy.compile({"grants": []})
    caller = ident('{"role":"user"}', '{"models":"openai/**"}', login="bob@example.com")
    assert policy.role(caller) == "user"
    assert policy.check(caller, "openai", "gpt-5.4") is None
    assert policy.check(ident(login="bob@example.com"), "openai", "gpt-5.4") == \
        "access denied: no role granted"


def test_admin_from_the_policy_file_wins_and_models_without_role_give_nothing():
    policy = Policy.compile(CONFIG)
    assert policy.role(ident('{"role":"admin"}')) == "admin"
    nobody = ident('{"models":"**"}', login="eve@example.com")
    assert policy.check(nobody, "openai", "gpt-5.4") == "access denied: no role granted"


def test_the_same_grant_in_both_places_gives_nothing_more():
    policy = Policy.compile(CONFIG)
    twice = ident('{"role":"user"}', '{"models":"anthropic/claude-haiku-4-5"}')
    assert policy.access(twice).models == policy.access(ident()).models == (
        "anthropic/claude-haiku-4-5",)
    assert policy.role(twice) == "user"


def test_read_metrics_from_the_policy_file():
    policy = Policy.compile({"grants": []})
    assert policy.may_read_metrics(ident('{"read_metrics":true}', login="", tags=("tag:prom",)))
    assert not policy.may_read_metrics(ident(login="", tags=("tag:prom",)))


def test_a_bad_capability_object_is_left_out_and_logged(caplog):
    policy = Policy.compile({"grants": []})
    caller = ident('{"role":"owner"}', '{"models":"nomodel"}', '{"role":"user"}',
                   '{"models":"openai/**"}', '"text"')
    with caplog.at_level(logging.WARNING, logger="aperture.policy"):
        access = policy.access(caller)
    assert access.role == "user" and access.models == ("openai/**",)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert 'grant {"role":"owner"} from the tailnet policy file for alice@example.com ignored' in text
    assert 'must be "admin" or "user"' in text
    assert "matches no model" in text
    assert "must be an object" in text


def test_whoami_shows_tailnet_grants_and_the_merged_models():
    policy = Policy.compile(CONFIG)
    status, body = whoami(ident('{"role":"user"}', '{"models":"openai/gpt-5.4-mini"}'), policy)
    assert status == 200
    assert body["role"] == "user"
    assert body["models"] == ["anthropic/claude-haiku-4-5", "openai/gpt-5.4-mini"]
    assert body["tailnet_grants"] == [{"role": "user"}, {"models": "openai/gpt-5.4-mini"}]


# --- through the LocalAPI stand-in ---------------------------------------------------------------


@pytest.fixture
def fake():
    with tempfile.TemporaryDirectory(prefix="ts-") as d:
        f = FakeTailscaled(os.path.join(d, "tailscaled.sock"), {
            "127.0.0.2": alice({CUSTOM: [{"role": "user"}, {"models": "openai/**"}],
                                APERTURE_CAP: [{"role": "admin"}]}),
        })
        with f.running():
            yield f


def test_whois_source_reads_the_configured_capability(fake):
    src = make_source("tailscale", tailscaled_socket=fake.socket_path, grants_capability=CUSTOM)
    assert isinstance(src, WhoisSource) and src.capability == CUSTOM
    got = asyncio.run(src.resolve(("127.0.0.2", 1000), []))
    assert got.tailnet_grants == ('{"role":"user"}', '{"models":"openai/**"}')
    default = make_source("tailscale", tailscaled_socket=fake.socket_path)
    assert asyncio.run(default.resolve(("127.0.0.2", 1000), [])).tailnet_grants == (
        '{"role":"admin"}',)


@pytest.mark.parametrize("name", ["", "  ", "example.com/cap/a b"])
def test_a_bad_capability_name_is_refused(name):
    with pytest.raises(ValueError, match="grants capability"):
        make_source("tailscale", tailscaled_socket="/nowhere", grants_capability=name)


def test_lookups_are_counted_by_result(fake):
    src = WhoisSource(fake.socket_path)
    asyncio.run(src.resolve(("127.0.0.2", 1), []))
    with pytest.raises(Forbidden):
        asyncio.run(src.resolve(("127.0.0.77", 1), []))
    assert src.lookup_results == {"found": 1, "not_a_peer": 1, "refused": 0, "unavailable": 0}
    assert src.lookups == 2
