"""The simulator facing a coding agent (aperture.sim.agent): the marked
two-turn exchange in each format, and no tool call without the marker."""

from __future__ import annotations

import json

import orjson
import pytest

from aperture.sim import agent, anthropic, gemini, openai_chat, openai_responses
from aperture.sim.common import text_of, tool_call_tokens

PATH = "/work/notes.txt"
PROMPT = "Summarize the notes. sim-read-file:" + PATH
STRING = {"type": "string"}


@pytest.mark.parametrize("text, path", [
    (PROMPT, PATH), ('"%s"' % PROMPT, PATH), (PROMPT + ".", PATH), ("(sim-read-file:/a/b)", "/a/b"),
    ("sim-read-file:/a sim-read-file:/b please", "/b"), ("read /work/notes.txt", None),
    ("sim-read-file:", None),
])
def test_marker(text, path):
    assert agent.marked_path(text) == path


@pytest.mark.parametrize("tools, call", [
    ([("Bash", {"properties": {"command": STRING}}),
      ("Read", {"properties": {"file_path": STRING, "offset": {"type": "integer"}}})],
     ("Read", {"file_path": PATH}, None)),
    ([("read_file", {"properties": {"absolute_path": STRING}})],
     ("read_file", {"absolute_path": PATH}, None)),
    ([("read", {"properties": {"filePath": STRING}})], ("read", {"filePath": PATH}, None)),
    ([("shell", {"properties": {"command": {"type": "array", "items": STRING}}})],
     ("shell", {"command": ["cat", PATH]}, None)),
    ([("exec_command", {"properties": {"cmd": STRING}})],
     ("exec_command", {"cmd": "cat " + PATH}, None)),
    ([("exec", {"freeform": "... `await tools.exec_command(...)` ..."})],
     ("exec", {}, 'const r = await tools.exec_command({cmd: "cat %s"});\ntext(r);' % PATH)),
    ([("exec", {"freeform": "runs code"}), ("write", {"properties": {"filePath": STRING}})], None),
])
def test_read_call_in_the_agents_vocabulary(tools, call):
    assert agent.read_call(tools, PATH) == (None if call is None else agent.ToolCall(*call))


def test_quote_counts_its_words():
    answer = agent.text_answer(agent.quote(PATH, "  1\tThe launch code\n is kiwi.\n"))
    assert "".join(answer.text) == "The file /work/notes.txt says: 1 The launch code is kiwi."
    assert answer.words == answer.output_tokens == 10


READ = {"name": "Read", "description": "Read a file; this tool reads files",
        "input_schema": {"type": "object", "properties": {"file_path": STRING}}}


def anthropic_request(messages, system="You are an agent. Use your tools well."):
    return {"model": "m", "max_tokens": 100, "system": system, "tools": [READ],
            "messages": messages}


def test_anthropic_two_turns():
    first = anthropic_request([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>Tools: use a tool</system-reminder>"},
        {"type": "text", "text": PROMPT}]},
        {"role": "system", "content": "reminder after the turn"}])
    plan = anthropic.plan(first, 12)
    assert plan.answer.tool == ("Read", {"file_path": PATH}, None)
    assert plan.stop_reason == "tool_use"
    assert plan.answer.output_tokens == tool_call_tokens({"file_path": PATH})
    second = anthropic_request(first["messages"][:1] + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read",
                                           "input": {"file_path": PATH}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                      "content": [{"type": "text", "text": "1\tkiwi-7c1e"}]}]}])
    plan = anthropic.plan(second, 12)
    assert plan.answer.tool is None
    assert text_of(plan.answer) == "The file %s says: 1 kiwi-7c1e" % PATH
    body = orjson.loads(anthropic.message_body(plan, 3))
    assert body["content"][0]["text"] == text_of(plan.answer)
    assert body["usage"]["output_tokens"] == 6  # one per word
    deltas = [json.loads(d.split(b"data: ")[1]) for d in anthropic.stream(plan, 3).deltas]
    assert "".join(d["delta"]["text"] for d in deltas) == text_of(plan.answer)


def test_no_marker_no_tool_call_even_when_the_prompt_says_tool():
    request = anthropic_request([{"role": "user", "content": "use a tool to say hello"}])
    assert anthropic.plan(request, 12).answer.tool is None
    request.pop("system")  # an SDK call without a system prompt keeps the keyword rule
    assert anthropic.plan(request, 12).answer.tool.name == "Read"


def test_openai_chat_two_turns():
    tools = [{"type": "function", "function": {"name": "read", "parameters": {
        "type": "object", "properties": {"filePath": STRING}}}}]
    messages = [{"role": "system", "content": "You have tools."}, {"role": "user", "content": PROMPT}]
    plan = openai_chat.plan({"model": "m", "messages": messages, "tools": tools}, 12)
    assert plan.answer.tool == ("read", {"filePath": PATH}, None)
    messages += [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "read", "arguments": json.dumps({"filePath": PATH})}}]},
        {"role": "tool", "tool_call_id": "c", "content": "<file>kiwi</file>"}]
    plan = openai_chat.plan({"model": "m", "messages": messages, "tools": tools}, 12)
    assert text_of(plan.answer, plan.text_words) == "The file %s says: <file>kiwi</file>" % PATH
    body = orjson.loads(openai_chat.completion_body(plan, 1))
    assert body["choices"][0]["message"]["content"] == text_of(plan.answer)


def test_responses_freeform_exec_two_turns():
    exec_tool = {"type": "custom", "name": "exec", "description": "call `tools.exec_command`",
                 "format": {"type": "grammar"}}
    items = [{"type": "additional_tools", "role": "developer",
              "tools": [{"type": "namespace", "name": "functions", "tools": [exec_tool]}]},
             {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]
    plan = openai_responses.plan({"model": "m", "input": items, "reasoning": {"effort": "low"}}, 12)
    tool = plan.answer.tool
    assert tool.name == "exec" and "cat %s" % PATH in tool.raw
    [call] = [i for i in openai_responses.output_items(plan, 4) if i["type"] != "reasoning"]
    assert call["type"] == "custom_tool_call" and call["input"] == tool.raw
    events = openai_responses.stream(plan, 4).joined().decode()
    assert "response.custom_tool_call_input.delta" in events
    items += [call, {"type": "custom_tool_call_output", "call_id": call["call_id"],
                     "output": "Output: kiwi"}]
    plan = openai_responses.plan({"model": "m", "input": items, "reasoning": {"effort": "low"}}, 12)
    [message] = [i for i in openai_responses.output_items(plan, 5) if i["type"] == "message"]
    assert message["content"][0]["text"] == "The file %s says: Output: kiwi" % PATH


def test_gemini_two_turns_and_json_answers():
    tools = [{"functionDeclarations": [{"name": "read_file", "parametersJsonSchema": {
        "type": "object", "properties": {"file_path": STRING}}}]}]
    contents = [{"role": "user", "parts": [{"text": PROMPT}]}]
    request = {"contents": contents, "tools": tools, "systemInstruction": {"parts": [{"text": "t"}]}}
    plan = gemini.plan(request, 12)
    assert plan.answer.tool == ("read_file", {"file_path": PATH}, None)
    contents += [{"role": "model", "parts": [{"functionCall": {"name": "read_file",
                                                               "args": {"file_path": PATH}}}]},
                 {"role": "user", "parts": [{"functionResponse": {"name": "read_file",
                                                                  "response": {"output": "kiwi"}}}]}]
    plan = gemini.plan(request, 12)
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in gemini.chunks(plan, 1)] == \
        ["The", " file", " " + PATH, " says:", " kiwi"]
    schema = {"type": "OBJECT", "properties": {"score": {"type": "INTEGER"},
                                               "next": {"type": "STRING", "enum": ["user", "model"]}}}
    plan = gemini.plan({"contents": [{"parts": [{"text": "rate this"}]}], "generationConfig": {
        "responseMimeType": "application/json", "responseJsonSchema": schema}}, 12)
    assert json.loads(text_of(plan.answer)) == {"score": 1, "next": "user"}
