"""The writer's batching and its two inputs (Records, journal payloads) must
not change what is stored: every database is compared byte for byte."""

import hashlib
import itertools
import random
import struct
import zlib

import orjson
import pytest

import aperture.capture.store as store_mod
from aperture.capture import codec, journal, sessions
from aperture.capture.record import ToolCall, Usage
from aperture.capture.schema import DB_NAMES
from aperture.capture.store import CaptureStore

from .helpers import claude_code_bodies, make_record, sse_response

pytestmark = pytest.mark.timeout(120)

BASE = 1_700_000_000.0


def _workload(n: int = 300) -> list:
    """Records that share users, models, sessions, hours and tools, so that a
    batch holds several records of each; with duplicates, empty and large
    bodies, and float durations whose sums depend on their order."""
    rng = random.Random(11)
    users = ["alice@example.com", "bob@example.com", "nul\x00user", "u" * 300, ""]
    conversations: dict = {}
    agentic = claude_code_bodies(4, seed=3, session="cc1")
    recs = []
    for i in range(n):
        user = rng.choice(users)
        kw = dict(id="01J" + "%023d" % i, time=BASE + i * 97.1 + rng.random(), user=user,
                  model=rng.choice(["claude-sonnet-4-5", "gpt-5", ""]),
                  provider=rng.choice(["anthropic", "openai", ""]),
                  status=rng.choice((200, 200, 429, 500, 0)),
                  usage=Usage(*(rng.randrange(1000) for _ in range(5))),
                  duration_ms=rng.choice((0.1 * rng.randrange(100000), 12.5, 0.0)),
                  ttfb_ms=rng.choice((None, 3.25)))
        if rng.random() < 0.3:
            kw["tool_calls"] = tuple(ToolCall(rng.choice(["Read", "Edit", "Bash"]),
                                              '{"n":%d}' % rng.randrange(9))
                                     for _ in range(rng.randrange(1, 4)))
        kind = rng.randrange(6)
        if kind == 0:
            kw["session_hint"] = f"hint-{rng.randrange(3)}"
        elif kind == 1:
            kw["request_headers"] = (("content-type", "application/json"),
                                     ("X-Session-Id", f"hdr-{rng.randrange(3)}"))
        elif kind == 2:  # conversations growing turn by turn
            history = conversations.setdefault((user, rng.randrange(4)), [])
            history.append({"role": "user", "content": [
                {"type": "text", "text": f"turn {len(history)}",
                 "cache_control": {"type": "ephemeral"}}]})
            kw["request_body"] = orjson.dumps({"model": "m", "messages": history})
            history.append({"role": "assistant", "content": f"answer {len(history)}"})
        elif kind == 3:
            kw.update(request_body=b"", response_body=b"", request_headers=(),
                      response_headers=())
        elif kind == 4:
            kw.update(request_body=rng.choice(agentic), stream=True,
                      response_body=sse_response(rng, rng.randrange(5, 40)))
        recs.append(make_record(**kw))
    recs.insert(20, recs[7])  # a duplicate inside a batch
    recs.append(recs[3])  # and one in a later batch
    return recs


def _dump(store: CaptureStore) -> dict:
    out = {}
    with store._h.read() as txn:
        for name in DB_NAMES:
            if name != "meta":
                out[name] = list(txn.cursor(db=store._dbs[name]))
    return out


def _fresh_store(path, monkeypatch, **kw) -> CaptureStore:
    counter = itertools.count()
    monkeypatch.setattr(store_mod, "new_id", lambda: "S%025d" % next(counter))
    store = CaptureStore(str(path), use_journal=False, durable=False, replay_interval=1e9,
                         quiet_replay=True, clock=lambda: BASE + 300 * 97.1, **kw)
    assert store.flush()
    return store


@pytest.mark.parametrize("retention", [None, 15_000.0])
def test_batches_store_the_same_as_one_record_at_a_time(tmp_path, monkeypatch, retention):
    recs = _workload()
    dumps = []
    for name, size in (("batched", 64), ("single", 1)):
        store = _fresh_store(tmp_path / name, monkeypatch, retention=retention)
        for i in range(0, len(recs), size):
            store._write_batch(recs[i:i + size])
        assert store.stats["written"] == len(recs) - 2
        assert store.stats["duplicates"] == 2
        dumps.append(_dump(store))
        store.close()
    batched, single = dumps
    assert batched["ses"] and batched["roll"] and batched["conv"] and batched["blk"]
    for name in batched:
        assert batched[name] == single[name], name


def test_replayed_journal_stores_the_same_as_the_writer_thread(tmp_path, monkeypatch):
    recs = _workload()
    thread = _fresh_store(tmp_path / "thread", monkeypatch, batch_max=50)
    for i in range(0, len(recs), 50):
        thread._write_batch(recs[i:i + 50])
    expected = _dump(thread)
    thread.close()

    replay = _fresh_store(tmp_path / "replay", monkeypatch, batch_max=50)
    jdir = journal.journal_dir(str(tmp_path / "replay"))
    for i in range(0, len(recs), 120):  # three journal files
        j = journal.JournalFile(jdir)
        for r in recs[i:i + 120]:
            j.append(codec.journal_parts(r), 0)
        j.release()
    replay._replay_orphans()
    assert replay.stats["replayed"] == len(recs)
    got = _dump(replay)
    replay.close()
    for name in expected:
        assert got[name] == expected[name], name


def test_record_entry_has_the_journal_layout():
    recs = [make_record(), make_record(tool_calls=(ToolCall("Bash", "{}"), ToolCall("Read", "")),
                                       tags=("tag:a",), ttfb_ms=None, session_hint="s",
                                       request_headers=(("a", "1"), ("b", "2")),
                                       response_headers=((b"x-api-key", b"k"), (b"A", b"1")),
                                       request_body=bytearray(b"xyz"),
                                       response_body=memoryview(b"resp"),
                                       request_body_truncated=True)]
    for rec in recs:
        fields, req, resp = codec.record_entry(rec)
        payload = b"".join(codec.journal_parts(rec))[codec.FRAME_HEADER:]
        meta, jreq, jresp = codec.decode_journal_entry(payload)
        assert len(fields) == codec.N_FIELDS
        # (headers come back as tuples of pairs, written as lists)
        assert orjson.loads(orjson.dumps(fields)) == orjson.loads(orjson.dumps(meta))
        assert (req, resp) == (jreq, jresp)
        assert type(req) is bytes and type(resp) is bytes


def test_journal_frames_of_the_previous_layouts_still_decode():
    """Frames written before the response id field replay with no response id,
    and those written before the cost field with no cost."""
    rec = make_record(response_id="resp_1", cost=1234)
    fields, req, resp = codec.record_entry(rec)
    assert fields[codec.F_RESPONSE_ID] == "resp_1" and fields[codec.F_COST] == 1234
    for end, missing in ((codec.F_RESPONSE_ID, ["", None]), (codec.F_COST, [None])):
        old = fields[:end]
        meta = orjson.dumps(old)
        payload = struct.pack("<III", len(meta), len(req), len(resp)) + meta + req + resp
        decoded, jreq, jresp = codec.decode_journal_entry(payload)
        assert decoded == orjson.loads(orjson.dumps(old)) + missing
        assert (jreq, jresp) == (req, resp)


def test_summary_positions():
    rec = make_record(tool_calls=(ToolCall("Bash", "{}"), ToolCall("Read", "")),
                      tags=("tag:a",), usage=Usage(1, 2, 3, 4, 5), ttfb_ms=None,
                      request_body_truncated=True, cost=4321)
    row = orjson.loads(codec.summary(codec.record_entry(rec)[0], "sess", 11, 22))
    assert len(row) == codec.R_COST + 1
    want = {codec.R_ID: rec.id, codec.R_TIME: rec.time, codec.R_USER: rec.user,
            codec.R_NODE: rec.node_name, codec.R_NODE_ID: rec.node_id, codec.R_TAGS: ["tag:a"],
            codec.R_PROVIDER: rec.provider, codec.R_MODEL: rec.model, codec.R_API: rec.api,
            codec.R_METHOD: rec.method, codec.R_PATH: rec.path, codec.R_STATUS: rec.status,
            codec.R_STREAM: rec.stream, codec.R_IN: 1, codec.R_OUT: 2, codec.R_CREAD: 3,
            codec.R_CWRITE: 4, codec.R_REASON: 5, codec.R_TOOLS: ["Bash", "Read"],
            codec.R_SESSION: "sess", codec.R_DURATION: rec.duration_ms, codec.R_TTFB: None,
            codec.R_STATE: rec.state, codec.R_ERROR: rec.error, codec.R_REQ_SIZE: 11,
            codec.R_RESP_SIZE: 22, codec.R_REQ_TRUNC: True, codec.R_RESP_TRUNC: False,
            codec.R_COST: 4321}
    assert row == [want[i] for i in range(len(row))]
    assert codec.summary_cost(row) == 4321 and codec.summary_cost(row[:codec.OLD_SUMMARY]) is None


def test_history_chain_follows_its_definition():
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "x",
                                          "cache_control": {"type": "ephemeral"}}]}]
    prev = hashlib.blake2b(b"alice", digest_size=16, person=b"aperture-conv").digest()
    want = []
    for m in msgs[:2] + [{"role": "user", "content": [{"type": "text", "text": "x"}]}]:
        h = hashlib.blake2b(orjson.dumps(m), digest_size=16).digest()
        prev = hashlib.blake2b(prev + h, digest_size=16).digest()
        want.append(prev)
    assert sessions.history_chain("alice", msgs) == want


def test_read_frames_gives_payloads_up_to_a_cut_frame():
    recs = [make_record(), make_record(request_body=b"", response_body=b"")]
    data = b"".join(b"".join(codec.journal_parts(r)) for r in recs)
    cut = b"".join(codec.journal_parts(make_record()))[:-3]
    payloads, damaged = codec.read_frames(data + cut)
    assert damaged == [(len(data), len(cut))]
    assert [codec.decode_journal_entry(p) for p in payloads] == [
        (orjson.loads(orjson.dumps(fields)), req, resp)
        for fields, req, resp in map(codec.record_entry, recs)]


def frames(recs) -> list[bytes]:
    return [b"".join(codec.journal_parts(r)) for r in recs]


def entries(recs) -> list:
    return [(orjson.loads(orjson.dumps(fields)), req, resp)
            for fields, req, resp in map(codec.record_entry, recs)]


@pytest.mark.parametrize("damage", ["crc", "magic", "length", "zeroes", "garbage"])
def test_read_frames_resyncs_after_a_damaged_frame_in_the_middle(damage):
    recs = [make_record(response_body=b"APJ1 in a body" * 3) for _ in range(5)]
    parts = frames(recs)
    victim = bytearray(parts[2])
    if damage == "crc":
        victim[-1] ^= 0xFF  # a flipped bit in the payload
    elif damage == "magic":
        victim[:4] = b"XPJ1"
    elif damage == "length":
        victim[4:8] = struct.pack("<I", 1 << 30)
    elif damage == "zeroes":
        victim = bytearray(len(victim))  # a block of the file lost
    else:
        victim[:] = victim[:40] + b"\x00garbage APJ1 garbage"
    data = b"".join(parts[:2]) + bytes(victim) + b"".join(parts[3:])
    payloads, damaged = codec.read_frames(data)
    assert [codec.decode_journal_entry(p) for p in payloads] == entries(recs[:2] + recs[3:])
    assert damaged == [(len(parts[0]) + len(parts[1]), len(victim))]


def test_read_frames_keeps_the_frames_after_a_damaged_tail_and_reports_both():
    recs = [make_record() for _ in range(3)]
    parts = frames(recs)
    data = parts[0] + b"junk" * 10 + parts[1] + parts[2][:-5]
    payloads, damaged = codec.read_frames(data)
    assert [codec.decode_journal_entry(p) for p in payloads] == entries(recs[:2])
    assert damaged == [(len(parts[0]), 40), (len(parts[0]) + 40 + len(parts[1]), len(parts[2]) - 5)]


def _frame(payload: bytes) -> bytes:
    return struct.pack("<4sII", codec.JOURNAL_MAGIC, len(payload), zlib.crc32(payload)) + payload


def test_a_journal_record_that_cannot_be_decoded_is_skipped_alone(tmp_path, monkeypatch):
    good = [make_record(), make_record()]
    meta = b'["not", "a", "record"]'
    bad = struct.pack("<III", len(meta), 0, 0) + meta
    store = _fresh_store(tmp_path, monkeypatch)
    jdir = journal.journal_dir(str(tmp_path))
    j = journal.JournalFile(jdir)
    j.append(codec.journal_parts(good[0]), 0)
    j.append([_frame(bad)], 0)
    j.append(codec.journal_parts(good[1]), 0)
    j.release()
    store._replay_orphans()
    assert store.stats["dropped"] == 1
    assert store.stats["written"] == 2
    with store._h.read() as txn:
        for r in good:
            assert txn.get(r.id.encode(), db=store._dbs["ids"]) is not None
    store.close()
