"""Model -> provider routing."""

from __future__ import annotations

import pytest

from aperture.config import parse_config
from aperture.errors import BadRequest, UnknownModel
from aperture.routing import Router

CONFIG = """{
  "providers": {
    "anthropic": {"baseurl": "https://api.anthropic.com", "apikey": "k1", "authorization": "x-api-key",
                  "models": ["claude-sonnet-4-5", "shared"], "compatibility": {"anthropic_messages": true}},
    "openai": {"baseurl": "https://api.openai.com", "apikey": "k2",
               "models": ["gpt-5.4", "shared"]},
    "openrouter": {"baseurl": "https://openrouter.ai/api/", "models": ["qwen/qwen3-coder"]},
    "backup": {"baseurl": "https://backup.example", "models": ["gpt-5.4"]},
  },
}"""


@pytest.fixture(scope="module")
def router():
    return Router(parse_config(CONFIG))


def test_exact_model(router):
    provider, model = router.route(("anthropic_messages",), "claude-sonnet-4-5")
    assert (provider.id, model) == ("anthropic", "claude-sonnet-4-5")


def test_first_provider_in_config_order_wins(router):
    assert router.route(("openai_chat",), "gpt-5.4")[0].id == "openai"


def test_fully_qualified_name_pins_provider_and_strips_prefix(router):
    provider, model = router.route(("openai_chat",), "backup/gpt-5.4")
    assert (provider.id, model) == ("backup", "gpt-5.4")


def test_model_names_with_slashes(router):
    assert router.route(("openai_chat",), "qwen/qwen3-coder")[0].id == "openrouter"
    provider, model = router.route(("openai_chat",), "openrouter/qwen/qwen3-coder")
    assert (provider.id, model) == ("openrouter", "qwen/qwen3-coder")


def test_same_name_in_two_formats(router):
    assert router.route(("anthropic_messages",), "shared")[0].id == "anthropic"
    assert router.route(("openai_chat",), "shared")[0].id == "openai"


def test_unknown_model(router):
    with pytest.raises(UnknownModel, match="model nope not found"):
        router.route(("openai_chat",), "nope")


def test_wrong_format(router):
    with pytest.raises(BadRequest, match="served by anthropic, which does not speak the openai_chat"):
        router.route(("openai_chat",), "claude-sonnet-4-5")
    with pytest.raises(BadRequest, match="provider anthropic does not serve the openai_chat"):
        router.route(("openai_chat",), "anthropic/claude-sonnet-4-5")


def test_unknown_provider_prefix(router):
    with pytest.raises(UnknownModel):
        router.route(("openai_chat",), "nobody/gpt-5.4")


BEDROCK = """{
  "providers": {
    "first": {"baseurl": "https://bedrock-runtime.us-east-1.amazonaws.com", "apikey": "k",
              "models": ["us.anthropic.claude-sonnet-4-6", "amazon.nova-pro-v1:0"],
              "compatibility": {"bedrock_model_invoke": true, "bedrock_converse": true}},
    "second": {"baseurl": "https://bedrock-runtime.eu-west-1.amazonaws.com", "apikey": "k",
               "models": ["claude-haiku-4-5", "us.anthropic.claude-sonnet-4-6"],
               "compatibility": {"bedrock_model_invoke": true}},
    "anthropic": {"baseurl": "https://api.anthropic.com", "apikey": "k", "authorization": "x-api-key",
                  "models": ["claude-opus-4-7"], "compatibility": {"anthropic_messages": true}},
  },
}"""


@pytest.mark.parametrize("asked, provider, listed", [
    ("us.anthropic.claude-sonnet-4-6", "first", "us.anthropic.claude-sonnet-4-6"),  # exact
    ("claude-sonnet-4-6", "first", "us.anthropic.claude-sonnet-4-6"),
    ("global.anthropic.claude-sonnet-4-6", "first", "us.anthropic.claude-sonnet-4-6"),
    ("eu.anthropic.claude-sonnet-4-6-20250514-v1:0", "first", "us.anthropic.claude-sonnet-4-6"),
    ("anthropic.claude-sonnet-4-6-v1:0", "first", "us.anthropic.claude-sonnet-4-6"),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/apac.anthropic.claude-sonnet-4-6",
     "first", "us.anthropic.claude-sonnet-4-6"),
    ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "second", "claude-haiku-4-5"),
    ("amazon.nova-pro-v1:0", "first", "amazon.nova-pro-v1:0"),
    ("us.amazon.nova-pro-v1:0", "first", "amazon.nova-pro-v1:0"),
])
def test_bedrock_ids_match_without_region_vendor_and_version(asked, provider, listed):
    found, upstream, granted = Router(parse_config(BEDROCK)).resolve(("bedrock_model_invoke",), asked)
    # the path goes upstream as sent; grants are checked on the listed name
    assert (found.id, upstream, granted) == (provider, asked, listed)


def test_bedrock_matching_only_for_bedrock_and_not_across_models():
    router = Router(parse_config(BEDROCK))
    with pytest.raises(UnknownModel):
        router.resolve(("bedrock_model_invoke",), "us.anthropic.claude-sonnet-4-5")
    with pytest.raises(BadRequest, match="served by second, which does not speak the bedrock_converse"):
        router.resolve(("bedrock_converse",), "claude-haiku-4-5")
    with pytest.raises(UnknownModel):  # no normalization outside Bedrock
        router.resolve(("anthropic_messages",), "anthropic.claude-opus-4-7-v1:0")


def test_a_format_no_provider_speaks_is_400():
    with pytest.raises(BadRequest, match="no provider of this gateway speaks the google_raw_predict"):
        Router(parse_config(BEDROCK)).resolve(("google_raw_predict",), "claude-opus-4-7")
