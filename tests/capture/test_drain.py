"""The writer in a separate process (`writer="process"`, see drain.py)."""

import multiprocessing
import os
import time

import pytest

from aperture.capture.query import CaptureReader
from aperture.capture.record import ToolCall, Usage
from aperture.capture.store import CaptureStore

from . import helpers
from .helpers import claude_code_bodies, make_record

pytestmark = pytest.mark.timeout(120)


def test_process_mode_writes_everything(tmp_path):
    store = CaptureStore(str(tmp_path), writer="process", durable=False)
    bodies = claude_code_bodies(5, session="S-1")
    recs = [make_record(request_body=b, usage=Usage(i, 1, 0, 0, 0),
                        tool_calls=(ToolCall("Read", "{}"),)) for i, b in enumerate(bodies)]
    recs += [make_record(session_hint="S-2") for _ in range(300)]
    for r in recs:
        store.submit(r)
    assert store.flush(30)
    with CaptureReader(str(tmp_path)) as reader:
        assert len(reader.records(limit=None)) == len(recs)
        assert reader.get(recs[3].id)["request_body"] == bodies[3]
        by_session = {s["session"]: s for s in reader.sessions()}
        assert by_session["S-1"]["requests"] == 5 and by_session["S-1"]["tools"] == {"Read": 5}
        assert by_session["S-2"]["requests"] == 300
    proc = store._drain.proc
    store.close()
    assert proc.poll() is not None  # the drain process stopped with the store
    assert os.listdir(tmp_path / "journal") == []


def test_process_mode_survives_sigkill_of_the_worker(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ack = str(tmp_path / "acks")
    data = str(tmp_path / "data")
    p = ctx.Process(target=helpers.writer_process,
                    args=(data, 5, 10**9, ack, True, 1 << 30, "process"))
    p.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(ack) and os.path.getsize(ack) > 27 * 1000:
            break
        time.sleep(0.02)
    helpers.kill(p.pid)
    p.join(10)
    with open(ack, "rb") as f:
        acked = {line.decode() for line in f.read().split(b"\n") if len(line) == 26}
    assert len(acked) >= 1000
    # The orphaned drain process finishes the dead worker's segments by itself.
    def stored():
        with CaptureReader(data) as r:
            return {x["id"] for x in r.records(limit=None)}
    deadline = time.time() + 60
    while time.time() < deadline and not acked <= stored():
        time.sleep(0.1)
    assert acked <= stored()


class _Held:
    """Stands for a client connection: records what the journal held when
    the connection's writes were released."""

    def __init__(self, loop, store, rec_id):
        self.loop, self.store, self.rec_id = loop, store, rec_id
        self.holding = False
        self.journal_at_release = None

    def hold(self):
        self.holding = True

    def release(self):
        self.holding = False
        with open(self.store._journal.path, "rb") as f:
            self.journal_at_release = f.read()


def test_held_records_are_journaled_together_before_release(tmp_path):
    import asyncio

    store = CaptureStore(str(tmp_path), writer="process", durable=False, rotate_interval=30.0)
    recs = [make_record() for _ in range(5)]

    async def one_loop_pass():
        loop = asyncio.get_running_loop()
        held = [_Held(loop, store, r.id) for r in recs]
        for r, h in zip(recs, held):
            store.submit(r, h)
        # Held, and nothing journaled yet: the append waits for the next pass.
        assert all(h.holding for h in held) and store._journal.size == 0
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return held

    held = asyncio.run(one_loop_pass())
    for h in held:
        assert not h.holding
        # When a connection got its bytes, every record of the pass was in the journal.
        assert all(r.id.encode() in h.journal_at_release for r in recs)
    assert store.flush(30)
    with CaptureReader(str(tmp_path)) as reader:
        assert {x["id"] for x in reader.records(limit=None)} == {r.id for r in recs}
    store.close()
