"""Claude Code (pinned in conftest.CLIENTS) in its three modes, through
aperture's embedded default: the settings are the README's recipes."""

from __future__ import annotations

import json

import pytest

from tests.clients import checks
from tests.clients.conftest import MARKER, TEST_TIMEOUT, base_env, binary, placeholder_key

pytestmark = [pytest.mark.agents, pytest.mark.timeout(TEST_TIMEOUT)]

QUIET = {"DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
         "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


def settings(mode: str, url: str, key: str) -> dict:
    """~/.claude/settings.json of each mode (README, "Clients")."""
    if mode == "anthropic":
        return {"apiKeyHelper": "echo %s" % key, "env": {"ANTHROPIC_BASE_URL": url}}
    if mode == "bedrock":
        return {"env": {"CLAUDE_CODE_USE_BEDROCK": "1", "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
                        "ANTHROPIC_BEDROCK_BASE_URL": url + "/bedrock", "AWS_REGION": "us-east-1"}}
    return {"env": {"CLAUDE_CODE_USE_VERTEX": "1", "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
                    "ANTHROPIC_VERTEX_BASE_URL": url + "/v1",
                    "ANTHROPIC_VERTEX_PROJECT_ID": "_aperture_auto_vertex_project_id_",
                    "CLOUD_ML_REGION": "_aperture_auto_vertex_region_"}}


# mode -> (api, provider, the model recorded for Claude Code's default model,
#          the model recorded for --model claude-sonnet-4-6)
MODES = {
    "anthropic": ("anthropic_messages", "anthropic", "claude-opus-5-5", "claude-sonnet-4-6"),
    "bedrock": ("bedrock_model_invoke", "bedrock", "us.anthropic.claude-opus-5-5",
                "us.anthropic.claude-sonnet-4-6"),
    "vertex": ("google_raw_predict", "vertex", "claude-opus-5-5", "claude-sonnet-4-6"),
}


def run_claude(gateway, home, workdir, mode: str, prompt: str, *flags: str, expect: int):
    key = placeholder_key()
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(json.dumps(settings(mode, gateway.url, key)))
    run = gateway.run([binary("claude-code"), "-p", prompt, *flags], base_env(home, **QUIET),
                      workdir, expect)
    assert run.returncode == 0, run.explain()
    assert len(run.records) == expect, run.explain()
    checks.check_no_secret(run.records, key)
    return run


@pytest.mark.parametrize("mode", MODES)
def test_default_model_reads_a_file_in_two_turns(gateway, home, workdir, mode):
    """No --model: Claude Code's own default model is served. The marker
    makes the simulator ask for one Read; Claude Code runs it and sends the
    result; the answer quotes the file."""
    api, provider, model, _ = MODES[mode]
    notes = workdir / "notes.txt"
    secret = notes.read_text().strip()
    run = run_claude(gateway, home, workdir, mode, "Summarize the notes. %s%s" % (MARKER, notes),
                     expect=2)
    call, answer = run.records
    for record in run.records:
        checks.check_record(record, api=api, provider=provider, model=model)
    checks.check_tool_call(call, "Read", str(notes))
    text = checks.answer_text(answer)
    checks.check_quote(text, str(notes), secret)
    assert run.stdout.strip() == text, run.explain()
    session = checks.one_session(run.records)
    headers = dict(call["request_headers"])
    assert session == headers["x-claude-code-session-id"]
    if mode == "bedrock":
        assert call["path"] == "/bedrock/model/%s/invoke-with-response-stream" % model
        body = checks.request_json(call)
        assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body


@pytest.mark.parametrize("mode", MODES)
def test_model_flag_plain_answer(gateway, home, workdir, mode):
    """--model claude-sonnet-4-6: that model, and without a marker a plain
    text answer though Claude Code's prompt talks about its tools."""
    api, provider, _, model = MODES[mode]
    run = run_claude(gateway, home, workdir, mode, "Say hello.", "--model", "claude-sonnet-4-6",
                     expect=1)
    [record] = run.records
    checks.check_record(record, api=api, provider=provider, model=model)
    assert "tool" in json.dumps(checks.request_json(record)).lower()
    text = checks.answer_text(record)
    assert run.stdout.strip() == text, run.explain()
    if mode == "bedrock":  # Claude Code asks for the inference profile of that model
        assert record["path"] == "/bedrock/model/%s/invoke-with-response-stream" % model


def test_bedrock_inference_profile_of_another_region(gateway, home, workdir):
    """A Bedrock id the provider does not list as such (another region's
    inference profile) routes to the listed model; the path goes upstream as
    Claude Code sent it."""
    run = run_claude(gateway, home, workdir, "bedrock", "Say hello.", "--model",
                     "global.anthropic.claude-sonnet-4-6", expect=1)
    [record] = run.records
    checks.check_record(record, api="bedrock_model_invoke", provider="bedrock",
                        model="us.anthropic.claude-sonnet-4-6")
    assert record["path"] == ("/bedrock/model/global.anthropic.claude-sonnet-4-6"
                              "/invoke-with-response-stream")
    assert run.stdout.strip() == checks.answer_text(record), run.explain()


def test_unknown_model_is_a_readable_404(gateway, home, workdir):
    """A model aperture does not serve: a 404 in Anthropic's shape naming
    it, which Claude Code shows instead of an answer; every request captured."""
    key = placeholder_key()
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(
        json.dumps(settings("anthropic", gateway.url, key)))
    run = gateway.run([binary("claude-code"), "-p", "Say hello.", "--model", "claude-nope"],
                      base_env(home, **QUIET), workdir, 1)
    assert run.returncode == 1, run.explain()
    assert "claude-nope" in run.stdout, run.explain()
    assert run.records, run.explain()
    for record in run.records:
        assert (record["status"], record["state"], record["model"]) == (404, "refused", "claude-nope")
        assert record["error"] == "model claude-nope not found (GET /v1/models lists the models you may use)"
        body = json.loads(record["response_body"])
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    checks.check_no_secret(run.records, key)
