"""Grants: table-driven checks of src forms, both config forms, globs and roles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.config import parse_config
from aperture.errors import ConfigError
from aperture.identity import Identity
from aperture.policy import NO_ROLE, Policy, compile_glob, validate_grants

CAP = "tailscale.com/cap/aperture"

ALICE = Identity(login="alice@example.com", source="tailscale")
ALICE_UPPER = Identity(login="Alice@Example.COM", source="tailscale")
BOB = Identity(login="bob@example.com", groups=("group:ml-team",), source="tailscale")
BOB_NO_GROUPS = Identity(login="bob@example.com", source="tailscale")
SCIM = Identity(login="erin@example.com", groups=("engineering@example.com",), source="tailscale")
CI = Identity(login="", tags=("tag:ci-runner",), node_name="ci-1", source="tailscale")
PROD = Identity(login="", tags=("tag:prod",), source="tailscale")
NOBODY = Identity(login="zed@example.com", source="tailscale")


def grant(src, *caps, **extra):
    return {"src": src, "app": {CAP: list(caps)}, **extra}


def policy(*grants, temp=None):
    doc = {"grants": list(grants)}
    if temp is not None:
        doc["temp_grants"] = temp
    return Policy.compile(doc)


# --- globs ------------------------------------------------------------------------

GLOB_TABLE = [
    # glob, fqn, matches
    ("**", "anthropic/claude-opus-4-7", True),
    ("**", "openrouter/qwen/qwen3-coder", True),
    ("anthropic/**", "anthropic/claude-sonnet-4-6", True),
    ("anthropic/**", "openai/gpt-5.4", False),
    ("anthropic/*", "anthropic/claude-sonnet-4-6", True),
    ("openrouter/*", "openrouter/qwen/qwen3-coder", False),  # * stays within a segment
    ("openrouter/**", "openrouter/qwen/qwen3-coder", True),
    ("openrouter/qwen/*", "openrouter/qwen/qwen3-coder", True),
    ("openrouter/*/qwen3-*", "openrouter/qwen/qwen3-coder", True),
    ("openai/gpt-5.4*", "openai/gpt-5.4", True),
    ("openai/gpt-5.4*", "openai/gpt-5.4-mini", True),
    ("openai/gpt-5.4*", "openai/gpt-5x4", False),  # "." is literal
    ("openai/gpt-4*", "openai/gpt-5.4", False),
    ("*/claude-sonnet*", "anthropic/claude-sonnet-4-6", True),
    ("*/claude-sonnet*", "vertex/claude-opus-4-7", False),
    ("*/claude-sonnet*", "a/b/claude-sonnet", False),
    ("openai/gpt-?", "openai/gpt-5", True),
    ("openai/gpt-?", "openai/gpt-55", False),
    ("a/?", "a//", False),  # ? never matches "/"
    ("**/qwen3-coder", "openrouter/qwen/qwen3-coder", True),
    ("gpu-box/qwen3-coder:30b", "gpu-box/qwen3-coder:30b", True),
    ("gpu-box/qwen3-coder:30b", "gpu-box/qwen3-coder:30", False),
    ("a/[x]", "a/[x]", True),  # brackets are literal
    ("a/[x]", "a/x", False),
    ("anthropic/claude-opus-4-7", "anthropic/claude-opus-4-7", True),
]


@pytest.mark.parametrize("glob,fqn,matches", GLOB_TABLE)
def test_glob_table(glob, fqn, matches):
    assert (compile_glob(glob).fullmatch(fqn) is not None) is matches
    # the same through a grant
    p = policy(grant(["*"], {"role": "user"}, {"models": glob}))
    provider, model = fqn.split("/", 1)
    assert (p.check(ALICE, provider, model) is None) is matches


_seg = st.text(alphabet="ab-.:", min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(_seg, min_size=2, max_size=4))
def test_glob_star_star_and_literal_properties(segments):
    fqn = "/".join(segments)
    assert compile_glob("**").fullmatch(fqn)
    assert compile_glob(segments[0] + "/**").fullmatch(fqn)
    assert compile_glob(fqn).fullmatch(fqn)
    single = compile_glob(segments[0] + "/*").fullmatch(fqn)
    assert (single is not None) is (len(segments) == 2)


# --- src forms --------------------------------------------------------------------

SRC_TABLE = [
    # src, identity, matches
    (["*"], ALICE, True),
    (["*"], CI, True),  # everyone includes tagged nodes
    (["alice@example.com"], ALICE, True),
    (["alice@example.com"], ALICE_UPPER, True),  # case-insensitive
    (["ALICE@example.com"], ALICE, True),
    (["alice@example.com"], BOB, False),
    (["tag:ci-runner"], CI, True),
    (["tag:ci-runner"], PROD, False),
    (["tag:ci-runner"], ALICE, False),
    (["group:ml-team"], BOB, True),
    (["group:ml-team"], BOB_NO_GROUPS, False),  # groups only when tailscaled reports them
    (["group:ml-team"], ALICE, False),
    (["group:engineering@example.com"], SCIM, True),
    (["engineering@example.com"], SCIM, True),  # SCIM group written as an email
    (["engineering@example.com"], ALICE, False),
    (["autogroup:member"], ALICE, True),
    (["autogroup:member"], CI, False),
    (["autogroup:tagged"], CI, True),
    (["autogroup:tagged"], ALICE, False),
    (["bob@example.com", "tag:prod"], PROD, True),
    (["bob@example.com", "tag:prod"], NOBODY, False),
    ([], ALICE, False),
    (["tagged-devices"], CI, False),  # the literal profile name is not a source
]


@pytest.mark.parametrize("src,identity,matches", SRC_TABLE)
def test_src_table(src, identity, matches):
    p = policy(grant(src, {"role": "user"}, {"models": "**"}))
    assert (p.role(identity) == "user") is matches
    assert (p.check(identity, "anthropic", "claude-sonnet-4-6") is None) is matches


@pytest.mark.parametrize("src,identity,matches", SRC_TABLE)
def test_src_table_legacy(src, identity, matches):
    p = policy(temp=[{"src": src, "grants": [{"role": "user"}, {"providers": [{"provider": "*", "model": "*"}]}]}])
    assert (p.check(identity, "anthropic", "claude-sonnet-4-6") is None) is matches


# --- roles and models -------------------------------------------------------------------


def test_deny_by_default():
    p = Policy.compile({})
    assert p.role(ALICE) is None
    assert p.check(ALICE, "anthropic", "claude-sonnet-4-6") == NO_ROLE == "access denied: no role granted"


def test_models_without_role_is_denied():
    p = policy(grant(["*"], {"models": "**"}))
    assert p.check(ALICE, "anthropic", "claude-opus-4-7") == "access denied: no role granted"
    assert p.allowed_models(ALICE, []) == []


def test_role_without_models_denies_the_model():
    p = policy(grant(["*"], {"role": "user"}))
    assert p.check(ALICE, "anthropic", "claude-opus-4-7") == "access denied: model anthropic/claude-opus-4-7 not granted"


def test_grants_add_up_across_entries():
    p = policy(
        grant(["*"], {"role": "user"}),
        grant(["alice@example.com"], {"models": "anthropic/**"}),
        grant(["alice@example.com"], {"models": ["openai/gpt-5.4", "openai/gpt-5.4-mini"]}),
    )
    assert p.check(ALICE, "anthropic", "claude-opus-4-7") is None
    assert p.check(ALICE, "openai", "gpt-5.4-mini") is None
    assert p.check(ALICE, "openai", "o3") == "access denied: model openai/o3 not granted"
    assert p.check(BOB, "anthropic", "claude-opus-4-7") == "access denied: model anthropic/claude-opus-4-7 not granted"


@pytest.mark.parametrize("order", [0, 1])
def test_admin_wins_over_user(order):
    grants = [grant(["*"], {"role": "user"}, {"models": "**"}), grant(["alice@example.com"], {"role": "admin"})]
    if order:
        grants.reverse()
    p = policy(*grants)
    assert p.role(ALICE) == "admin"
    assert p.role(BOB) == "user"


def test_role_and_models_in_one_object():
    p = policy(grant(["*"], {"role": "user", "models": "anthropic/**"}))
    assert p.check(ALICE, "anthropic", "x") is None


def test_other_capabilities_and_custom_apps_are_ignored():
    p = Policy.compile({"grants": [{
        "src": ["*"],
        "app": {
            CAP: [{"role": "user"}, {"models": "**"}, {"quotas": [{"bucket": "daily:<user>"}]},
                  {"send_hooks": [{"name": "x", "events": ["pre_request"], "send": ["grants"]}]},
                  {"connectors": ["label:system"]}, {"read_metrics": True}],
            "corp.example/cap/policy": [{"anything": 1}],
        },
    }, {"src": ["bob@example.com"], "app": {"corp.example/cap/policy": [{}]}}]})
    assert p.check(ALICE, "a", "b") is None


def test_tag_only_device():
    p = policy(
        grant(["autogroup:member"], {"role": "user"}, {"models": "**"}),
        grant(["tag:ci-runner"], {"role": "user"}, {"models": "anthropic/claude-haiku*"}),
    )
    assert p.check(CI, "anthropic", "claude-haiku-4-5") is None
    assert p.check(CI, "anthropic", "claude-opus-4-7") == "access denied: model anthropic/claude-opus-4-7 not granted"
    assert p.check(PROD, "anthropic", "claude-haiku-4-5") == NO_ROLE


def test_legacy_form():
    p = policy(temp=[
        {"src": ["*"], "grants": [{"role": "user"}, {"providers": [{"provider": "anthropic-fast", "model": "*"}]}]},
        {"src": ["senior-eng@company.com"], "grants": [{"role": "admin"}, {"providers": [{"provider": "anthropic-power", "model": "*"}]}]},
        {"src": ["*"], "grants": [{"providers": [{"provider": "openrouter", "model": "qwen/*"}]},
                                  {"hook": {"match": {"providers": ["*"]}, "hook": "h", "fields": []}}]},
    ])
    senior = Identity(login="senior-eng@company.com")
    assert p.role(senior) == "admin"
    assert p.check(senior, "anthropic-power", "claude-opus-4-7") is None
    assert p.check(ALICE, "anthropic-power", "claude-opus-4-7") == "access denied: model anthropic-power/claude-opus-4-7 not granted"
    assert p.check(ALICE, "anthropic-fast", "claude-haiku-4-5") is None
    # a legacy model pattern names the whole model: "*" crosses "/"
    assert p.check(ALICE, "openrouter", "qwen/qwen3-coder") is None
    assert p.check(ALICE, "openrouter", "meta/llama") is not None


def test_legacy_without_model_means_every_model():
    p = policy(temp=[{"src": ["*"], "grants": [{"role": "user"}, {"providers": [{"provider": "anthropic"}]}]}])
    assert p.check(ALICE, "anthropic", "claude-opus-4-7") is None


def test_both_forms_add_up():
    p = Policy.compile({
        "grants": [grant(["*"], {"role": "user"})],
        "temp_grants": [{"src": ["*"], "grants": [{"providers": [{"provider": "anthropic", "model": "*"}]}]}],
    })
    assert p.check(ALICE, "anthropic", "x") is None


def test_seed_default_everyone_admin():
    p = policy(grant(["*"], {"role": "admin"}, {"models": "**"}))
    assert p.role(CI) == "admin" and p.role(ALICE) == "admin"


# --- allowed_models and caches ------------------------------------------------------------

CONFIG_TEXT = """{
  "providers": {
    "anthropic": {"baseurl": "https://api.anthropic.com", "apikey": "k1", "authorization": "x-api-key",
                  "models": ["claude-opus-4-7", "claude-sonnet-4-6"], "compatibility": {"anthropic_messages": true}},
    "openai": {"baseurl": "https://api.openai.com", "apikey": "k2", "models": ["gpt-5.4", "gpt-5.4-mini"]},
    "openrouter": {"baseurl": "https://openrouter.ai/api/", "models": ["qwen/qwen3-coder"]},
  },
}"""


def test_allowed_models_in_config_order():
    config = parse_config(CONFIG_TEXT, log_warnings=False)
    p = policy(grant(["*"], {"role": "user"}, {"models": "*/claude-sonnet*"}, {"models": "openai/gpt-5.4*"}),
               grant(["bob@example.com"], {"models": "openrouter/**"}))
    got = [(prov.id, m) for prov, m in p.allowed_models(ALICE, config.providers)]
    assert got == [("anthropic", "claude-sonnet-4-6"), ("openai", "gpt-5.4"), ("openai", "gpt-5.4-mini")]
    got = [(prov.id, m) for prov, m in p.allowed_models(BOB, config.providers.values())]
    assert ("openrouter", "qwen/qwen3-coder") in got
    assert p.allowed_models(NOBODY, config.providers) != []  # "*" matches everyone
    assert Policy.compile({}).allowed_models(ALICE, config.providers) == []


def test_decisions_are_cached_and_bounded(monkeypatch):
    import aperture.policy as mod

    monkeypatch.setattr(mod, "_DECISION_CACHE_SIZE", 8)
    p = policy(grant(["*"], {"role": "user"}, {"models": "a/**"}))
    for i in range(50):
        assert p.check(ALICE, "a", f"m{i}") is None
        assert p.check(ALICE, "b", f"m{i}") == f"access denied: model b/m{i} not granted"
    assert len(p._decisions) <= 8
    assert p.check(ALICE, "a", "m49") is None


def test_access_cache_is_bounded(monkeypatch):
    import aperture.policy as mod

    monkeypatch.setattr(mod, "_ACCESS_CACHE_SIZE", 4)
    p = policy(grant(["*"], {"role": "user"}, {"models": "**"}))
    for i in range(20):
        assert p.role(Identity(login=f"u{i}@x")) == "user"
    assert len(p._access) <= 4


def test_identity_fields_matter_for_the_cache():
    p = policy(grant(["group:ml-team"], {"role": "user"}, {"models": "**"}))
    assert p.check(BOB_NO_GROUPS, "a", "b") == NO_ROLE
    assert p.check(BOB, "a", "b") is None
    assert p.check(BOB_NO_GROUPS, "a", "b") == NO_ROLE


# --- validation ------------------------------------------------------------------------------

PROBLEM_TABLE = [
    ({"grants": {}}, "grants: must be a list of grants, not an object"),
    ({"grants": ["x"]}, "grants[0]: must be an object with src and app, not a string"),
    ({"grants": [{"app": {CAP: []}}]}, "grants[0].src: required"),
    ({"grants": [{"src": "*", "app": {CAP: []}}]}, "grants[0].src: must be a list of sources, not a string"),
    ({"grants": [{"src": ["*", 3], "app": {CAP: []}}]}, "grants[0].src[1]: must be a string, not a number"),
    ({"grants": [{"src": [""], "app": {CAP: []}}]}, "grants[0].src[0]: must not be empty"),
    ({"grants": [{"src": ["tag:"], "app": {CAP: []}}]}, "grants[0].src[0]: tag: needs a name (tag:NAME)"),
    ({"grants": [{"src": ["group:"], "app": {CAP: []}}]}, "grants[0].src[0]: group: needs a name (group:NAME)"),
    ({"grants": [{"src": ["user:bob"], "app": {CAP: []}}]}, "grants[0].src[0]: unsupported source"),
    ({"grants": [{"src": ["*"]}]}, "grants[0].app: required"),
    ({"grants": [{"src": ["*"], "app": []}]}, "grants[0].app: must be an object, not a list"),
    ({"grants": [{"src": ["*"], "app": {CAP: {}}}]},
     'grants[0].app["tailscale.com/cap/aperture"]: must be a list of capability objects, not an object'),
    ({"grants": [{"src": ["*"], "app": {CAP: [{"role": "owner"}]}}]},
     'grants[0].app["tailscale.com/cap/aperture"][0].role: must be "admin" or "user"'),
    ({"grants": [{"src": ["*"], "app": {CAP: [{"models": 5}]}}]},
     'grants[0].app["tailscale.com/cap/aperture"][0].models: must be a glob string, not a number'),
    ({"grants": [{"src": ["*"], "app": {CAP: [{"models": ["a/b", ""]}]}}]},
     'grants[0].app["tailscale.com/cap/aperture"][0].models[1]: must not be empty'),
    ({"grants": [{"src": ["*"], "app": {CAP: [{"models": "claude-*"}]}}]},
     'grants[0].app["tailscale.com/cap/aperture"][0].models: matches no model'),
    ({"grants": [{"src": ["*"], "app": {CAP: ["role"]}}]},
     'grants[0].app["tailscale.com/cap/aperture"][0]: must be an object, not a string'),
    ({"temp_grants": [{"src": ["*"]}]}, "temp_grants[0].grants: must be a list of grant objects, not null"),
    ({"temp_grants": [{"src": ["*"], "grants": [{"providers": {}}]}]},
     "temp_grants[0].grants[0].providers: must be a list"),
    ({"temp_grants": [{"src": ["*"], "grants": [{"providers": [{"model": "*"}]}]}]},
     "temp_grants[0].grants[0].providers[0].provider: must be a provider id"),
    ({"temp_grants": [{"src": ["*"], "grants": [{"role": "root"}]}]},
     'temp_grants[0].grants[0].role: must be "admin" or "user"'),
    ([], "top level: must be an object"),
]


@pytest.mark.parametrize("doc,problem", PROBLEM_TABLE)
def test_problems(doc, problem):
    problems = validate_grants(doc)
    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(ConfigError) as e:
        Policy.compile(doc)
    assert e.value.problems == problems


def test_every_problem_is_reported():
    doc = {"grants": [{"src": ["tag:"], "app": {CAP: [{"role": "x"}, {"models": 1}]}}, {"src": [""], "app": {}}]}
    assert len(validate_grants(doc)) == 4


def test_problem_lines_do_not_echo_values():
    doc = {"grants": [{"src": ["*"], "app": {CAP: [{"role": "sk-ant-SECRET"}]}}]}
    assert "sk-ant-SECRET" not in "\n".join(validate_grants(doc))


def test_valid_documents_have_no_problems():
    assert validate_grants({}) == []
    assert validate_grants({"grants": None, "providers": {}}) == []
    assert validate_grants({"grants": [grant(["*"], {"role": "admin"}, {"models": "**"})]}) == []
