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
