"""OpenCode (pinned in conftest.CLIENTS) with each provider kind pointed at
aperture: the README's opencode.json recipes."""

from __future__ import annotations

import json
import os

import pytest

from tests.clients import checks
from tests.clients.conftest import MARKER, TEST_TIMEOUT, base_env, binary, install, placeholder_key

pytestmark = [pytest.mark.agents, pytest.mark.timeout(TEST_TIMEOUT)]

QUIET = {"OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
         "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
         "OPENCODE_DISABLE_SHARE": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1"}

# provider kind -> (AI SDK package, model, api aperture serves it with, aperture provider)
KINDS = {
    "openai-compatible": ("@ai-sdk/openai-compatible", "gpt-5.4", "openai_chat", "openai"),
    "openai": ("@ai-sdk/openai", "gpt-5.4", "openai_responses", "openai"),
    "anthropic": ("@ai-sdk/anthropic", "claude-sonnet-4-6", "anthropic_messages", "anthropic"),
}


def config(kind: str, url: str, key: str) -> dict:
    npm, model, _, _ = KINDS[kind]
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {"aperture": {"npm": npm, "name": "aperture",
                                  "options": {"baseURL": url + "/v1", "apiKey": key},
                                  "models": {model: {"name": model}}}},
        "model": "aperture/" + model,
    }


def prepare_home(home) -> None:
    """OpenCode installs its plugin package into its config directory when it
    is missing: give it the one installed with the client, so nothing is
    fetched while it runs."""
    plugin = install("opencode-plugin")
    cfg = home / ".config" / "opencode"
    cfg.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        (cfg / name).write_bytes((plugin / name).read_bytes())
    os.symlink(plugin / "node_modules", cfg / "node_modules")


def run_opencode(gateway, home, workdir, kind: str, prompt: str, expect: int):
    key = placeholder_key()
    prepare_home(home)
    path = home / "opencode.json"
    path.write_text(json.dumps(config(kind, gateway.url, key)))
    run = gateway.run([binary("opencode"), "run", prompt],
                      base_env(home, OPENCODE_CONFIG=str(path), **QUIET), workdir, expect)
    assert run.returncode == 0, run.explain()
    assert len(run.records) == expect, run.explain()
    checks.check_no_secret(run.records, key)
    assert not (home / ".npm").exists(), "OpenCode fetched packages from npm while it ran"
    _, model, api, provider = KINDS[kind]
    for record in run.records:
        checks.check_record(record, api=api, provider=provider, model=model)
    assert checks.one_session(run.records).startswith("ses_")
    # The session title is asked for in a request without tools; the agent's turns offer them.
    titles = [r for r in run.records if "tools" not in checks.request_json(r)]
    turns = [r for r in run.records if "tools" in checks.request_json(r)]
    assert len(titles) == 1, run.explain()
    return run, sorted(turns, key=lambda r: r["time"])


def test_openai_compatible_plain_answer(gateway, home, workdir):
    run, [turn] = run_opencode(gateway, home, workdir, "openai-compatible", "Say hello.", expect=2)
    assert run.stdout.strip() == checks.answer_text(turn), run.explain()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_reads_a_file_in_two_turns(gateway, home, workdir, kind):
    notes = workdir / "notes.txt"
    secret = notes.read_text().strip()
    run, [call, answer] = run_opencode(gateway, home, workdir, kind,
                                       "Summarize the notes. %s%s" % (MARKER, notes), expect=3)
    checks.check_tool_call(call, "read", str(notes))
    text = checks.answer_text(answer)
    checks.check_quote(text, str(notes), secret)
    assert run.stdout.strip() == text, run.explain()
