"""Capture faults: a full disk, a damaged journal, the drain process killed
mid-batch. In every case the gateway keeps serving, and every record that was
journaled (or, on a full disk, held in memory) reaches the store."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import psutil
import pytest

from aperture.capture import codec, journal

from ..capture.helpers import make_record
from .conftest import launch_gateway, provider_config
from .test_capture import LOGIN, read_records, read_response, request_bytes, wait_records

BODY = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 20,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


def ask(gw, user: str) -> int:
    with socket.create_connection(("127.0.0.1", gw.port), 15) as s:
        s.sendall(request_bytes("/v1/messages", BODY, {LOGIN: user}))
        resp = read_response(s)
    assert resp.complete
    return resp.status


def count(data_dir, prefix: str) -> int:
    return sum(1 for row in read_records(data_dir) if row["user"].startswith(prefix))


def wait_count(data_dir, prefix: str, n: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = count(data_dir, prefix)
        if got >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def drain_pids(gw) -> list[int]:
    """The live drain processes of the gateway."""
    pids = []
    for p in psutil.Process(gw.proc.pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "aperture.capture.drain" in " ".join(p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return pids


@pytest.fixture(params=["thread", "process"])
def writer(request) -> str:
    return request.param


# -- a full disk ------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 24 MiB tmpfs (needs the right to mount one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode().strip())
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path) -> None:
    """Write to `path` until the filesystem is full."""
    with open(path, "wb", buffering=0) as f:
        block = b"\0" * (1 << 16)
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


def test_full_disk_keeps_serving_and_records_arrive_when_space_returns(tmp_path, small_fs,
                                                                     simulator, writer):
    gw = launch_gateway(tmp_path, provider_config(simulator.url), "--data-dir", str(small_fs / "data"),
                        identity="serve-headers", env={"APERTURE_CAPTURE_WRITER": writer})
    try:
        assert ask(gw, "before-0@example.com") == 200
        assert wait_count(small_fs / "data", "before-", 1) == 1
        filler = small_fs / "filler"
        fill(filler)
        statuses = [ask(gw, "full-%d@example.com" % i) for i in range(20)]
        assert statuses == [200] * 20  # the gateway keeps serving
        log = gw.log()
        assert "capture journal append failed" in log and "No space left on device" in log
        os.unlink(filler)
        assert wait_count(small_fs / "data", "full-", 20) == 20
        assert ask(gw, "after-0@example.com") == 200
        assert wait_count(small_fs / "data", "after-", 1) == 1
    finally:
        assert gw.stop() == 0
    assert "Traceback" not in gw.log()
    assert count(small_fs / "data", "full-") == 20


# -- a damaged journal ---------------------------------------------------------------------


def damaged_journal(jdir: str, user: str) -> tuple[str, list, int]:
    """An orphan journal of six records: the third damaged in the middle of
    the file, the sixth cut short. Returns (path, the records, the offset
    of the damage)."""
    recs = [make_record(user=user, request_body=b"APJ1" * 10) for _ in range(6)]
    frames = [b"".join(codec.journal_parts(r)) for r in recs]
    hit = bytearray(frames[2])
    hit[len(hit) // 2] ^= 0x55
    frames[2] = bytes(hit)
    frames[5] = frames[5][:-7]
    path = os.path.join(jdir, "999999-damaged%s" % journal.SUFFIX)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"".join(frames))
    os.rename(tmp, path)
    return path, recs, len(frames[0]) + len(frames[1])


def test_damaged_journal_keeps_the_records_around_the_damage(tmp_path, simulator, writer):
    data_dir = tmp_path / "data"
    jdir = journal.journal_dir(str(data_dir))
    user = "journal-%s@example.com" % writer
    if writer == "thread":  # replayed at start-up (later ones every 15 s)
        path, recs, offset = damaged_journal(jdir, user)
    gw = launch_gateway(tmp_path, provider_config(simulator.url), identity="serve-headers",
                        env={"APERTURE_CAPTURE_WRITER": writer})
    try:
        if writer == "process":  # the drain process picks it up while the gateway serves
            path, recs, offset = damaged_journal(jdir, user)
        stored = wait_records(data_dir, 4, user=user)
        assert sorted(r["id"] for r in stored) == sorted(r.id for i, r in enumerate(recs)
                                                          if i in (0, 1, 3, 4))
        assert ask(gw, "served-%s@example.com" % writer) == 200
        assert len(wait_records(data_dir, 1, user="served-%s@example.com" % writer)) == 1
        log = gw.log()
        assert re.search(r"journal %s: skipped %d damaged bytes at offset %d "
                         % (re.escape(path), len(b"".join(codec.journal_parts(recs[2]))), offset), log), log
        assert not os.path.exists(path)
    finally:
        assert gw.stop() == 0
    assert len(read_records(data_dir, user=user)) == 4


# -- the drain process killed ------------------------------------------------------------------


def test_drain_process_killed_mid_batch_loses_nothing_journaled(tmp_path, simulator):
    gw = launch_gateway(tmp_path, provider_config(simulator.url), identity="serve-headers",
                        env={"APERTURE_CAPTURE_WRITER": "process"})
    answered: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    mutex = threading.Lock()

    def load(t: int) -> None:
        n = 0
        while not stop.is_set():
            user = "drainkill-%d-%d@example.com" % (t, n)
            try:
                status = ask(gw, user)
            except (OSError, AssertionError):
                status = 0
            with mutex:
                (answered if status == 200 else failed).append(user)
            n += 1

    threads = [threading.Thread(target=load, args=(t,), daemon=True) for t in range(4)]
    try:
        [first] = drain_pids(gw)
        for th in threads:
            th.start()
        for kills in range(3):
            target = len(answered) + 40
            deadline = time.monotonic() + 30
            while len(answered) < target:
                assert time.monotonic() < deadline, "load stalled"
                time.sleep(0.01)
            [pid] = drain_pids(gw)
            os.kill(pid, signal.SIGKILL)  # wherever it is: mid-batch under this load
            deadline = time.monotonic() + 10
            while drain_pids(gw) in ([], [pid]):
                assert time.monotonic() < deadline, "the drain process was not restarted"
                time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        for th in threads:
            th.join(20)
        assert failed == []  # the gateway kept serving
        assert first not in drain_pids(gw)
        assert wait_count(gw.data_dir, "drainkill-", len(answered)) == len(answered)
        assert gw.log().count("drain process exited with status -9; restarting it") == 3
        # Killed once more, right before a stop: the stop still drains the journal.
        [pid] = drain_pids(gw)
        for i in range(10):
            assert ask(gw, "laststop-%d@example.com" % i) == 200
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
    finally:
        stop.set()
        assert gw.stop() == 0
    assert time.monotonic() - t0 < 10  # not the 30 s of the drain timeout
    assert count(gw.data_dir, "drainkill-") == len(answered)
    assert count(gw.data_dir, "laststop-") == 10
    assert "Traceback" not in gw.log()
