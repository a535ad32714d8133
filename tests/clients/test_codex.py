"""Codex (pinned in conftest.CLIENTS) with aperture as its Responses API
provider: the README's config.toml."""

from __future__ import annotations

import re

import pytest

from tests.clients import checks
from tests.clients.conftest import MARKER, TEST_TIMEOUT, base_env, binary, placeholder_key

pytestmark = [pytest.mark.agents, pytest.mark.timeout(TEST_TIMEOUT)]

CONFIG = """\
model_provider = "aperture"
check_for_update_on_startup = false

[model_providers.aperture]
name = "aperture"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "OPENAI_API_KEY"

[analytics]
enabled = false
"""
DEFAULT_MODEL = "gpt-6.2-sol"


def run_codex(gateway, home, workdir, prompt: str, expect: int):
    key = placeholder_key()
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(CONFIG.format(url=gateway.url))
    run = gateway.run([binary("codex"), "exec", "--skip-git-repo-check", prompt],
                      base_env(home, OPENAI_API_KEY=key), workdir, expect)
    assert run.returncode == 0, run.explain()
    assert len(run.records) == expect, run.explain()
    checks.check_no_secret(run.records, key)
    for record in run.records:
        checks.check_record(record, api="openai_responses", provider="openai", model=DEFAULT_MODEL)
        body = checks.request_json(record)
        assert body["store"] is False and body["stream"] is True
    # One session: the one Codex names in its session-id header and prints.
    session = checks.one_session(run.records)
    printed = re.search(r"session id: (\S+)", run.stderr)
    assert printed is not None and printed.group(1) == session, run.explain()
    assert all(dict(r["request_headers"])["session-id"] == session for r in run.records)
    return run


def test_plain_answer(gateway, home, workdir):
    run = run_codex(gateway, home, workdir, "Say hello.", expect=1)
    [record] = run.records
    assert run.stdout.strip() == checks.answer_text(record), run.explain()


def test_reads_a_file_in_two_turns(gateway, home, workdir):
    """Codex's default model offers its tools through one freeform `exec`
    tool (JavaScript that calls the nested tools): the simulator's call runs
    `cat` through the nested `exec_command`, Codex sends the output back,
    and the answer quotes it."""
    notes = workdir / "notes.txt"
    secret = notes.read_text().strip()
    run = run_codex(gateway, home, workdir, "Summarize the notes. %s%s" % (MARKER, notes), expect=2)
    call, answer = run.records
    checks.check_tool_call(call, "exec", str(notes))
    outputs = [item for item in checks.request_json(answer)["input"]
               if item.get("type") == "custom_tool_call_output"]
    assert len(outputs) == 1 and secret in str(outputs[0]["output"])
    text = checks.answer_text(answer)
    checks.check_quote(text, str(notes), secret)
    assert run.stdout.strip() == text, run.explain()
