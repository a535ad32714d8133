import dataclasses
import json
import logging
import pathlib

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.config import (
    FORMAT_FLAGS,
    Config,
    Provider,
    load_config,
    parse_config,
    validate_document,
)
from aperture.config_cli import check_config
from aperture.default_config import default_config_text
from aperture.errors import ConfigError

# A realistic default config in the style Aperture ships: OpenAI and Anthropic
# with common models, the "*" admin grant with every model, the label:system
# connector grant, and a legacy temp_grants section as the seed documents wrote it.
SHIPPED_DEFAULT = """\
// Aperture configuration (HuJSON).
{
  "providers": {
    "openai": {
      "name": "OpenAI",
      "baseurl": "https://api.openai.com",
      "apikey": "sk-EXAMPLE-openai",
      "models": ["gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex",],
      "compatibility": { "openai_chat": true, "openai_responses": true, },
      "cost_basis": "openai",
    },
    "anthropic": {
      "name": "Anthropic",
      "baseurl": "https://api.anthropic.com",
      "apikey": "sk-ant-EXAMPLE",
      "authorization": "x-api-key",   /* Anthropic wants x-api-key */
      "models": [
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
      ],
      "compatibility": { "anthropic_messages": true },
      "cost_basis": "anthropic",
    },
  },
  "grants": [
    // Everyone is an admin with every model until explicit admins exist.
    // Remove this grant once you have granted admin to named people.
    { "src": ["*"],
      "app": { "tailscale.com/cap/aperture": [
        { "role": "admin" },
        { "models": "**" },
      ] } },
    // The system connector (aperture_list_connectors) for everyone.
    { "src": ["*"],
      "app": { "tailscale.com/cap/aperture": [ { "connectors": ["label:system"] } ] } },
  ],
  // temp_grants are similar to the grants section in the tailnet policy file.
  "temp_grants": [
    { "src": ["*"],
      "grants": [
        { "role": "admin" },
        { "providers": [ { "provider": "*", "model": "*" } ] },
      ] },
    { "src": ["senior-eng@company.com"],
      "grants": [ { "providers": [ { "provider": "anthropic", "model": "*" } ] } ] },
  ],
}
"""


def _doc(**provider) -> dict:
    return {"providers": {"p": provider}}


def _base(**overrides) -> dict:
    provider = {"baseurl": "https://api.example.com", "apikey": "k", "models": ["m"]}
    provider.update(overrides)
    return provider


def _problems(doc) -> list[str]:
    problems = validate_document(doc)
    assert all(isinstance(p, str) and "\n" not in p for p in problems)
    return problems


def _one(**overrides) -> Provider:
    import orjson

    return parse_config(orjson.dumps(_doc(**_base(**overrides))).decode()).providers["p"]


# --- realistic configs load -------------------------------------------------


def test_shipped_default_loads():
    config = parse_config(SHIPPED_DEFAULT, source="aperture.hujson")
    assert list(config.providers) == ["openai", "anthropic"]
    openai, anthropic = config.providers["openai"], config.providers["anthropic"]
    assert openai.name == "OpenAI"
    assert (openai.scheme, openai.host, openai.port, openai.base_path) == ("https", "api.openai.com", 443, "")
    assert openai.authorization == "bearer"
    assert openai.auth_mode == "override"
    assert openai.apikey == "sk-EXAMPLE-openai"
    assert openai.compatibility == {"openai_chat", "openai_responses"}
    assert openai.cost_basis == "openai"
    assert anthropic.authorization == "x-api-key"
    assert anthropic.compatibility == {"anthropic_messages"}
    assert anthropic.models == ("claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5")
    assert anthropic.speaks("anthropic_messages") and not anthropic.speaks("openai_chat")
    assert openai.speaks("openai_chat") and openai.speaks("openai_responses")
    assert not openai.speaks("anthropic_messages")
    # Other sections are kept exactly as parsed.
    assert config.document["grants"][0]["app"]["tailscale.com/cap/aperture"] == [{"role": "admin"}, {"models": "**"}]
    assert config.document["grants"][1]["app"]["tailscale.com/cap/aperture"][0] == {"connectors": ["label:system"]}
    assert config.document["temp_grants"][1]["src"] == ["senior-eng@company.com"]
    assert config.text == SHIPPED_DEFAULT
    assert config.source == "aperture.hujson"
    assert config.warnings == ()


def test_reference_example_loads():
    text = """{
      "providers": {
        "gpu-box": {                        // self-hosted on the tailnet
          "baseurl": "http://100.101.102.103:8000",
          "models": ["qwen3-coder:30b"]
        },
        "claude-subs": {
          "baseurl": "https://api.anthropic.com",
          "authorization": "x-api-key",
          "auth_mode": "passthrough",
          "models": ["claude-opus-4-7"],
          "compatibility": { "anthropic_messages": true }
        },
        "openrouter": {
          "baseurl": "https://openrouter.ai/api/",
          "apikey": "sk-or-EXAMPLE",
          "models": ["qwen/qwen3-235b-a22b-2507"]
        }
      }
    }"""
    config = parse_config(text)
    gpu = config.providers["gpu-box"]
    assert (gpu.scheme, gpu.host, gpu.port, gpu.base_path) == ("http", "100.101.102.103", 8000, "")
    assert gpu.compatibility == {"openai_chat"}
    assert gpu.apikey is None
    subs = config.providers["claude-subs"]
    assert subs.auth_mode == "passthrough" and subs.apikey is None
    router = config.providers["openrouter"]
    assert router.base_path == "/api"
    assert router.models == ("qwen/qwen3-235b-a22b-2507",)
    # gpu-box has no key in override mode: a warning, not an error.
    assert len(config.warnings) == 1 and "gpu-box" in config.warnings[0]


def test_seed_document_shapes_load():
    text = """{
      "providers": {
        "anthropic": {
          "baseurl": "https://api.anthropic.com",
          "authorization": {"type": "x-api-key", "value": "sk-ant-SEED"},
          "models": ["claude-sonnet-4-5"],
          "compatibility": {"anthropic_messages": true},
        },
        "openai": {
          "baseurl": "https://api.openai.com",
          "authorization": {"type": "Bearer", "value": "sk-SEED"},
          "models": ["gpt-5.4"],
          "compatibility": {"openai_chat": true, "openai_responses": true},
        },
        "llama": {
          "baseurl": "http://100.64.0.1:8080/v1",
          "tailnet": true,
          "authorization": "Bearer",
          "models": ["llama-3"],
          "compatibility": {"openai_chat": true},
        },
        "anthropic-fast": {"baseurl": "https://api.anthropic.com", "apikey": "sk-ant-SEED",
                           "authorization": "x-api-key", "models": ["claude-haiku-4-5"],
                           "compatibility": {"anthropic_messages": true}},
        "anthropic-power": {"baseurl": "https://api.anthropic.com", "apikey": "sk-ant-SEED",
                            "authorization": "x-api-key", "models": ["claude-opus-4-7"],
                            "compatibility": {"anthropic_messages": true}},
        "gemini": {"baseurl": "https://generativelanguage.googleapis.com", "apikey": "g",
                   "authorization": "x-goog-api-key", "models": ["gemini-2.5-pro"],
                   "compatibility": {"gemini": true}},
      },
      "temp_grants": [
        {"src": ["senior-eng@company.com"], "grants": [{"providers": [{"provider": "anthropic-power", "model": "*"}]}]},
        {"src": ["*"], "grants": [{"providers": [{"provider": "anthropic-fast", "model": "*"}]}]},
      ],
    }"""
    config = parse_config(text)
    p = config.providers
    assert p["anthropic"].authorization == "x-api-key" and p["anthropic"].apikey == "sk-ant-SEED"
    assert p["openai"].authorization == "bearer" and p["openai"].apikey == "sk-SEED"
    assert p["llama"].tailnet is True and p["llama"].base_path == "/v1" and p["llama"].port == 8080
    assert p["llama"].authorization == "bearer"
    assert p["gemini"].authorization == "x-goog-api-key"
    assert p["gemini"].compatibility == {"gemini_generate_content"}
    assert p["gemini"].speaks("gemini")
    assert len(config.document["temp_grants"]) == 2


def test_providers_may_be_omitted():
    config = parse_config('{"grants": [], "connectors": {"servers": {}}}')
    assert config.providers == {}


def test_other_sections_are_never_rejected():
    doc = {
        "providers": {},
        "grants": "not even a list",
        "temp_grants": 7,
        "quotas": {"daily:<user>": {"capacity": "$20.00", "rate": "$10.00/day", "on_exceed": "reject"}},
        "hooks": None,
        "exporters": {"s3": {"bucket_name": ""}},
        "database": {"retention": {"duration": "0"}},
        "connectors": [],
        "flags": {"connectors": {"value": True}},
        "model_aliases": {"models": {"w": {"dst": ["a/b"]}}},
        "mcp": {"servers": {}},
        "chat_models": ["x"],
        "something_new": {"deep": [1, 2, {"x": None}]},
    }
    assert _problems(doc) == []
    import orjson

    config = parse_config(orjson.dumps(doc).decode())
    assert config.document == doc


def test_provider_order_is_config_order():
    names = ["zeta", "alpha", "mid", "beta"]
    text = "{\"providers\": {" + ",".join(
        f'"{n}": {{"baseurl": "http://h", "apikey": "k", "models": ["{n}-m"]}}' for n in names
    ) + "}}"
    assert list(parse_config(text).providers) == names


# --- provider fields ----------------------------------------------------------


@pytest.mark.parametrize(
    "url, scheme, host, port, base_path",
    [
        ("https://api.openai.com", "https", "api.openai.com", 443, ""),
        ("https://api.openai.com/", "https", "api.openai.com", 443, ""),
        ("http://api.example.com", "http", "api.example.com", 80, ""),
        ("http://100.64.0.1:8080/v1", "http", "100.64.0.1", 8080, "/v1"),
        ("https://openrouter.ai/api/", "https", "openrouter.ai", 443, "/api"),
        ("HTTPS://API.Example.COM:8443/a/b//", "https", "api.example.com", 8443, "/a/b"),
        ("http://[fd7a:115c:a1e0::1]:11434", "http", "fd7a:115c:a1e0::1", 11434, ""),
        ("http://localhost:1", "http", "localhost", 1, ""),
    ],
)
def test_baseurl_parts(url, scheme, host, port, base_path):
    p = _one(baseurl=url)
    assert (p.baseurl, p.scheme, p.host, p.port, p.base_path) == (url, scheme, host, port, base_path)


@pytest.mark.parametrize(
    "url, message",
    [
        (None, "required"),
        (42, "must be a string"),
        ("", "must not be empty"),
        ("api.openai.com", "http:// or https://"),
        ("ftp://files.example.com", "http:// or https://"),
        ("https://", "must include a host"),
        ("https://:443/x", "must include a host"),
        ("https://api.example.com/v1?x=1", "query or fragment"),
        ("https://api.example.com/#frag", "query or fragment"),
        ("https://api.example.com?", "query or fragment"),
        ("https://user:pw@api.example.com", "credentials"),
        ("https://api.example.com:99999", "not a valid URL"),
        ("https://api.example.com:port", "not a valid URL"),
        ("https://api.example.com:0", "invalid port"),
        ("https://api.example .com", "spaces"),
        (" https://api.example.com", "spaces"),
    ],
)
def test_bad_baseurl(url, message):
    provider = _base(baseurl=url)
    if url is None:
        del provider["baseurl"]
    problems = _problems(_doc(**provider))
    assert len(problems) == 1
    assert problems[0].startswith("providers.p.baseurl: ")
    assert message in problems[0]


@pytest.mark.parametrize(
    "models, expected",
    [
        (None, ["providers.p.models: required (list at least one model)"]),
        ([], ["providers.p.models: must list at least one model"]),
        ("gpt-5.4", ["providers.p.models: must be a list of model names, not a string"]),
        (["a", "b", 3], ["providers.p.models[2]: must be a non-empty string"]),
        (["a", "", "  "], ["providers.p.models[1]: must be a non-empty string", "providers.p.models[2]: must be a non-empty string"]),
        (["a", "b", "a", None], ["providers.p.models[2]: duplicate of models[0]", "providers.p.models[3]: must be a non-empty string"]),
    ],
)
def test_bad_models(models, expected):
    provider = _base(models=models)
    if models is None:
        del provider["models"]
    assert _problems(_doc(**provider)) == expected


def test_same_model_in_two_providers_is_fine():
    doc = {"providers": {"fast": _base(models=["m"]), "power": _base(models=["m"])}}
    assert _problems(doc) == []


@pytest.mark.parametrize(
    "auth, expected",
    [
        ("bearer", "bearer"),
        ("Bearer", "bearer"),
        ("X-API-Key", "x-api-key"),
        ("x-goog-api-key", "x-goog-api-key"),
        (" x-api-key ", "x-api-key"),
        ({"type": "x-api-key"}, "x-api-key"),
        ({"type": "BEARER", "value": "k"}, "bearer"),
        ({"value": "k"}, "bearer"),
        ({}, "bearer"),
    ],
)
def test_authorization_forms(auth, expected):
    assert _one(authorization=auth).authorization == expected


def test_authorization_default_is_bearer():
    assert _one().authorization == "bearer"


def test_key_from_object_form():
    p = _one(apikey=None, authorization={"type": "x-api-key", "value": "sk-obj"})
    assert p.apikey == "sk-obj"
    p = _one(apikey="sk-same", authorization={"type": "x-api-key", "value": "sk-same"})
    assert p.apikey == "sk-same"
    assert _one(apikey="", authorization={"value": ""}).apikey is None


@pytest.mark.parametrize(
    "auth, expected",
    [
        ("basic", "providers.p.authorization: must be one of bearer, x-api-key, x-goog-api-key"),
        (5, "providers.p.authorization: must be a string or an object with type and value, not a number"),
        (["bearer"], "providers.p.authorization: must be a string or an object with type and value, not a list"),
        ({"type": "hec"}, "providers.p.authorization.type: must be one of bearer, x-api-key, x-goog-api-key"),
        ({"type": 1}, "providers.p.authorization.type: must be a string, not a number"),
        ({"value": 12}, "providers.p.authorization.value: must be a string, not a number"),
        ({"type": "bearer", "value": "other"}, "providers.p.authorization.value: differs from apikey"),
    ],
)
def test_bad_authorization(auth, expected):
    problems = _problems(_doc(**_base(authorization=auth)))
    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_bad_apikey_type():
    assert _problems(_doc(**_base(apikey=123))) == ["providers.p.apikey: must be a string, not a number"]


@pytest.mark.parametrize(
    "mode, expected",
    [(None, "override"), ("", "override"), ("override", "override"), ("passthrough", "passthrough"),
     ("none", "none"), ("Passthrough", "passthrough")],
)
def test_auth_mode(mode, expected):
    assert _one(auth_mode=mode).auth_mode == expected


@pytest.mark.parametrize("mode", ["inject", 1, True, "pass-through"])
def test_bad_auth_mode(mode):
    problems = _problems(_doc(**_base(auth_mode=mode)))
    assert len(problems) == 1 and problems[0].startswith("providers.p.auth_mode: must be")


def test_name_description_tailnet_defaults():
    p = _one()
    assert (p.name, p.description, p.tailnet, p.cost_basis) == ("p", "", False, None)
    p = _one(name="Pretty", description="desc", tailnet=True, cost_basis="vercel")
    assert (p.name, p.description, p.tailnet, p.cost_basis) == ("Pretty", "desc", True, "vercel")
    assert _one(name="").name == "p"


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("name", 3, "providers.p.name: must be a string, not a number"),
        ("description", ["x"], "providers.p.description: must be a string, not a list"),
        ("cost_basis", {}, "providers.p.cost_basis: must be a string, not an object"),
        ("tailnet", "yes", "providers.p.tailnet: must be true or false, not a string"),
        ("tailnet", 1, "providers.p.tailnet: must be true or false, not a number"),
    ],
)
def test_bad_simple_fields(field, value, expected):
    assert _problems(_doc(**_base(**{field: value}))) == [expected]


def test_unknown_provider_fields_are_kept_not_rejected():
    assert _problems(_doc(**_base(model_costs={"m": 1}))) == []


# --- compatibility ------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, enabled",
    [
        (None, {"openai_chat"}),
        ({}, {"openai_chat"}),
        ({"openai_chat": True}, {"openai_chat"}),
        ({"openai_chat": False}, set()),
        ({"anthropic_messages": True}, {"anthropic_messages"}),
        ({"anthropic_messages": False}, {"openai_chat"}),
        ({"anthropic_messages": True, "openai_chat": True}, {"anthropic_messages", "openai_chat"}),
        ({"openai_responses": True}, {"openai_responses"}),
        ({"gemini": True}, {"gemini_generate_content"}),
        ({"vertex": True}, {"google_generate_content", "google_raw_predict"}),
        ({"bedrock": True}, {"bedrock_model_invoke", "bedrock_converse"}),
        ({"vertex": True, "google_raw_predict": False}, {"google_generate_content"}),
        ({"vertex": False, "google_generate_content": True}, {"google_generate_content"}),
        ({"bedrock_converse": True}, {"bedrock_converse"}),
        ({"google_generate_content": True, "openai_chat": True}, {"google_generate_content", "openai_chat"}),
        ({"experimental_gemini_cli_vertex_compat": True},
         {"experimental_gemini_cli_vertex_compat", "openai_chat"}),
        ({"google_generate_content": True, "experimental_gemini_cli_vertex_compat": True},
         {"google_generate_content", "experimental_gemini_cli_vertex_compat"}),
    ],
)
def test_compatibility(flags, enabled):
    assert _one(compatibility=flags).compatibility == enabled


@pytest.mark.parametrize(
    "flags, formats",
    [
        ({}, {"openai_chat"}),
        ({"openai_chat": True, "openai_responses": True}, {"openai_chat", "openai_responses"}),
        ({"anthropic_messages": True}, {"anthropic_messages"}),
        ({"gemini_generate_content": True}, {"gemini"}),
        ({"google_raw_predict": True}, {"vertex"}),
        ({"google_generate_content": True}, {"vertex"}),
        ({"bedrock_model_invoke": True}, {"bedrock"}),
        ({"bedrock": True}, {"bedrock"}),
    ],
)
def test_speaks(flags, formats):
    p = _one(compatibility=flags)
    assert {f for f in FORMAT_FLAGS if p.speaks(f)} == formats
    assert not p.speaks("no-such-format")


def test_key_command_and_vertex_fields():
    p = _one(apikey=None, apikey_command=["gcloud", "auth", "print-access-token"],
             apikey_refresh="45m", vertex_project="my-proj-1", vertex_region="us-east5")
    assert p.apikey is None
    assert p.apikey_command == ("gcloud", "auth", "print-access-token")
    assert p.apikey_refresh == 45 * 60
    assert (p.vertex_project, p.vertex_region) == ("my-proj-1", "us-east5")
    default = _one(apikey=None, apikey_command=["print-token"])
    assert default.apikey_refresh == 1800 and default.vertex_project is None
    assert _one().apikey_command is None


@pytest.mark.parametrize("fields, problem", [
    ({"apikey_command": []}, "providers.p.apikey_command: must be a non-empty list of non-empty strings"),
    ({"apikey_command": "gcloud auth"}, "providers.p.apikey_command: must be a non-empty list"),
    ({"apikey_command": ["gcloud", ""]}, "providers.p.apikey_command: must be a non-empty list"),
    ({"apikey": "k", "apikey_command": ["x"]}, "providers.p.apikey_command: give apikey or apikey_command, not both"),
    ({"apikey_refresh": "30m"}, "providers.p.apikey_refresh: only applies with apikey_command"),
    ({"apikey_command": ["x"], "apikey_refresh": 60}, "providers.p.apikey_refresh: must be a duration string"),
    ({"apikey_command": ["x"], "apikey_refresh": "soon"}, "providers.p.apikey_refresh: invalid duration"),
    ({"apikey_command": ["x"], "apikey_refresh": "30s"}, "providers.p.apikey_refresh: must be between 1m and 24h"),
    ({"vertex_project": "my project"}, "providers.p.vertex_project: must be a Google Cloud project id"),
    ({"vertex_region": 5}, "providers.p.vertex_region: must be a string, not a number"),
])
def test_bad_key_command_and_vertex_fields(fields, problem):
    provider = _base(**fields)
    if "apikey_command" in fields and "apikey" not in fields:
        del provider["apikey"]
    problems = _problems(_doc(**provider))
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_bad_compatibility():
    problems = _problems(_doc(**_base(compatibility={"openai_chat": "yes", "gemni": True, "a.b": True})))
    assert problems[0] == "providers.p.compatibility.openai_chat: must be true or false, not a string"
    assert problems[1].startswith("providers.p.compatibility.gemni: unknown flag (known: ")
    assert "gemini_generate_content" in problems[1]
    assert problems[2].startswith('providers.p.compatibility["a.b"]: unknown flag')
    assert _problems(_doc(**_base(compatibility=["openai_chat"]))) == [
        "providers.p.compatibility: must be an object of true/false flags, not a list"
    ]


# --- structure and ids --------------------------------------------------------


def test_provider_ids():
    problems = _problems({"providers": {"": _base(), "a/b": _base(), "ok-id_1": _base(), "odd id.x": _base()}})
    assert problems == [
        'providers[""]: provider id must not be empty',
        'providers["a/b"]: provider id must not contain \'/\'',
    ]


@pytest.mark.parametrize(
    "doc, expected",
    [
        ([], ["top level: must be an object, not a list"]),
        ("x", ["top level: must be an object, not a string"]),
        (None, ["top level: must be an object, not null"]),
        ({"providers": []}, ["providers: must be an object (provider id -> provider), not a list"]),
        ({"providers": None}, ["providers: must be an object (provider id -> provider), not null"]),
        ({"providers": {"x": "https://api.example.com"}}, ["providers.x: must be an object, not a string"]),
    ],
)
def test_structure_problems(doc, expected):
    assert _problems(doc) == expected


def test_all_problems_are_reported_each_with_its_path():
    text = """{
      "providers": {
        "anthropic": {"baseurl": "https://api.anthropic.com", "authorization": "api-key",
                      "models": ["claude-opus-4-7"]},
        "x": {"baseurl": "gopher://x", "models": ["a", "b", ""], "tailnet": "no"},
        "good": {"baseurl": "https://api.openai.com", "apikey": "k", "models": ["gpt-5.4"]},
        "y": {"compatibility": {"vertexx": true}},
      },
      "grants": [{"src": ["*"]}],
    }"""
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert e.value.problems == [
        "providers.anthropic.authorization: must be one of bearer, x-api-key, x-goog-api-key",
        "providers.x.baseurl: must be an http:// or https:// URL",
        "providers.x.models[2]: must be a non-empty string",
        "providers.x.tailnet: must be true or false, not a string",
        e.value.problems[4],  # fields as they come in the file, then missing ones
        "providers.y.baseurl: required",
        "providers.y.models: required (list at least one model)",
    ]
    assert e.value.problems[4].startswith("providers.y.compatibility.vertexx: unknown flag")
    assert str(e.value) == "\n".join(e.value.problems)


def test_syntax_error_names_source_line_and_column():
    text = '{\n  "providers": {\n    "a": {"baseurl": "http://h" "models": []}\n  }\n}'
    with pytest.raises(ConfigError) as e:
        parse_config(text, source="conf.hujson")
    (problem,) = e.value.problems
    assert problem.startswith("conf.hujson: line 3, column 33: unexpected character")


def test_unterminated_comment_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        parse_config('{"providers": {}} /* oops')
    assert e.value.problems == ["<string>: line 1, column 19: unterminated block comment"]


def test_duplicate_keys_in_providers_are_problems():
    text = """{
      "providers": {
        "openai": {"baseurl": "https://a.example", "apikey": "k", "models": ["m"]},
        "openai": {"baseurl": "https://b.example", "apikey": "k", "models": ["m"], "models": ["n"]},
      },
      "providers": {},
      "grants": [{"src": ["*"], "src": ["x"]}],
      "hooks": {"h": {}, "h": {}},
    }"""
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert sorted(e.value.problems) == [
        "providers.openai.models: defined more than once",
        "providers.openai: defined more than once",
        "providers: defined more than once",
    ]


# --- warnings and secrets ------------------------------------------------------


def test_override_without_key_warns_naming_the_provider(caplog):
    text = """{"providers": {
      "nokey": {"baseurl": "http://h", "models": ["m"]},
      "empty": {"baseurl": "http://h", "apikey": "", "auth_mode": "override", "models": ["m"]},
      "pass": {"baseurl": "http://h", "auth_mode": "passthrough", "models": ["m"]},
      "none": {"baseurl": "http://h", "auth_mode": "none", "models": ["m"]},
      "keyed": {"baseurl": "http://h", "apikey": "sk-WARNTEST", "models": ["m"]},
    }}"""
    with caplog.at_level(logging.WARNING, logger="aperture.config"):
        config = parse_config(text, source="f.hujson")
    warned = [r.getMessage() for r in caplog.records if r.name == "aperture.config"]
    assert len(warned) == 2
    assert "'nokey'" in warned[0] and warned[0].startswith("f.hujson: ")
    assert "'empty'" in warned[1]
    assert len(config.warnings) == 2
    assert all("sk-WARNTEST" not in w for w in warned)


def test_warnings_can_be_kept_out_of_the_log(caplog):
    with caplog.at_level(logging.WARNING, logger="aperture.config"):
        config = parse_config('{"providers": {"n": {"baseurl": "http://h", "models": ["m"]}}}', log_warnings=False)
    assert not [r for r in caplog.records if r.name == "aperture.config"]
    assert len(config.warnings) == 1


def test_no_format_enabled_warns():
    config = parse_config(
        '{"providers": {"n": {"baseurl": "http://h", "apikey": "k", "models": ["m"], '
        '"compatibility": {"openai_chat": false}}}}',
        log_warnings=False,
    )
    assert config.providers["n"].compatibility == frozenset()
    assert [w for w in config.warnings if "no API format" in w]


SECRET = "sk-ant-api03-TOPSECRET-0123456789"


@pytest.mark.parametrize(
    "provider",
    [
        {"apikey": SECRET, "authorization": "nonsense"},
        {"apikey": SECRET, "authorization": SECRET},  # key pasted into the wrong field
        {"apikey": "other", "authorization": {"type": "x-api-key", "value": SECRET}},
        {"apikey": SECRET, "authorization": {"type": SECRET, "value": SECRET}},
        {"apikey": SECRET, "auth_mode": SECRET},
        {"apikey": SECRET, "tailnet": SECRET},
        {"apikey": SECRET, "name": [SECRET]},
        {"apikey": SECRET, "compatibility": {"openai_chat": SECRET}},
        {"apikey": SECRET, "compatibility": SECRET},
        {"apikey": SECRET, "baseurl": f"https://user:{SECRET}@api.example.com"},
        {"apikey": SECRET, "baseurl": f"https://api.example.com/?key={SECRET}"},
        {"apikey": SECRET, "baseurl": f"https://api.example.com:{SECRET}"},
        {"apikey": SECRET, "baseurl": SECRET},
        {"apikey": SECRET, "models": [SECRET, SECRET, ""]},
        {"apikey": SECRET, "models": SECRET},
        {"apikey": [SECRET]},
    ],
)
def test_problems_never_contain_the_key(provider):
    doc = {"providers": {"leaky": {**_base(), **provider}}}
    problems = _problems(doc)
    assert problems, "the config should have a problem"
    for line in problems:
        assert SECRET not in line
    import orjson

    with pytest.raises(ConfigError) as e:
        parse_config(orjson.dumps(doc).decode())
    assert SECRET not in str(e.value)


def test_repr_never_contains_the_key():
    text = '{"providers": {"p": {"baseurl": "http://h", "apikey": "%s", "models": ["m"]}}}' % SECRET
    config = parse_config(text)
    assert config.providers["p"].apikey == SECRET
    assert SECRET not in repr(config.providers["p"])
    assert SECRET not in repr(config)


def test_provider_is_frozen():
    p = _one()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.apikey = "x"  # type: ignore[misc]


# --- files --------------------------------------------------------------------


def test_load_config_from_file(tmp_path: pathlib.Path):
    path = tmp_path / "aperture.hujson"
    path.write_text("\ufeff" + SHIPPED_DEFAULT, encoding="utf-8")
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.source == str(path)
    assert config.text == SHIPPED_DEFAULT
    assert list(config.providers) == ["openai", "anthropic"]
    assert load_config(str(path)).providers == config.providers


def test_load_config_io_errors(tmp_path: pathlib.Path):
    missing = tmp_path / "nope.hujson"
    with pytest.raises(ConfigError) as e:
        load_config(missing)
    assert e.value.problems == [f"{missing}: cannot read: No such file or directory"]
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert e.value.problems[0].startswith(f"{tmp_path}: cannot read: ")


def test_load_config_bad_encoding_and_syntax(tmp_path: pathlib.Path):
    path = tmp_path / "c.json"
    path.write_bytes(b'{\n "a": "\xff"}')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [f"{path}: line 2, column 8: invalid UTF-8"]
    path.write_text('{\n  "providers": {,}\n}')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems[0].startswith(f"{path}: line 2, column ")


# --- the embedded default -------------------------------------------------------


def test_embedded_default_config():
    text = default_config_text("http://127.0.0.1:18080")
    assert "//" in text  # explained with comments
    config = parse_config(text, source="<default>")
    assert config.warnings == ()
    assert list(config.providers) == ["anthropic", "openai", "gemini", "vertex", "bedrock"]
    for provider in config.providers.values():  # every one answered by the simulator
        assert (provider.baseurl, provider.scheme, provider.host, provider.port, provider.base_path) == (
            "http://127.0.0.1:18080", "http", "127.0.0.1", 18080, "")
        assert provider.apikey == "sim-key" and provider.auth_mode == "override"
    p = config.providers
    assert p["anthropic"].authorization == "x-api-key"
    assert p["gemini"].authorization == "x-goog-api-key"
    assert {p[k].authorization for k in ("openai", "vertex", "bedrock")} == {"bearer"}
    # Every API flag is served by one provider of the default.
    assert set().union(*(provider.compatibility for provider in p.values())) == {
        "anthropic_messages", "openai_chat", "openai_responses", "gemini_generate_content",
        "google_generate_content", "google_raw_predict", "bedrock_model_invoke", "bedrock_converse"}
    assert (p["vertex"].vertex_project, p["vertex"].vertex_region) == ("sim-project", "us-east5")
    # The models the coding agents ask for by default (tests/clients) are listed.
    assert p["anthropic"].models == ("claude-opus-5-5", "claude-sonnet-4-6", "claude-haiku-4-5",
                                     "claude-opus-4-7")
    assert p["openai"].models == ("gpt-6.2-sol", "gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex")
    assert {"gemini-3.1-pro-preview", "gemini-3.8-flash", "gemini-3.5-flash-lite"} <= set(
        p["gemini"].models)
    assert "us.anthropic.claude-opus-5-5" in p["bedrock"].models
    assert "claude-opus-5-5" in p["vertex"].models
    (grant,) = config.document["grants"]
    assert grant["src"] == ["*"]
    assert grant["app"]["tailscale.com/cap/aperture"] == [{"role": "admin"}, {"models": "**"}]


def test_embedded_default_escapes_the_url():
    config = parse_config(default_config_text('http://sim.example:9/base"x'.replace('"', "%22")))
    assert config.providers["anthropic"].base_path == "/base%22x"
    # A URL that would break the JSON string is escaped, then rejected by validation, not by the parser.
    with pytest.raises(ConfigError) as e:
        parse_config(default_config_text('http://h/"x" ?'))
    assert e.value.problems[0].startswith("providers.anthropic.baseurl: ")


# --- check-config ----------------------------------------------------------------


def test_check_config_ok(tmp_path: pathlib.Path):
    path = tmp_path / "ok.hujson"
    path.write_text(SHIPPED_DEFAULT)
    result = CliRunner().invoke(check_config, [str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok (2 providers, 6 models)\n"
    assert result.stderr == ""


def test_check_config_singular_and_warnings(tmp_path: pathlib.Path):
    path = tmp_path / "one.hujson"
    path.write_text('{"providers": {"solo": {"baseurl": "http://h", "models": ["m"]}}}')
    result = CliRunner().invoke(check_config, [str(path)])
    assert result.exit_code == 0
    assert result.stdout == f"{path}: ok (1 provider, 1 model)\n"
    assert result.stderr.startswith(f"{path}: warning: provider 'solo': no apikey")


def test_check_config_problems(tmp_path: pathlib.Path):
    path = tmp_path / "bad.hujson"
    path.write_text(
        '{"providers": {"a": {"baseurl": "http://h", "apikey": "%s", "authorization": "%s", '
        '"models": ["m", 1]}}}' % (SECRET, SECRET)
    )
    result = CliRunner().invoke(check_config, [str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "providers.a.authorization: must be one of bearer, x-api-key, x-goog-api-key",
        "providers.a.models[1]: must be a non-empty string",
    ]
    assert SECRET not in result.output


def test_check_config_syntax_error_and_missing_file(tmp_path: pathlib.Path):
    path = tmp_path / "syntax.hujson"
    path.write_text("{\n  \"providers\": {\n}")
    result = CliRunner().invoke(check_config, [str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}: line 3, column 2: ")
    missing = tmp_path / "missing.hujson"
    result = CliRunner().invoke(check_config, [str(missing)])
    assert result.exit_code == 1
    assert result.stderr == f"{missing}: cannot read: No such file or directory\n"


# --- robustness ------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12)
    | st.sampled_from(["http://h", "https://a.example/v1/", "bearer", "x-api-key", "override", "", "/"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=10,
)
_field_names = st.sampled_from(
    ["baseurl", "apikey", "authorization", "auth_mode", "models", "name", "description", "tailnet",
     "cost_basis", "compatibility", "other"]
)
_providers = st.dictionaries(
    st.text(max_size=5),
    st.dictionaries(_field_names, _json, max_size=8) | _json,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(_providers)
def test_validation_never_crashes(providers):
    problems = validate_document({"providers": providers})
    for line in problems:
        assert line.startswith("providers")
        assert ": " in line and "\n" not in line
    import orjson

    try:
        config = parse_config(orjson.dumps({"providers": providers}).decode())
    except ConfigError as e:
        assert e.problems
    else:
        assert problems == []
        assert list(config.providers) == list(providers)
        for p in config.providers.values():
            assert p.scheme in ("http", "https") and p.port > 0 and p.models


@pytest.mark.parametrize("key", ["sk-1\r\nX-Injected: 1", "sk-\x00", " sk-1", "sk-1 ", "sk-é"])
def test_apikey_must_be_safe_as_a_header_value(key):
    doc = {"providers": {"p": {"baseurl": "https://api.example.com", "apikey": key, "models": ["m"]}}}
    with pytest.raises(ConfigError) as exc:
        parse_config(json.dumps(doc))
    assert exc.value.problems == ["providers.p.apikey: must be printable ASCII (no spaces around it, no control characters)"]


@pytest.mark.parametrize("duration, problem", [
    ("30m", 'database.retention.duration: retention \'30m\' must be between 1h and 3650d, or "0"'),
    (720, 'database.retention.duration: must be a string like "720h" or "0", not a number'),
])
def test_retention_duration_checked_at_load(duration, problem):
    doc = {"providers": {}, "database": {"retention": {"duration": duration}}}
    with pytest.raises(ConfigError) as exc:
        parse_config(json.dumps(doc))
    assert exc.value.problems == [problem]


@pytest.mark.parametrize("duration", ["0", "720h", "30d", "1h30m"])
def test_retention_durations_accepted(duration):
    parse_config(json.dumps({"providers": {}, "database": {"retention": {"duration": duration}}}))
