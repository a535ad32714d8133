import logging
import multiprocessing
import os
import time

import lmdb
import pytest

from aperture.capture import journal
from aperture.capture.query import CaptureReader, Filter
from aperture.capture.record import INCOMPLETE, REFUSED, ToolCall, Usage
from aperture.capture.store import CaptureStore

from . import helpers
from .helpers import make_record

pytestmark = pytest.mark.timeout(120)


def _store(path, **kw):
    kw.setdefault("durable", False)
    kw.setdefault("batch_linger", 0)
    return CaptureStore(str(path), **kw)


def test_every_field_is_stored(tmp_path):
    rec = make_record(
        tags=("tag:ci", "tag:bot"), status=499, stream=True, state=INCOMPLETE,
        error="client went away", usage=Usage(1, 2, 3, 4, 5), ttfb_ms=None,
        tool_calls=(ToolCall("Bash", '{"cmd":"ls"}'), ToolCall("Read", "")),
        request_headers=(("user-agent", "claude-cli/2.0"), ("x-a", "1")),
        response_headers=(("content-type", "text/event-stream"),), session_hint="S1",
        node_name="dev box", node_id="n123", path="/v1/messages?beta=true")
    store = _store(tmp_path)
    store.submit(rec)
    assert store.flush()
    store.close()
    with CaptureReader(str(tmp_path)) as r:
        got = r.get(rec.id)
    assert got["time"].endswith("Z")
    assert (got["user"], got["node"], got["node_id"], got["tags"]) == (
        rec.user, "dev box", "n123", ["tag:ci", "tag:bot"])
    assert (got["provider"], got["model"], got["api"], got["method"], got["path"]) == (
        rec.provider, rec.model, rec.api, "POST", "/v1/messages?beta=true")
    assert (got["status"], got["stream"], got["state"], got["error"]) == (
        499, True, INCOMPLETE, "client went away")
    assert [got[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                             "cache_write_tokens", "reasoning_tokens")] == [1, 2, 3, 4, 5]
    assert got["tool_calls"] == [{"name": "Bash", "arguments": '{"cmd":"ls"}'},
                                 {"name": "Read", "arguments": ""}]
    assert got["session"] == "S1"
    assert got["duration_ms"] == 12.5 and got["ttfb_ms"] is None
    assert got["request_headers"] == [["user-agent", "claude-cli/2.0"], ["x-a", "1"]]
    assert got["response_headers"] == [["content-type", "text/event-stream"]]
    assert got["request_body"] == rec.request_body
    assert got["response_body"] == rec.response_body


def test_refused_records_and_duplicates(tmp_path):
    store = _store(tmp_path)
    rec = make_record(status=404, state=REFUSED, provider="", model="",
                      error="unknown model", response_body=b'{"error":1}')
    store.submit(rec)
    store.submit(rec)  # the same id again: written once
    assert store.flush()
    assert store.stats["written"] == 1 and store.stats["duplicates"] == 1
    store.close()
    with CaptureReader(str(tmp_path)) as r:
        rows = r.records()
        assert [x["id"] for x in rows] == [rec.id]
        assert rows[0]["state"] == REFUSED


def test_bodies_over_the_limit_are_truncated(tmp_path):
    store = _store(tmp_path, max_body_bytes=1000)
    rec = make_record(request_body=b"a" * 5000, response_body=b"b" * 999)
    store.submit(rec)
    assert store.flush()
    store.close()
    with CaptureReader(str(tmp_path)) as r:
        got = r.get(rec.id)
    assert got["request_body"] == b"a" * 1000 and got["request_body_truncated"]
    assert got["response_body"] == b"b" * 999 and not got["response_body_truncated"]


def test_map_grows_when_full(tmp_path):
    store = _store(tmp_path, map_size=256 * 1024)
    recs = [make_record(request_body=os.urandom(20_000)) for _ in range(60)]
    for r in recs:
        store.submit(r)
    assert store.flush(30)
    store.close()
    with CaptureReader(str(tmp_path)) as r:
        assert len(r.records(limit=None)) == 60
        assert r.get(recs[-1].id)["request_body"] == recs[-1].request_body


def test_map_at_its_largest_size_is_a_clear_error_and_records_wait(tmp_path, monkeypatch, caplog):
    from aperture.capture import schema

    monkeypatch.setattr(schema, "MAX_MAP_SIZE", 1 << 20)
    store = _store(tmp_path, map_size=512 * 1024)
    recs = [make_record(request_body=os.urandom(30_000)) for _ in range(40)]
    for r in recs:
        store.submit(r)
    assert not store.flush(3)  # they cannot all fit
    assert store.stats["write_errors"] >= 1
    message = ("capture store in %s (--data-dir) is full: its LMDB map is at its largest size, "
               "1.0 MiB" % tmp_path)
    assert message in caplog.text
    # More room (a larger limit here; a shorter retention or a bigger disk
    # in life): the records that waited are written.
    monkeypatch.setattr(schema, "MAX_MAP_SIZE", 1 << 30)
    assert store.flush(30)
    store.close()
    with CaptureReader(str(tmp_path)) as r:
        assert len(r.records(limit=None)) == 40


def test_write_errors_are_logged_and_retried(tmp_path, monkeypatch, caplog):
    store = _store(tmp_path)
    real = store._apply
    calls = {"n": 0}

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise lmdb.DiskError("No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(store, "_apply", failing)
    with caplog.at_level(logging.ERROR, logger="aperture.capture"):
        rec = make_record()
        store.submit(rec)  # never raises
        assert store.flush(10)
    assert "No space left on device" in caplog.text
    assert store.stats["write_errors"] == 2
    store.close()
    with CaptureReader(str(tmp_path)) as r:
        assert r.get(rec.id) is not None


def test_a_record_that_breaks_the_writer_is_skipped_alone(tmp_path, caplog):
    store = _store(tmp_path)
    bad = make_record(usage=None)  # not a Usage: a programming error upstream
    good = make_record()
    with caplog.at_level(logging.ERROR, logger="aperture.capture"):
        store.submit(bad)
        store.submit(good)
        assert store.flush()
    store.close()
    with CaptureReader(str(tmp_path)) as r:
        assert r.get(good.id) is not None


def test_orphan_journals_are_replayed_once(tmp_path):
    # A journal left behind by a dead process (not locked by anyone).
    jdir = journal.journal_dir(str(tmp_path))
    j = journal.JournalFile(jdir)
    recs = [make_record(usage=Usage(i, 0, 0, 0, 0)) for i in range(5)]
    from aperture.capture import codec
    for i, r in enumerate(recs):
        j.append(codec.journal_parts(r), i + 1)
    os.write(j.fd, codec.journal_parts(make_record())[0][:30])  # a frame cut short
    j.release()
    store = _store(tmp_path)
    assert store.flush()
    assert store.stats["replayed"] == 5
    store.close()
    assert not os.path.exists(j.path)
    with CaptureReader(str(tmp_path)) as r:
        assert sorted(x["id"] for x in r.records(limit=None)) == sorted(x.id for x in recs)


def test_journal_is_emptied_once_committed(tmp_path):
    store = _store(tmp_path)
    store.submit(make_record())
    assert store.flush()
    deadline = time.time() + 5
    while store._journal.size and time.time() < deadline:
        time.sleep(0.01)
    assert os.path.getsize(store._journal.path) == 0
    path = store._journal.path
    store.close()
    assert not os.path.exists(path)


def test_several_processes_write_concurrently(tmp_path):
    # A small initial map: the processes grow it, and adopt each other's growth.
    ctx = multiprocessing.get_context("spawn")
    n_workers, per_worker = 4, 300
    procs = [ctx.Process(target=helpers.writer_process,
                         args=(str(tmp_path), w, per_worker, None, False, 128 * 1024))
             for w in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
        assert p.exitcode == 0
    with CaptureReader(str(tmp_path)) as r:
        rows = r.records(limit=None)
        assert len(rows) == n_workers * per_worker
        assert len({x["id"] for x in rows}) == len(rows)
        assert sum(x["input_tokens"] for x in rows) == per_worker * sum(
            w + 1 for w in range(n_workers))
        assert sum(x["output_tokens"] for x in rows) == n_workers * sum(range(per_worker))
        by_user = {u["user"]: u for u in r.usage("user")}
        for w in range(n_workers):
            assert by_user[f"user{w}"]["requests"] == per_worker
            assert by_user[f"user{w}"]["input_tokens"] == (w + 1) * per_worker
        sess = r.sessions(limit=None)
        assert len(sess) == n_workers * 4
        assert sum(s["requests"] for s in sess) == n_workers * per_worker
    assert not [f for f in os.listdir(tmp_path / "journal") if f.endswith(".jnl")]


def test_sigkill_loses_no_submitted_record(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ack = str(tmp_path / "acks")
    data = str(tmp_path / "data")
    p = ctx.Process(target=helpers.writer_process, args=(data, 9, 10**9, ack, True))
    p.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(ack) and os.path.getsize(ack) > 27 * 1500:
            break
        time.sleep(0.02)
    helpers.kill(p.pid)
    p.join(10)
    with open(ack, "rb") as f:
        acked = [line.decode() for line in f.read().split(b"\n") if len(line) == 26]
    assert len(acked) >= 1500
    store = _store(data)
    assert store.flush(60)
    store.close()
    with CaptureReader(data) as r:
        stored = {x["id"] for x in r.records(limit=None)}
        assert set(acked) <= stored
        sample = r.get(acked[-1])
        assert sample["request_body"].startswith(b'{"model":"m"')
        assert r.usage("user", Filter(user="user9"))[0]["requests"] == len(stored)


def _wait_for(pred, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_journal_rotation_leaves_no_files(tmp_path):
    store = _store(tmp_path, journal_rotate_bytes=2000, batch_max=8)
    recs = [make_record(request_body=os.urandom(500)) for _ in range(400)]
    for r in recs:
        store.submit(r)
    assert store.flush(30)
    store.close()
    assert not [f for f in os.listdir(tmp_path / "journal")]
    with CaptureReader(str(tmp_path)) as r:
        assert len(r.records(limit=None)) == 400


def test_overflow_keeps_records_in_the_journal_for_a_replay(tmp_path, monkeypatch, caplog):
    import threading
    gate = threading.Event()
    store = _store(tmp_path, max_queue=5, replay_interval=0.2)
    assert store.flush()
    real = store._write_batch

    def slow(records):
        gate.wait(20)
        return real(records)

    monkeypatch.setattr(store, "_write_batch", slow)
    recs = [make_record() for _ in range(40)]
    with caplog.at_level(logging.ERROR, logger="aperture.capture"):
        for r in recs:
            store.submit(r)
    assert store.stats["dropped"] > 0
    assert "writer is behind" in caplog.text
    gate.set()
    assert store.flush(20)

    def all_there():
        store.replay_now()
        with CaptureReader(str(tmp_path)) as r:
            return len(r.records(limit=None)) == 40
    assert _wait_for(all_there)
    store.close()
    assert not [f for f in os.listdir(tmp_path / "journal")]


def test_submit_after_close_is_ignored(tmp_path):
    store = _store(tmp_path)
    store.close()
    store.submit(make_record())  # no error, and nothing kept
    store.close()
    assert not os.listdir(tmp_path / "journal")
    with CaptureReader(str(tmp_path)) as r:
        assert r.records(limit=None) == []


def test_a_reader_opening_as_a_writer_grows_the_map_adopts_its_size(tmp_path):
    """A read-only open whose sub-databases are opened after another process
    grew the map (MDB_MAP_RESIZED) adopts the new size instead of failing."""
    import subprocess
    import sys

    import lmdb

    from aperture.capture.schema import DB_NAMES, EnvHandle, _open_dbs, env_path, open_env, release_env

    data_dir = str(tmp_path / "data")
    release_env(open_env(data_dir, map_size=1 << 20))
    path = env_path(data_dir)
    env = lmdb.open(path, subdir=True, readonly=True, create=False, lock=True,
                    max_dbs=len(DB_NAMES) + 4)  # a map of lmdb's default 10 MiB
    grow = ("import lmdb; env = lmdb.open(%r, subdir=True, map_size=64 << 20, max_dbs=16); "
            "db = env.open_db(b'filler')\n"
            "with env.begin(write=True) as txn:\n"
            "    [txn.put(b'%%06d' %% i, b'x' * 4000, db=db) for i in range(6000)]\n" % path)
    subprocess.run([sys.executable, "-c", grow], check=True)
    with pytest.raises(lmdb.MapResizedError):
        env.begin().abort()  # what the open would have met
    handle = EnvHandle(path, env, True)
    _open_dbs(handle)
    assert sorted(handle.dbs) == sorted(DB_NAMES)
    assert env.info()["map_size"] == 64 << 20
    env.close()
