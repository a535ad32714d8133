"""Management endpoints as functions: what each caller may see and change."""

from __future__ import annotations

import json

import orjson
import pytest

from aperture import mgmt
from aperture.configstore import ConfigStore, compile_config
from aperture.errors import BadRequest, Conflict, Forbidden
from aperture.identity import Identity

KEY = "sk-ant-api03-MGMTSECRET-0123456789"

TEXT = """{
  "providers": {
    "anthropic": {"name": "Anthropic", "description": "Claude models", "baseurl": "https://api.anthropic.com",
                  "apikey": "%s", "authorization": "x-api-key",
                  "models": ["claude-opus-4-7", "claude-sonnet-4-6"], "compatibility": {"anthropic_messages": true}},
    "openai": {"baseurl": "https://api.openai.com", "models": ["gpt-5.4", "gpt-5.4-mini"],
               "compatibility": {"openai_chat": true, "openai_responses": true}},
    "openrouter": {"name": "OpenRouter", "baseurl": "https://openrouter.ai/api/",
                   "models": ["qwen/qwen3-coder", "claude-sonnet-4-6"]},
  },
  "grants": [
    {"src": ["ops@example.com"], "app": {"tailscale.com/cap/aperture": [{"role": "admin"}, {"models": "**"}]}},
    {"src": ["dev@example.com", "tag:ci"],
     "app": {"tailscale.com/cap/aperture": [{"role": "user"}, {"models": "*/claude-sonnet*"}, {"models": "openai/gpt-5.4"}]}},
  ],
}""" % KEY

ADMIN = Identity(login="ops@example.com", display_name="Ops", node_name="ops-mac", node_id="nOPS", source="tailscale")
DEV = Identity(login="dev@example.com", groups=("group:eng",), source="tailscale")
CI = Identity(login="", tags=("tag:ci",), node_name="runner", node_id="nCI", source="tailscale")
STRANGER = Identity(login="who@example.com", source="tailscale")


@pytest.fixture
def state():
    config, policy = compile_config(TEXT)
    return config, policy


def test_models_for_admin_lists_everything_once(state):
    status, body = mgmt.models(ADMIN, *state)
    assert status == 200 and body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["claude-opus-4-7", "claude-sonnet-4-6", "gpt-5.4", "gpt-5.4-mini", "qwen/qwen3-coder"]
    first = body["data"][0]
    assert first == {"id": "claude-opus-4-7", "object": "model", "created": 0, "owned_by": "anthropic",
                     "metadata": {"provider": {"id": "anthropic", "name": "Anthropic"}},
                     "pricing": {"input": "0.000005", "input_cache_read": "0.0000005",
                                 "input_cache_write": "0.00000625",
                                 "input_cache_write_1h": "0.00001", "output": "0.000025"}}
    assert body["data"][2]["metadata"]["provider"] == {"id": "openai", "name": "openai"}
    assert body["data"][2]["pricing"]["output"] == "0.000015"


def test_models_without_a_price_have_no_pricing(state):
    """qwen/qwen3-coder is in no shipped table: no pricing, never zeros."""
    _, body = mgmt.models(ADMIN, *state)
    assert "pricing" not in body["data"][4]


def test_models_for_user_lists_only_granted(state):
    _, body = mgmt.models(DEV, *state)
    assert [(m["id"], m["owned_by"]) for m in body["data"]] == [("claude-sonnet-4-6", "anthropic"), ("gpt-5.4", "openai")]
    _, body = mgmt.models(CI, *state)
    assert [m["id"] for m in body["data"]] == ["claude-sonnet-4-6", "gpt-5.4"]


def test_models_for_no_role_is_empty(state):
    assert mgmt.models(STRANGER, *state) == (200, {"object": "list", "data": []})
    assert mgmt.providers(STRANGER, *state) == (200, [])


def test_providers_for_user(state):
    status, body = mgmt.providers(DEV, *state)
    assert status == 200
    assert [p["id"] for p in body] == ["anthropic", "openai", "openrouter"]
    ant = body[0]
    assert ant["name"] == "Anthropic" and ant["description"] == "Claude models"
    assert ant["models"] == ["claude-sonnet-4-6"]
    assert ant["compatibility"]["anthropic_messages"] is True
    assert ant["compatibility"]["openai_chat"] is False
    assert body[1]["models"] == ["gpt-5.4"]
    assert body[1]["compatibility"]["openai_responses"] is True
    assert body[2]["models"] == ["claude-sonnet-4-6"]
    assert KEY not in json.dumps(body)
    assert "apikey" not in json.dumps(body)


def test_whoami(state):
    policy = state[1]
    assert mgmt.whoami(ADMIN, policy) == (200, {
        "login": "ops@example.com", "display_name": "Ops", "node": {"name": "ops-mac", "id": "nOPS"},
        "tags": [], "groups": [], "role": "admin", "models": ["**"], "tailnet_grants": [],
        "source": "tailscale",
    })
    _, body = mgmt.whoami(CI, policy)
    assert body["login"] == "" and body["tags"] == ["tag:ci"] and body["role"] == "user"
    _, body = mgmt.whoami(DEV, policy)
    assert body["groups"] == ["group:eng"]
    assert mgmt.whoami(STRANGER, policy)[1]["role"] is None
    assert mgmt.whoami(STRANGER, policy)[1]["models"] == []


def make_store(tmp_path):
    path = tmp_path / "aperture.hujson"
    path.write_text(TEXT)
    return ConfigStore.open(str(path))


def test_get_config_admin_only(tmp_path):
    store = make_store(tmp_path)
    status, body = mgmt.get_config(ADMIN, store)
    assert status == 200 and set(body) == {"config", "hash", "exists"}
    assert KEY not in body["config"]
    for who in (DEV, CI, STRANGER):
        with pytest.raises(Forbidden) as e:
            mgmt.get_config(who, store)
        assert e.value.status == 403


def test_put_config(tmp_path):
    store = make_store(tmp_path)
    _, got = mgmt.get_config(ADMIN, store)
    new = got["config"].replace('"gpt-5.4-mini"]', '"gpt-5.4-mini", "o3"]')
    status, body = mgmt.put_config(ADMIN, store, orjson.dumps({"config": new, "hash": got["hash"]}))
    assert status == 200 and body["hash"] != got["hash"]
    assert KEY not in json.dumps(body)
    assert store.current[0].providers["anthropic"].apikey == KEY
    with pytest.raises(Conflict):
        mgmt.put_config(ADMIN, store, orjson.dumps({"config": new, "hash": got["hash"]}))


def test_put_config_refuses_non_admins_before_parsing(tmp_path):
    store = make_store(tmp_path)
    with pytest.raises(Forbidden):
        mgmt.put_config(DEV, store, b"not json at all")


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b'"x"', ('{"config": "%s' % KEY).encode()])
def test_put_config_bad_json(tmp_path, body):
    store = make_store(tmp_path)
    with pytest.raises(BadRequest) as e:
        mgmt.put_config(ADMIN, store, body)
    assert e.value.status == 400
    assert KEY not in e.value.message
