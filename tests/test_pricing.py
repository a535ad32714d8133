"""Prices: the shipped table, model name decorations, the configuration's
cost_basis and prices, estimates in nano-dollars, /v1/models strings."""

from __future__ import annotations

import json

import pytest

from aperture import pricing
from aperture.capture.record import Usage
from aperture.config import parse_config
from aperture.errors import ConfigError


def test_every_table_entry_has_a_date_and_a_source():
    tables = pricing._tables()
    assert set(tables) == {"anthropic", "openai", "google", "vertex", "bedrock", "bedrock-us",
                           "bedrock-eu", "bedrock-ap", "azure", "azure-eu", "openrouter", "vercel"}
    for table in tables.values():
        for key, price in table.models.items():
            if isinstance(price, str):
                assert price in table.models, (table.name, key)
                continue
            assert price.date and price.source.startswith("https://"), (table.name, key)
            assert price.rates.input >= 0 and price.rates.output >= 0


@pytest.mark.parametrize("basis, model, key", [
    ("anthropic", "claude-sonnet-4-6", "anthropic/claude-sonnet-4-6"),
    ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-0", "anthropic/claude-opus-4-0"),
    ("vertex", "claude-sonnet-4-5@20250929", "vertex/claude-sonnet-4-5"),
    ("vertex", "gemini-2.5-pro", "vertex/gemini-2.5-pro"),
    ("bedrock", "us.anthropic.claude-sonnet-4-6", "bedrock/claude-sonnet-4-6"),
    ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock/claude-sonnet-4-5"),
    ("bedrock", "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-haiku-4-5",
     "bedrock/claude-haiku-4-5"),
    ("bedrock-eu", "amazon.nova-pro-v1:0", "bedrock-eu/nova-pro"),
    ("google", "gemini-3-flash-preview", "google/gemini-3-flash"),
    ("openai", "gpt-4o-2024-08-06", "openai/gpt-4o"),
    ("azure", "gpt-5.4", "azure/gpt-5.4"),
    ("openrouter", "anthropic/claude-sonnet-4.6", "openrouter/anthropic/claude-sonnet-4.6"),
])
def test_lookup_takes_decorations_off(basis, model, key):
    price = pricing.lookup(basis, model)
    assert price is not None and price.basis == key


def test_unknown_models_have_no_price():
    assert pricing.lookup("openai", "qwen3-coder") is None
    assert pricing.lookup("nope", "gpt-5.4") is None


def test_inherited_prices_carry_the_inheriting_source():
    p = pricing.lookup("vertex", "claude-haiku-4-5")
    assert p.source.startswith("https://cloud.google.com/") and p.rates.input == 1


def test_costs_in_nano_dollars_and_long_context():
    p = pricing.lookup("anthropic", "claude-sonnet-4-6")
    assert p.cost(1000, 1000, 0, 0) == 18_000_000  # $0.003 + $0.015
    assert p.cost(0, 0, 100_000, 0) == 30_000_000
    # over 200k prompt tokens the whole request is billed at the long-context rates
    assert p.cost(150_000, 1000, 60_000, 0) == round((150_000 * 6 + 1000 * 22.5 + 60_000 * 0.6) * 1000)


def test_per_token_strings():
    p = pricing.lookup("openai", "gpt-5.4-nano")
    assert pricing.pricing_fields(p) == {"input": "0.0000002", "input_cache_read": "0.00000002",
                                         "input_cache_write": "0.0000002", "output": "0.00000125"}


def _provider(**fields):
    doc = {"providers": {"p": {"baseurl": "http://127.0.0.1:9", "auth_mode": "none",
                               "models": ["m1", "claude-x"], **fields}}}
    return parse_config(json.dumps(doc))


def test_basis_from_the_base_url_or_the_formats():
    assert pricing.infer_basis("api.anthropic.com", frozenset({"anthropic_messages"})) == "anthropic"
    assert pricing.infer_basis("bedrock-runtime.eu-west-1.amazonaws.com", frozenset()) == "bedrock-eu"
    assert pricing.infer_basis("us-east5-aiplatform.googleapis.com", frozenset()) == "vertex"
    assert pricing.infer_basis("10.0.0.1", frozenset({"anthropic_messages"})) == "anthropic"
    # OpenAI's formats are every compatible server's: no guess
    assert pricing.infer_basis("10.0.0.1", frozenset({"openai_chat"})) is None
    assert pricing.infer_basis("10.0.0.1", frozenset({"openai_chat", "anthropic_messages"})) is None


def test_configured_prices_replace_and_name_prices():
    cfg = _provider(compatibility={"anthropic_messages": True},
                    prices={"m1": {"input": 1, "output": 2, "cache_read": 0.5},
                            "claude-x": "claude-haiku-4-5", "*": "openai/gpt-5.4-mini"})
    book = pricing.PriceBook(cfg)
    assert book.cost("p", "m1", Usage(1_000_000, 0, 1_000_000, 0, 0)) == 1_500_000_000
    assert book.price("p", "claude-x").basis == "anthropic/claude-haiku-4-5"
    assert book.price("p", "other").basis == "openai/gpt-5.4-mini"


@pytest.mark.parametrize("fields, problem", [
    ({"cost_basis": "antropic"}, "providers.p.cost_basis: must be one of anthropic, azure"),
    ({"prices": []}, "providers.p.prices: must be an object"),
    ({"prices": {"m9": {"input": 1, "output": 1}}}, "providers.p.prices.m9: is not one of this provider's models"),
    ({"prices": {"m1": {"input": 1}}}, "providers.p.prices.m1.output: required"),
    ({"prices": {"m1": {"input": -1, "output": 1}}}, "providers.p.prices.m1.input: must be between 0"),
    ({"prices": {"m1": {"input": "1", "output": 1}}}, "providers.p.prices.m1.input: must be a number"),
    ({"prices": {"m1": {"input": 1, "output": 1, "colour": 1}}}, "providers.p.prices.m1.colour: unknown field"),
    ({"prices": {"m1": "gpt-9"}}, "providers.p.prices.m1: 'gpt-9' names no cost basis"),
    ({"cost_basis": "openai", "prices": {"m1": "gpt-9"}}, "providers.p.prices.m1: no price for 'gpt-9' in the openai table"),
    ({"prices": {"m1": {"input": 1, "output": 1, "above": {"input": 2, "output": 2}}}},
     "providers.p.prices.m1.above.tokens: must be a whole number"),
    ({"prices": {"m1": {"input": 1, "output": 1, "date": "May 1"}}}, "providers.p.prices.m1.date: must be a date"),
])
def test_price_problems_name_their_json_path(fields, problem):
    with pytest.raises(ConfigError) as e:
        _provider(**fields)
    assert any(p.startswith(problem) for p in e.value.problems), e.value.problems
