"""The admin configuration: masked keys, hash races, lockout, atomic files, reload."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading

import pytest

from aperture import hujson
from aperture.configstore import MASK, ConfigStore, compile_config, mask_secrets, secret_spans, text_hash
from aperture.errors import BadRequest, ConfigError, Conflict, Forbidden
from aperture.identity import Identity

ANT_KEY = "sk-ant-api03-SECRETSECRETSECRET-aaaa"
OAI_KEY = "sk-proj-OPENAIKEY0123456789"
OBJ_KEY = "sk-or-v1-OBJECTFORMKEY9876"
NEW_KEY = "sk-ant-api03-BRANDNEWKEY-zzzz"
ALL_KEYS = (ANT_KEY, OAI_KEY, OBJ_KEY, NEW_KEY)

ADMIN = Identity(login="ops@example.com", source="tailscale")
ADMIN2 = Identity(login="lead@example.com", source="tailscale")
USER = Identity(login="dev@example.com", source="tailscale")

TEXT = f"""// aperture configuration
{{
  "providers": {{
    "anthropic": {{
      "baseurl": "https://api.anthropic.com",
      "apikey": "{ANT_KEY}", // rotated monthly
      "authorization": "x-api-key",
      "models": ["claude-opus-4-7", "claude-sonnet-4-6",],
      "compatibility": {{"anthropic_messages": true}},
    }},
    /* OpenAI, default bearer auth */
    "openai": {{"baseurl": "https://api.openai.com", "apikey": "{OAI_KEY}", "models": ["gpt-5.4"]}},
    "openrouter": {{
      "baseurl": "https://openrouter.ai/api/",
      "authorization": {{"type": "bearer", "value": "{OBJ_KEY}"}},
      "models": ["qwen/qwen3-coder"],
    }},
    "local": {{"baseurl": "http://127.0.0.1:8080", "apikey": "", "auth_mode": "none", "models": ["llama"]}},
  }},
  "grants": [
    {{"src": ["ops@example.com", "lead@example.com"],
      "app": {{"tailscale.com/cap/aperture": [{{"role": "admin"}}, {{"models": "**"}}]}}}},
    {{"src": ["*"], "app": {{"tailscale.com/cap/aperture": [{{"role": "user"}}, {{"models": "anthropic/**"}}]}}}},
  ],
}}
"""


def make_store(tmp_path, text=TEXT, name="aperture.hujson"):
    path = tmp_path / name
    path.write_text(text)
    return ConfigStore.open(str(path)), path


def no_keys(*texts):
    for t in texts:
        for k in ALL_KEYS:
            assert k not in t, f"key leaked: {t[:200]!r}"


# --- masking ---------------------------------------------------------------------------


def test_secret_spans_find_every_key():
    spans = secret_spans(TEXT)
    got = [(pid, json.loads(TEXT[s:e])) for pid, s, e in spans]
    assert got == [("anthropic", ANT_KEY), ("openai", OAI_KEY), ("openrouter", OBJ_KEY), ("local", "")]


def test_secret_spans_ignore_keys_outside_providers_and_in_strings():
    text = '{"hooks": {"x": {"apikey": "nope"}}, "providers": {"p": {"models": ["apikey"], "name": "\\"apikey\\": x"}}}'
    assert secret_spans(text) == []
    assert secret_spans("{not json") is None


def test_get_masks_keys_and_keeps_layout(tmp_path):
    store, _ = make_store(tmp_path)
    got = store.get()
    assert set(got) == {"config", "exists", "hash"}
    assert got["exists"] is True
    assert got["hash"] == text_hash(TEXT)
    masked = got["config"]
    no_keys(masked)
    assert masked.count(f'"{MASK}"') == 3
    assert '"apikey": "",' in masked  # an empty key stays empty
    # comments, trailing commas and line layout are untouched
    assert masked.splitlines()[0] == "// aperture configuration"
    assert f'"apikey": "{MASK}", // rotated monthly' in masked
    assert "/* OpenAI, default bearer auth */" in masked
    assert len(masked.splitlines()) == len(TEXT.splitlines())
    # the masked text is still a valid configuration
    hujson.loads(masked)


def test_mask_hides_a_key_repeated_in_a_comment():
    text = TEXT.replace("// rotated monthly", f"// old: {ANT_KEY}")
    masked = mask_secrets(text)
    no_keys(masked)


def test_mask_hides_escaped_keys():
    key = 'sk-with"quote\\and-backslash'
    text = '{"providers": {"p": {"baseurl": "http://h", "models": ["m"], "apikey": ' + json.dumps(key) + "}}}"
    masked = mask_secrets(text)
    assert key not in masked and json.dumps(key)[1:-1] not in masked
    assert json.loads(masked)["providers"]["p"]["apikey"] == MASK


# --- PUT --------------------------------------------------------------------------------


def test_put_roundtrip_keeps_masked_keys(tmp_path):
    store, path = make_store(tmp_path)
    got = store.get()
    edited = got["config"].replace('"models": ["gpt-5.4"]', '"models": ["gpt-5.4", "gpt-5.4-mini"]')
    result = store.put({"config": edited, "hash": got["hash"]}, ADMIN)
    no_keys(json.dumps(result))
    on_disk = path.read_text()
    assert ANT_KEY in on_disk and OAI_KEY in on_disk and OBJ_KEY in on_disk
    assert "gpt-5.4-mini" in on_disk
    assert "// rotated monthly" in on_disk
    config, policy = store.current
    assert config.providers["anthropic"].apikey == ANT_KEY
    assert config.providers["openai"].apikey == OAI_KEY
    assert config.providers["openrouter"].apikey == OBJ_KEY
    assert config.providers["openai"].models == ("gpt-5.4", "gpt-5.4-mini")
    assert result["hash"] == store.hash == text_hash(on_disk) != got["hash"]
    assert result["config"] == store.get()["config"]


def test_put_with_a_new_key_replaces_it(tmp_path):
    store, path = make_store(tmp_path)
    got = store.get()
    edited = got["config"].replace(f'"apikey": "{MASK}", // rotated', f'"apikey": "{NEW_KEY}", // rotated')
    result = store.put({"config": edited, "hash": got["hash"]}, ADMIN)
    assert store.current[0].providers["anthropic"].apikey == NEW_KEY
    assert store.current[0].providers["openai"].apikey == OAI_KEY
    no_keys(result["config"])


def test_put_mask_follows_the_provider_id_not_the_position(tmp_path):
    store, _ = make_store(tmp_path)
    got = store.get()
    doc = json.loads(hujson.standardize(got["config"]))
    providers = doc["providers"]
    doc["providers"] = {"openai": providers["openai"], "anthropic": providers["anthropic"]}  # reordered
    store.put({"config": json.dumps(doc, indent=2), "hash": got["hash"]}, ADMIN)
    assert store.current[0].providers["anthropic"].apikey == ANT_KEY
    assert store.current[0].providers["openai"].apikey == OAI_KEY
    assert "openrouter" not in store.current[0].providers


def test_put_mask_on_a_new_provider_is_a_problem(tmp_path):
    store, path = make_store(tmp_path)
    got = store.get()
    edited = got["config"].replace('"openai":', '"openai-2":')
    with pytest.raises(BadRequest) as e:
        store.put({"config": edited, "hash": got["hash"]}, ADMIN)
    assert e.value.status == 400
    assert f"providers.openai-2: the masked key {MASK}" in e.value.message
    assert path.read_text() == TEXT


def test_put_invalid_config_gives_check_config_problems(tmp_path):
    store, path = make_store(tmp_path)
    got = store.get()
    edited = got["config"].replace('"baseurl": "https://api.openai.com"', '"baseurl": 5').replace(
        '{"role": "user"}', '{"role": "owner"}'
    )
    with pytest.raises(BadRequest) as e:
        store.put({"config": edited, "hash": got["hash"]}, ADMIN)
    lines = e.value.message.splitlines()
    assert "providers.openai.baseurl: must be a string, not a number" in lines
    assert any(line.startswith('grants[1].app["tailscale.com/cap/aperture"][0].role:') for line in lines)
    try:
        compile_config(edited.replace(f'"{MASK}"', '"x"'))
    except ConfigError as ce:
        assert len(ce.problems) == len(lines)
    no_keys(e.value.message)
    assert path.read_text() == TEXT
    assert store.hash == got["hash"]


def test_put_syntax_error(tmp_path):
    store, _ = make_store(tmp_path)
    with pytest.raises(BadRequest) as e:
        store.put({"config": '{"providers": {', "hash": store.hash}, ADMIN)
    assert "line 1" in e.value.message


def test_put_error_messages_never_contain_keys(tmp_path):
    store, _ = make_store(tmp_path)
    # a key pasted into a wrong field is not echoed back either
    bad = TEXT.replace('"name"', '"x"').replace('"baseurl": "https://api.openai.com"', f'"baseurl": "{NEW_KEY}"')
    with pytest.raises(BadRequest) as e:
        store.put({"config": bad, "hash": store.hash}, ADMIN)
    no_keys(e.value.message)


@pytest.mark.parametrize(
    "body,status",
    [([], 400), ({"hash": "x"}, 400), ({"config": 1, "hash": "x"}, 400), ({"config": "{}"}, 400),
     ({"config": "{}", "hash": ""}, 400)],
)
def test_put_bad_bodies(tmp_path, body, status):
    store, _ = make_store(tmp_path)
    with pytest.raises(BadRequest) as e:
        store.put(body, ADMIN)
    assert e.value.status == status


def test_put_stale_hash_is_409(tmp_path):
    store, path = make_store(tmp_path)
    with pytest.raises(Conflict) as e:
        store.put({"config": TEXT, "hash": "0" * 64}, ADMIN)
    assert e.value.status == 409
    assert path.read_text() == TEXT


def test_two_admins_one_hash_one_wins(tmp_path):
    store, path = make_store(tmp_path)
    got = store.get()
    a = got["config"].replace('"gpt-5.4"]', '"gpt-5.4", "a-model"]')
    b = got["config"].replace('"gpt-5.4"]', '"gpt-5.4", "b-model"]')
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def save(name, who, text):
        barrier.wait()
        try:
            results[name] = store.put({"config": text, "hash": got["hash"]}, who)
        except Conflict as e:
            results[name] = e

    threads = [threading.Thread(target=save, args=("a", ADMIN, a)), threading.Thread(target=save, args=("b", ADMIN2, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conflicts = [r for r in results.values() if isinstance(r, Conflict)]
    wins = [r for r in results.values() if isinstance(r, dict)]
    assert len(conflicts) == 1 and len(wins) == 1
    on_disk = path.read_text()
    assert ("a-model" in on_disk) != ("b-model" in on_disk)
    assert store.hash == text_hash(on_disk)


def test_sequential_puts_with_one_hash(tmp_path):
    store, _ = make_store(tmp_path)
    got = store.get()
    store.put({"config": got["config"], "hash": got["hash"]}, ADMIN)  # same text: hash unchanged
    edited = got["config"].replace("gpt-5.4", "gpt-5.5")
    store.put({"config": edited, "hash": got["hash"]}, ADMIN)
    with pytest.raises(Conflict):
        store.put({"config": got["config"], "hash": got["hash"]}, ADMIN2)


def test_non_admin_cannot_put(tmp_path):
    store, path = make_store(tmp_path)
    with pytest.raises(Forbidden) as e:
        store.put({"config": TEXT, "hash": store.hash}, USER)
    assert e.value.status == 403 and "admin" in e.value.message
    assert path.read_text() == TEXT


def test_lockout_is_refused(tmp_path):
    store, path = make_store(tmp_path)
    got = store.get()
    edited = got["config"].replace('"src": ["ops@example.com", "lead@example.com"]', '"src": ["lead@example.com"]')
    with pytest.raises(Forbidden) as e:
        store.put({"config": edited, "hash": got["hash"]}, ADMIN)
    assert "admin role away from you (ops@example.com)" in e.value.message
    assert path.read_text() == TEXT
    # the other admin may make the same change: they stay admin
    store.put({"config": edited, "hash": got["hash"]}, ADMIN2)
    assert store.current[1].role(ADMIN) == "user"
    assert store.current[1].role(ADMIN2) == "admin"


def test_demoting_everyone_is_refused(tmp_path):
    store, _ = make_store(tmp_path)
    got = store.get()
    edited = got["config"].replace('{"role": "admin"}', '{"role": "user"}')
    with pytest.raises(Forbidden):
        store.put({"config": edited, "hash": got["hash"]}, ADMIN)


def test_atomic_replace_keeps_prev(tmp_path):
    store, path = make_store(tmp_path)
    os.chmod(path, 0o640)
    got = store.get()
    edited = got["config"].replace("gpt-5.4", "gpt-5.5")
    store.put({"config": edited, "hash": got["hash"]}, ADMIN)
    prev = tmp_path / "aperture.hujson.prev"
    assert prev.read_text() == TEXT
    assert "gpt-5.5" in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o640
    second = store.get()
    store.put({"config": second["config"].replace("gpt-5.5", "gpt-5.6"), "hash": second["hash"]}, ADMIN)
    assert "gpt-5.5" in prev.read_text()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_failed_write_keeps_everything(tmp_path, monkeypatch):
    import aperture.configstore as mod

    store, path = make_store(tmp_path)
    got = store.get()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod.os, "replace", boom)
    with pytest.raises(mod.GatewayError) as e:
        store.put({"config": got["config"].replace("gpt-5.4", "gpt-5.5"), "hash": got["hash"]}, ADMIN)
    assert "No space left" in e.value.message
    monkeypatch.undo()
    assert path.read_text() == TEXT
    assert store.hash == got["hash"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_in_flight_request_keeps_its_tuple(tmp_path):
    store, _ = make_store(tmp_path)
    config, policy = store.current  # a request starting now
    got = store.get()
    store.put({"config": got["config"].replace('"anthropic/**"', '"openai/**"'), "hash": got["hash"]}, ADMIN)
    assert policy.check(USER, "anthropic", "claude-opus-4-7") is None
    assert store.current[1].check(USER, "anthropic", "claude-opus-4-7") is not None
    assert store.current[0] is not config


def test_embedded_default_is_read_only(tmp_path):
    config, policy = compile_config(TEXT, source="<default>")
    store = ConfigStore(None, config, policy)
    got = store.get()
    assert got["exists"] is False
    with pytest.raises(BadRequest) as e:
        store.put({"config": TEXT, "hash": got["hash"]}, ADMIN)
    assert e.value.message == "configuration is embedded; start with --config FILE to edit it"
    assert store.reload() is False


def test_put_creates_a_missing_file(tmp_path):
    config, policy = compile_config(TEXT)
    path = tmp_path / "new.hujson"
    store = ConfigStore(str(path), config, policy)
    got = store.get()
    assert got["exists"] is False
    store.put({"config": got["config"], "hash": got["hash"]}, ADMIN)
    assert path.read_text() == TEXT
    assert (path.stat().st_mode & 0o777) == 0o600
    assert not (tmp_path / "new.hujson.prev").exists()
    assert store.get()["exists"] is True


# --- reload -----------------------------------------------------------------------------


def test_reload_applies_a_valid_change(tmp_path):
    store, path = make_store(tmp_path)
    assert store.reload() is False  # unchanged
    path.write_text(TEXT.replace('"gpt-5.4"]', '"gpt-5.4", "o3"]'))
    assert store.reload() is True
    assert "o3" in store.current[0].providers["openai"].models
    assert store.hash == text_hash(path.read_text())


def test_reload_has_no_lockout_check(tmp_path):
    store, path = make_store(tmp_path)
    path.write_text(TEXT.replace('{"role": "admin"}', '{"role": "user"}'))
    assert store.reload() is True
    assert store.current[1].role(ADMIN) == "user"


def test_reload_of_a_broken_file_keeps_the_running_config(tmp_path, caplog):
    store, path = make_store(tmp_path)
    before = store.current
    path.write_text(TEXT.replace('"baseurl": "https://api.openai.com"', f'"baseurl": "{NEW_KEY}"'))
    with caplog.at_level(logging.INFO, logger="aperture"):
        assert store.reload() is False
    assert store.current is before
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "is invalid; keeping the running configuration" in text
    assert "providers.openai.baseurl" in text
    no_keys(text)
    path.write_text("{ not json")
    assert store.reload() is False
    path.unlink()
    assert store.reload() is False
    assert store.current is before


def test_watch_follows_the_file(tmp_path):
    store, path = make_store(tmp_path)

    async def go():
        task = asyncio.ensure_future(store.watch(interval=0.02))
        await asyncio.sleep(0.05)
        path.write_text(TEXT.replace('"gpt-5.4"]', '"gpt-5.4", "o4"]'))
        for _ in range(200):
            await asyncio.sleep(0.02)
            if "o4" in store.current[0].providers["openai"].models:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert "o4" in store.current[0].providers["openai"].models


def test_keys_never_logged(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        store, path = make_store(tmp_path)
        got = store.get()
        store.put({"config": got["config"].replace("gpt-5.4", "gpt-5.5"), "hash": got["hash"]}, ADMIN)
        for bad in ({"config": "{", "hash": store.hash}, {"config": TEXT.replace("https://", "ftp://"), "hash": store.hash}):
            with pytest.raises(BadRequest) as e:
                store.put(bad, ADMIN)
            no_keys(e.value.message)
        path.write_text(TEXT.replace('"models": ["llama"]', '"models": []'))
        store.reload()
    no_keys("\n".join(r.getMessage() for r in caplog.records), repr(store.current[0]), repr(store.current[0].providers))
