"""Gemini CLI (pinned in conftest.CLIENTS) on the Gemini API through
aperture: the README's settings.json (API-key auth type) and base URL variable."""

from __future__ import annotations

import json

import pytest

from tests.clients import checks
from tests.clients.conftest import MARKER, TEST_TIMEOUT, base_env, binary, placeholder_key

pytestmark = [pytest.mark.agents, pytest.mark.timeout(TEST_TIMEOUT)]

SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"disableAutoUpdate": True}}
#: Gemini CLI asks this model how hard the prompt is (a JSON answer) ...
ROUTER = "gemini-3.5-flash-lite"
#: ... and sends an easy one (the simulator's score is the schema's example, 1) to this one
FLASH = "gemini-3.8-flash"


def run_gemini(gateway, home, workdir, prompt: str, expect: int):
    key = placeholder_key()
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    env = base_env(home, GEMINI_API_KEY=key, GOOGLE_GEMINI_BASE_URL=gateway.url,
                   GEMINI_CLI_TRUST_WORKSPACE="true")
    run = gateway.run([binary("gemini-cli"), "-p", prompt], env, workdir, expect)
    assert run.returncode == 0, run.explain()
    assert len(run.records) == expect, run.explain()
    checks.check_no_secret(run.records, key)
    router, *turns = run.records
    checks.check_record(router, api="gemini_generate_content", provider="gemini", model=ROUTER,
                        stream=False)
    assert router["path"] == "/v1beta/models/%s:generateContent" % ROUTER
    verdict = json.loads(checks.answer_text(router))
    assert set(verdict) == {"complexity_reasoning", "complexity_score"}
    for record in turns:
        checks.check_record(record, api="gemini_generate_content", provider="gemini", model=FLASH)
        assert record["path"] == "/v1beta/models/%s:streamGenerateContent?alt=sse" % FLASH
    return run, turns


def test_plain_answer(gateway, home, workdir):
    run, [record] = run_gemini(gateway, home, workdir, "Say hello.", expect=2)
    assert run.stdout.strip() == checks.answer_text(record), run.explain()


def test_reads_a_file_in_two_turns(gateway, home, workdir):
    notes = workdir / "notes.txt"
    secret = notes.read_text().strip()
    run, [call, answer] = run_gemini(gateway, home, workdir,
                                     "Summarize the notes. %s%s" % (MARKER, notes), expect=3)
    checks.check_tool_call(call, "read_file", str(notes))
    text = checks.answer_text(answer)
    checks.check_quote(text, str(notes), secret)
    assert run.stdout.strip() == text, run.explain()
    assert checks.one_session([call, answer])


def test_unknown_model_is_a_readable_404(gateway, home, workdir):
    """A model aperture does not serve: one 404 in Google's shape, whose
    message Gemini CLI prints; no retry."""
    key = placeholder_key()
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    env = base_env(home, GEMINI_API_KEY=key, GOOGLE_GEMINI_BASE_URL=gateway.url,
                   GEMINI_CLI_TRUST_WORKSPACE="true")
    run = gateway.run([binary("gemini-cli"), "-p", "Say hello.", "-m", "gemini-nope"], env, workdir, 1)
    assert run.returncode == 1, run.explain()
    message = "model gemini-nope not found (GET /v1/models lists the models you may use)"
    assert message in run.stdout + run.stderr, run.explain()
    [record] = run.records
    assert (record["status"], record["state"], record["error"]) == (404, "refused", message)
    assert json.loads(record["response_body"])["error"]["status"] == "NOT_FOUND"
    checks.check_no_secret(run.records, key)
