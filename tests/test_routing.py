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
