import time

import pytest

from aperture.capture.query import CaptureReader
from aperture.capture.record import ToolCall, Usage
from aperture.capture.retention import parse_duration, parse_retention
from aperture.capture.store import CaptureStore

from .helpers import claude_code_bodies, make_record


@pytest.mark.parametrize("text,seconds", [
    ("720h", 720 * 3600), ("30m", 1800), ("1h30m", 5400), ("1.5h", 5400), ("7d", 7 * 86400),
    ("90s", 90), ("500ms", 0.5), ("0", 0), ("2d12h", 60 * 3600),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "h", "10", "1y", "-1h", "1h 30m", "abc"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_parse_retention_bounds():
    assert parse_retention(None) is None
    assert parse_retention("") is None
    assert parse_retention("0") == 0
    assert parse_retention("0s") == 0
    assert parse_retention("1h") == 3600
    assert parse_retention("3650d") == 3650 * 86400
    for bad in ("59m", "3651d", "1x"):
        with pytest.raises(ValueError):
            parse_retention(bad)


def _blocks(reader):
    with reader._h.read() as txn:
        return txn.stat(reader._h.dbs["blk"])["entries"]


def test_purge_removes_old_content_and_keeps_usage(tmp_path):
    now = [time.time()]
    store = CaptureStore(str(tmp_path), retention="1h", durable=False, batch_linger=0,
                         clock=lambda: now[0])
    bodies = claude_code_bodies(4, seed=3)
    old = [make_record(time=now[0] - 1800 + i, request_body=b, usage=Usage(7, 3, 0, 0, 0),
                       tool_calls=(ToolCall("Bash", '{"secret":1}'),), session_hint="S")
           for i, b in enumerate(bodies)]
    for r in old:
        store.submit(r)
    assert store.flush()
    assert store.purge() == 0  # nothing is older than an hour yet
    with CaptureReader(str(tmp_path)) as reader:
        assert reader.get(old[0].id)["request_body"] == old[0].request_body
        assert _blocks(reader) > 0
    now[0] += 2 * 3600 + 10
    new = make_record(time=now[0], request_body=bodies[-1], session_hint="S")
    store.submit(new)
    assert store.flush()
    assert store.purge() == len(old)
    store.close()
    with CaptureReader(str(tmp_path)) as reader:
        gone = reader.get(old[0].id)
        assert gone["request_body"] is None and gone["request_headers"] == []
        assert gone["input_tokens"] == 7
        assert gone["tool_calls"] == [{"name": "Bash", "arguments": ""}]
        kept = reader.get(new.id)
        assert kept["request_body"] == bodies[-1]  # its blocks survived the purge
        [u] = reader.usage("user")
        assert u["requests"] == 5 and u["input_tokens"] == 38
        [s] = reader.sessions()
        assert s["requests"] == 5 and s["tools"] == {"Bash": 4}


def test_purge_deletes_unused_blocks(tmp_path):
    now = [time.time()]
    store = CaptureStore(str(tmp_path), retention="1h", durable=False, batch_linger=0,
                         clock=lambda: now[0])
    store.submit(make_record(time=now[0] - 100, request_body=claude_code_bodies(2)[1]))
    assert store.flush()
    now[0] += 3 * 3600
    store.purge()
    store.close()
    with CaptureReader(str(tmp_path)) as reader:
        assert _blocks(reader) == 0


def test_records_older_than_the_window_are_written_without_content(tmp_path):
    store = CaptureStore(str(tmp_path), retention="1h", durable=False, batch_linger=0)
    rec = make_record(time=time.time() - 7200)
    store.submit(rec)
    assert store.flush()
    store.close()
    with CaptureReader(str(tmp_path)) as reader:
        got = reader.get(rec.id)
        assert got["request_body"] is None and got["input_tokens"] == 10


def test_zero_retention_never_writes_content(tmp_path):
    store = CaptureStore(str(tmp_path), retention="0", durable=False, batch_linger=0)
    marker = b"TOP-SECRET-PROMPT-" * 50
    rec = make_record(request_body=b'{"messages":[{"role":"user","content":"'
                      + marker + b'"}]}', response_body=marker,
                      tool_calls=(ToolCall("Write", marker.decode()),))
    store.submit(rec)
    # The journal holds no content either.
    with open(store._journal.path, "rb") as f:
        assert marker not in f.read()
    assert store.flush()
    store.close()
    with CaptureReader(str(tmp_path)) as reader:
        got = reader.get(rec.id)
        assert got["request_body"] is None and got["response_body"] is None
        assert got["output_tokens"] == 20 and got["tool_calls"][0]["arguments"] == ""
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes()
