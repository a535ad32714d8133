import orjson
import pytest

from aperture.capture import sessions
from aperture.capture.query import CaptureReader, Filter
from aperture.capture.record import ToolCall, Usage
from aperture.capture.store import CaptureStore

from .helpers import claude_code_bodies, make_record

UUID = "5f1c7a2e-0d7e-4b8e-9a51-3c0e6f2b9d11"


def body(messages, **extra) -> bytes:
    return orjson.dumps({"model": "m", "messages": messages, **extra})


@pytest.mark.parametrize("user_id", [
    f"user_{'ab' * 32}_account_0c6f3e1a-1111-2222-3333-444455556666_session_{UUID}",
    orjson.dumps({"device_id": "d", "account_uuid": "a", "session_id": UUID}).decode(),
])
def test_claude_code_metadata_user_id(user_id):
    doc = orjson.loads(body([], metadata={"user_id": user_id}))
    assert sessions.body_session(doc) == UUID


@pytest.mark.parametrize("name", ["x-claude-code-session-id", "X-Claude-Code-Session-Id",
                                  "session_id", "conversation_id", "x-session-id"])
def test_session_headers(name):
    rec = make_record(request_headers=(("content-type", "application/json"), (name, "abc-1")))
    assert sessions.client_session(rec.session_hint, rec.request_headers) == "abc-1"


def test_hint_comes_first_and_junk_is_ignored():
    rec = make_record(session_hint="hint", request_headers=(("x-session-id", "hdr"),))
    assert sessions.client_session(rec.session_hint, rec.request_headers) == "hint"
    rec = make_record(request_headers=(("x-session-id", "bad\x01id"),))
    assert sessions.client_session(rec.session_hint, rec.request_headers) == ""
    assert sessions.body_session({"metadata": {"user_id": "no session here"}}) == ""
    assert sessions.body_session({"metadata": "x"}) == ""


def test_cache_control_does_not_change_the_history_hash():
    m1 = [{"role": "user", "content": [{"type": "text", "text": "hi",
                                         "cache_control": {"type": "ephemeral"}}]}]
    m2 = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
          {"role": "assistant", "content": "hello"}]
    a = sessions.history_chain("u", m1)
    b = sessions.history_chain("u", m2)
    assert a[0] == b[0]
    assert sessions.history_chain("v", m1)[0] != a[0]


def _store(tmp_path):
    return CaptureStore(str(tmp_path), durable=False, batch_linger=0)


def _sessions_of(tmp_path, recs):
    with CaptureReader(str(tmp_path)) as r:
        return [r.get(x.id)["session"] for x in recs]


def test_conversation_without_session_id_is_grouped_by_history(tmp_path):
    u1 = {"role": "user", "content": "write a parser"}
    a1 = {"role": "assistant", "content": "here it is"}
    u2 = {"role": "user", "content": "add tests"}
    a2 = {"role": "assistant", "content": "done"}
    u3 = {"role": "user", "content": "thanks"}
    other = {"role": "user", "content": "unrelated question"}
    store = _store(tmp_path)
    recs = [
        make_record(request_body=body([u1])),
        make_record(request_body=body([u1, a1, u2])),
        make_record(request_body=body([other])),  # a new conversation
        make_record(request_body=body([u1, a1, u2, a2, u3])),
        make_record(request_body=body([u1, a1, u2]), user="bob"),  # same text, other user
        make_record(request_body=body([other, a1])),
        make_record(method="GET", path="/v1/models", request_body=b""),
    ]
    for r in recs:
        store.submit(r)
        assert store.flush()
    store.close()
    s = _sessions_of(tmp_path, recs)
    assert s[0] == s[1] == s[3]
    assert s[2] == s[5] != s[0]
    assert len({s[0], s[2], s[4], s[6]}) == 4


def test_client_session_ids_group_requests(tmp_path):
    bodies = claude_code_bodies(6, session=UUID)
    store = _store(tmp_path)
    recs = [make_record(request_body=b, usage=Usage(i, 2 * i, 3, 4, 1),
                        tool_calls=(ToolCall("Read", "{}"), ToolCall("Bash", "{}"))
                        if i % 2 else (), duration_ms=10.0, time=1_700_000_000 + i)
            for i, b in enumerate(bodies)]
    recs.append(make_record(request_headers=(("x-claude-code-session-id", "hdr-1"),),
                            time=1_700_000_100))
    recs.append(make_record(request_headers=(("session_id", "hdr-1"),), time=1_700_000_101,
                            model="gpt-5", provider="openai"))
    for r in recs:
        store.submit(r)
    assert store.flush()
    store.close()
    s = _sessions_of(tmp_path, recs)
    assert set(s[:6]) == {UUID}
    assert s[6] == s[7] == "hdr-1"
    with CaptureReader(str(tmp_path)) as r:
        [tot] = r.sessions(Filter(session=UUID))
        assert tot["requests"] == 6
        assert tot["input_tokens"] == sum(range(6))
        assert tot["output_tokens"] == 2 * sum(range(6))
        assert tot["cache_read_tokens"] == 18
        assert tot["tools"] == {"Read": 3, "Bash": 3}
        assert tot["tool_calls"] == 6
        assert tot["duration_ms"] == 60.0
        assert tot["first"].startswith("2023-11-14T22:13:20")
        assert tot["user"] == "alice@example.com"
        listed = r.sessions()
        assert [x["session"] for x in listed] == ["hdr-1", UUID]
        assert r.sessions(Filter(model="gpt-5"))[0]["session"] == "hdr-1"
        assert r.sessions(Filter(until=1_700_000_050)) == [tot]
        assert r.sessions(Filter(user="nobody")) == []


def test_session_totals_accumulate_across_stores(tmp_path):
    for i in range(3):
        store = _store(tmp_path)
        store.submit(make_record(session_hint="S", usage=Usage(5, 5, 0, 0, 0),
                                 time=1_700_000_000 + i))
        store.close()
    with CaptureReader(str(tmp_path)) as r:
        [tot] = r.sessions()
        assert tot["requests"] == 3 and tot["input_tokens"] == 15
        assert tot["last"].startswith("2023-11-14T22:13:22")
        assert len(r.sessions(Filter(user="alice@example.com"))) == 1


def test_each_formats_history_groups_its_conversation(tmp_path):
    """Gemini's `contents`, the Responses API's `input` and Converse's
    `messages` (the model in the path, no `model` in the body) are histories
    too."""
    def gemini(*texts):
        return orjson.dumps({"contents": [{"role": "user" if i % 2 == 0 else "model",
                                           "parts": [{"text": t}]} for i, t in enumerate(texts)]})

    def responses(*texts):
        return orjson.dumps({"model": "gpt-5.4", "input": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": t}
            for i, t in enumerate(texts)]})

    def converse(*texts):
        return orjson.dumps({"messages": [{"role": "user" if i % 2 == 0 else "assistant",
                                           "content": [{"text": t}]} for i, t in enumerate(texts)]})

    store = _store(tmp_path)
    recs = []
    for make, api in ((gemini, "gemini_generate_content"), (responses, "openai_responses"),
                      (converse, "bedrock_converse")):
        recs += [make_record(api=api, request_body=make("hi")),
                 make_record(api=api, request_body=make("hi", "hello", "more")),
                 make_record(api=api, request_body=make("other"))]
    for r in recs:
        store.submit(r)
    assert store.flush()
    store.close()
    s = _sessions_of(tmp_path, recs)
    for i in (0, 3, 6):
        assert s[i] == s[i + 1] != s[i + 2]
    assert len(set(s)) == 6


def test_previous_response_id_joins_the_session_of_that_response(tmp_path):
    store = _store(tmp_path)
    first = make_record(api="openai_responses", provider="openai", model="gpt-5.4",
                        request_body=b'{"model":"gpt-5.4","input":"write a haiku"}',
                        response_id="resp_first")
    store.submit(first)
    assert store.flush()
    follow = make_record(api="openai_responses", provider="openai", model="gpt-5.4",
                         request_body=b'{"model":"gpt-5.4","input":[{"role":"user","content":'
                                      b'"shorter"}],"previous_response_id":"resp_first"}',
                         response_id="resp_second")
    third = make_record(api="openai_responses", request_body=b'{"model":"gpt-5.4","input":"x",'
                                                             b'"previous_response_id":"resp_second"}')
    unknown = make_record(api="openai_responses", request_body=b'{"model":"gpt-5.4","input":"x",'
                                                               b'"previous_response_id":"resp_gone"}')
    for r in (follow, third, unknown):
        store.submit(r)
        assert store.flush()
    assert store.response_owner("resp_first") == ("openai", "gpt-5.4", "alice@example.com")
    assert store.response_owner("resp_nope") is None
    store.close()
    s = _sessions_of(tmp_path, [first, follow, third, unknown])
    assert s[0] == s[1] == s[2] != s[3]


def test_response_ids_are_forgotten_after_30_days(tmp_path):
    now = [1_800_000_000.0]
    store = CaptureStore(str(tmp_path), durable=False, batch_linger=0, clock=lambda: now[0])
    old = make_record(time=now[0] - 31 * 86400, response_id="resp_old")
    recent = make_record(time=now[0] - 29 * 86400, response_id="resp_recent")
    for r in (old, recent):
        store.submit(r)
    assert store.flush()
    assert store.response_owner("resp_old") is not None
    store.purge()
    assert store.response_owner("resp_old") is None
    assert store.response_owner("resp_recent") == ("anthropic", "claude-sonnet-4-5",
                                                   "alice@example.com")
    store.close()
