"""`CaptureStore`: the record sink that keeps every exchange in LMDB.

Theory of operation.

    event loop thread                         writer thread (one per process)
    -----------------                         -------------------------------
    submit(record)                            take up to `batch_max` records
      truncate bodies over max_body_bytes     prepare each, outside any txn:
      one os.writev of the record to this       cut bodies into blocks and hash
        process's journal (page cache)          them, parse the request for its
      append to the in-memory queue             session, compress new blocks
      (never waits on the disk)               one LMDB write txn for the batch:
                                                skip ids already stored, resolve
                                                sessions, write records, indexes,
                                                blocks, session totals, rollups
                                              commit; then truncate the journal
                                                when all it holds is committed
                                              every few seconds: replay journals
                                                of dead processes, purge bodies
                                                older than the retention window

`submit` is the only code on the event loop; the writer shares the GIL with
it, so the writer's per-record work is kept small (a few LMDB puts for a small
record, hashing and compression in C for large bodies) and it sleeps briefly
between batches so that records gather into larger transactions.

With `writer="process"` the worker keeps only the left column: its journal
segments are handed to a child process that runs the right column (drain.py).
There, a record submitted with the connection about to receive its last bytes
joins the others finished in the same loop pass: one os.writev appends them
all at the start of the next pass, and only then are those connections' held
writes released (`_append_held`).

The writer takes each record as an entry in the journal's layout (the meta
list of a frame, plus the two bodies; see codec.record_entry): the writer
thread makes entries from its queued Records, a replay decodes them straight
from frame payloads, a batch at a time, and everything after that is shared.

Several processes open the same environment; LMDB serializes their write
transactions. Every record carries a unique id and is written at most once
(the `ids` database is checked inside the write transaction), which makes the
journal replay idempotent.

Failures never reach the caller. A failed journal append is logged and the
record still goes to LMDB. A failed LMDB write (disk full, I/O error) is
logged and retried with a growing pause; records keep queuing in memory, up to
`max_queue`, after which new records stay only in the journal, which is then
left for a replay once the writer is healthy again. A record that makes the
writer fail for another reason (a bug) is logged and skipped alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import threading
import time
from collections import deque

import lmdb
import orjson

from aperture.ids import new_id
from aperture.responses import RESPONSE_ID_DAYS

from . import blocks, codec, journal, sessions
from . import retention as retention_mod
from .record import Record
from .schema import (DEFAULT_MAP_SIZE, DIM_COMBO, DIM_MODEL, DIM_PROVIDER, DIM_TOOL,
                     DIM_TOOL_COMBO, DIM_TOTAL, DIM_USER, KEY_FIELD_MAX, ROLL, SEP, add_counts,
                     EnvHandle, StoreError, combo_key, key_field, open_env, release_env,
                     rollup_values, ts_bytes)
from .codec import (F_COST, F_DURATION, F_ID, F_MODEL, F_PROVIDER, F_REQ_HEADERS, F_RESP_HEADERS,
                    F_RESPONSE_ID, F_SESSION_HINT, F_TIME, F_TOOLS, F_USAGE, F_USER)

log = logging.getLogger("aperture.capture")

# Failures of the environment (disk full, I/O): retried, never dropped.
ENV_ERRORS = (lmdb.Error, StoreError)

DEFAULT_MAX_BODY = 8 << 20
LEVEL_DAY, LEVEL_HOUR = b"d", b"h"
#: meta key: rollups of the combination dimensions (C, Y) and costs cover the
#: records after this time (8-byte ts); the records of a store written before
#: them are read from the records themselves (see query.py)
COMBO_SINCE = b"combo_since"


# Frames per os.writev in _append_held: a frame is at most 5 buffers
# (codec.journal_parts), and one writev takes at most 1024 (Linux UIO_MAXIOV).
_FRAMES_PER_WRITE = 1024 // 5

#: seconds of the writer's work between two hand-backs (see _Pacer)
GIL_SLICE = 0.0005
CPU_SLICE = 0.0001


def _sleep0() -> None:
    time.sleep(0)


class _Pacer:
    """Called between two pieces of the writer's work: every `slice` seconds
    it hands the processor back (`give`).

    A writer thread gives the GIL to the event loop (time.sleep(0)), which
    would otherwise wait for the interpreter's switch interval (5 ms). The
    drain process gives its CPU to whatever is runnable (os.sched_yield):
    niced as it is, the scheduler still lets a batch of its work run for
    milliseconds before a woken request gets that CPU, and such waits made
    most of a proxied request's p99 with capture on (README, Performance).
    Checking the clock costs about 50 ns; a piece of work is one record or
    less."""

    __slots__ = ("slice", "give", "mark")

    def __init__(self, slice_s: float, give) -> None:
        self.slice = slice_s
        self.give = give
        self.mark = time.perf_counter()

    def __call__(self) -> None:
        now = time.perf_counter()
        if now - self.mark >= self.slice:
            self.give()
            self.mark = time.perf_counter()


class _Throttle:
    """Log a repeated problem at most once per interval."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.last: dict[str, float] = {}

    def ok(self, what: str) -> bool:
        now = time.monotonic()
        if now - self.last.get(what, -1e9) >= self.interval:
            self.last[what] = now
            return True
        return False


class CaptureStore:
    """Keeps every submitted record in the LMDB store under `data_dir`."""

    def __init__(self, data_dir: str, *, max_body_bytes: int = DEFAULT_MAX_BODY,
                 retention: str | float | None = None, batch_max: int = 512,
                 batch_linger: float = 0.02, map_size: int = DEFAULT_MAP_SIZE,
                 durable: bool = True, use_journal: bool = True,
                 journal_rotate_bytes: int = journal.DEFAULT_ROTATE_BYTES,
                 replay_interval: float = 15.0, purge_interval: float = 300.0,
                 max_queue: int = 200_000, clock=time.time, writer: str | None = None,
                 rotate_interval: float = 0.05, quiet_replay: bool = False,
                 share_gil: bool = True) -> None:
        """Open (creating if needed) the store and start this process's writer.

        - max_body_bytes: bodies above this are cut to it, `*_truncated` set.
        - retention: `database.retention.duration` (see retention.py), or seconds.
        - batch_max, batch_linger: a write transaction takes up to batch_max
          records, gathered for up to batch_linger seconds after the first.
        - map_size: initial LMDB map size; it grows as needed.
        - durable: LMDB fdatasync at each commit (the journal already covers a
          killed process; this covers a machine crash after the journal is emptied).
        - use_journal, journal_rotate_bytes: the per-process journal (journal.py).
        - replay_interval, purge_interval: seconds between journal replays and
          retention purges.
        - max_queue: records held in memory for the writer; beyond, new records
          wait in the journal for a replay.
        - writer: "thread" (default; env APERTURE_CAPTURE_WRITER) writes LMDB
          from a thread of this process; "process" only journals here and
          leaves the writing to a child process (drain.py), which takes the
          writer's Python work off this process's GIL. rotate_interval is how
          often a journal segment is handed to it.
        - share_gil: the writer lets other threads of this process (the event
          loop) run every few records; the drain process, where the writer
          has the interpreter to itself, turns it off.

        Raises OSError (StoreError for LMDB failures) if the store cannot be opened.
        `stats` counts records written, duplicates skipped, dropped, write and
        journal errors, replayed, purged, bytes of new blocks, writer CPU seconds.
        """
        writer = writer or os.environ.get("APERTURE_CAPTURE_WRITER") or "thread"
        if writer not in ("thread", "process"):
            raise ValueError(f"capture writer must be 'thread' or 'process', not {writer!r}")
        if retention is None or isinstance(retention, str):
            self.retention = retention_mod.parse_retention(retention)
        else:
            if retention < 0:
                raise ValueError("retention must not be negative")
            self.retention = float(retention)
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self.batch_max = max(1, batch_max)
        self.batch_linger = batch_linger
        self.data_dir = data_dir
        self._rotate_bytes = journal_rotate_bytes
        self._replay_interval = replay_interval
        self._purge_interval = purge_interval
        self._max_queue = max_queue

        handle = open_env(data_dir, map_size=map_size, durable=durable)
        assert handle is not None  # a writable open always returns a handle
        self._h: EnvHandle = handle
        self._dbs = self._h.dbs
        self._lock = threading.Lock()  # orders journal appends with the queue
        self._queue: deque[tuple[int, Record]] = deque()
        self._seq = 0  # last sequence number queued
        self._committed = 0  # every record up to this one is done (in LMDB or skipped)
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._idle = False
        self._closing = False
        self._closed = False
        self._ready = threading.Event()  # the start-up replay is over
        self._throttle = _Throttle()
        self.stats = {"written": 0, "duplicates": 0, "dropped": 0, "write_errors": 0,
                      "journal_errors": 0, "replayed": 0, "purged": 0, "bytes_blocks": 0,
                      "writer_cpu_s": 0.0}

        self._jdir = None
        self._journal: journal.JournalFile | None = None
        self._retired: list[journal.JournalFile] = []
        try:
            self._jdir = journal.journal_dir(data_dir)
            if use_journal:
                self._journal = journal.JournalFile(self._jdir)
        except OSError as e:
            if use_journal:
                log.error("capture journal unavailable in %s (%s): records are kept in "
                          "memory until written, and lost if this process is killed",
                          data_dir, e)
        self._quiet_replay = quiet_replay
        # The writer hands back the GIL (a thread of the worker) or its CPU
        # (the drain process) between pieces of work.
        self._pace = _Pacer(GIL_SLICE, _sleep0) if share_gil else _Pacer(CPU_SLICE, os.sched_yield)
        self._replay_passes = 0
        self._drain = None
        self._released: list[str] = []  # process mode: segments handed to the drain
        # Process mode: frames (and their connections) waiting for _append_held.
        self._held_frames: list[list[bytes]] = []
        self._held_conns: list = []
        # Process mode: frames a full disk refused, appended again when it takes them.
        self._backlog: list[list[bytes]] = []
        if writer == "process" and self._journal is not None:
            from .drain import DrainChild

            self._drain = DrainChild(data_dir, {
                "retention": self.retention, "max_body_bytes": max_body_bytes,
                "batch_max": batch_max, "batch_linger": batch_linger, "map_size": map_size,
                "durable": durable, "purge_interval": purge_interval,
                "replay_interval": 0.02, "log_level": logging.getLogger().getEffectiveLevel()})
            self._rotate_interval = rotate_interval
            self._ready.set()
            target = self._run_rotator
        else:
            if writer == "process":
                log.error("capture: no journal, so no drain process; writing from a thread")
            target = self._run
        self._thread = threading.Thread(target=target, name="aperture-capture", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------
    # Event loop side

    def submit(self, record: Record, hold=None) -> None:
        """Take a finished record: one journal append, then hand-off. Never raises.

        `hold`: in process mode, on the event loop, the client connection
        whose response's last bytes are about to be written. Its writes are
        kept back (`hold.hold()`) and the record joins the others finished in
        this pass of the loop; one journal append takes them all at the start
        of the next pass, then the connections get their bytes (`_append_held`).
        The client still receives nothing the journal does not hold, and the
        system call is shared."""
        if self._closed or self._closing:
            return
        try:
            rec = self._limit(record)
            parts = codec.journal_parts(self._for_disk(rec)) if self._journal else None
        except Exception:  # a record the codec cannot take: a bug, not a reason to fail
            log.exception("capture: cannot encode record %s", getattr(record, "id", "?"))
            return
        with self._lock:
            j = self._journal
            if self._drain is not None:
                # Process mode: the journal is the hand-off (see drain.py).
                if hold is not None:
                    hold.hold()
                    self._held_frames.append(parts)
                    self._held_conns.append(hold)
                    if len(self._held_conns) == 1:
                        hold.loop.call_soon(self._append_held)
                    return
                try:
                    j.append(parts, 0)
                except OSError as e:
                    self._journal_failed(j, e)
                    self._keep_back([parts])
                return
            overflow = len(self._queue) >= self._max_queue
            if j is not None and j.fd >= 0:
                seq = self._seq if overflow else self._seq + 1
                try:
                    j.append(parts, seq)
                except OSError as e:
                    self._journal_failed(j, e)
                    j = None
            if overflow:
                self.stats["dropped"] += 1
                if j is not None:
                    j.keep = True  # the record lives on in the journal, for a replay
                if self._throttle.ok("overflow"):
                    log.error("capture: writer is behind (%d records queued); new records "
                              "%s", len(self._queue),
                              "wait in the journal for a replay" if j is not None
                              else "are LOST (no journal)")
                return
            self._seq += 1
            self._queue.append((self._seq, rec))
            wake = self._idle
        if wake:
            self._wake.set()

    def _append_held(self) -> None:
        """Process mode, on the event loop: append the frames of the records
        submitted with `hold` since the last call, then release their
        connections (whatever happened to the append)."""
        frames, conns = self._held_frames, self._held_conns
        self._held_frames, self._held_conns = [], []
        try:
            with self._lock:
                j = self._journal
                for i in range(0, len(frames), _FRAMES_PER_WRITE):
                    chunk = frames[i:i + _FRAMES_PER_WRITE]
                    if j is None or self._closed:
                        self.stats["dropped"] += len(chunk)
                        continue
                    try:
                        j.append([part for parts in chunk for part in parts], 0)
                    except OSError as e:
                        self._journal_failed(j, e)
                        self._keep_back(chunk)
        finally:
            for conn in conns:
                conn.release()

    def _keep_back(self, frames: list[list[bytes]]) -> None:
        """Process mode, under `_lock`: frames the journal refused (a full
        disk) wait in memory, up to `max_queue` records, for `_retry_backlog`."""
        room = self._max_queue - len(self._backlog)
        if room < len(frames):
            self.stats["dropped"] += len(frames) - max(room, 0)
            if self._throttle.ok("backlog"):
                log.error("capture: the journal takes no records and %d wait in memory: "
                          "new records are LOST", len(self._backlog))
            frames = frames[:max(room, 0)]
        self._backlog.extend(frames)

    def _retry_backlog(self) -> None:
        """Process mode, from the rotator: append the frames a full disk refused."""
        with self._lock:
            j = self._journal
            if not self._backlog or j is None or self._closed:
                return
            backlog = self._backlog
            while backlog:
                chunk = backlog[:_FRAMES_PER_WRITE]
                try:
                    j.append([part for parts in chunk for part in parts], 0)
                except OSError as e:
                    self._journal_failed(j, e)
                    return
                del backlog[:len(chunk)]
        log.info("capture: the journal takes records again; the ones held in memory are in it")

    def _journal_failed(self, j: journal.JournalFile, e: OSError) -> None:
        self.stats["journal_errors"] += 1
        try:  # drop a partly written frame so later frames stay readable
            os.ftruncate(j.fd, j.size)
        except OSError:
            pass
        if self._throttle.ok("journal"):
            if self._drain is not None:
                log.error("capture journal append failed (%s): records wait in memory (%d) "
                          "until it takes them again, and would be lost if this process died "
                          "now", e, len(self._backlog) + 1)
            else:
                log.error("capture journal append failed (%s): the record is queued for LMDB "
                          "but would be lost if this process died now", e)

    def _limit(self, rec: Record) -> Record:
        cap = self.max_body_bytes
        q, r = rec.request_body, rec.response_body
        if len(q) > cap or len(r) > cap:
            rec = dataclasses.replace(
                rec, request_body=q[:cap], response_body=r[:cap],
                request_body_truncated=rec.request_body_truncated or len(q) > cap,
                response_body_truncated=rec.response_body_truncated or len(r) > cap)
        return rec

    def _for_disk(self, rec: Record) -> Record:
        # Zero retention: no content reaches the disk, not even the journal.
        if self.retention == 0 and (rec.request_body or rec.response_body
                                    or rec.request_headers or rec.response_headers
                                    or any(t.arguments for t in rec.tool_calls)):
            return dataclasses.replace(
                rec, request_body=b"", response_body=b"", request_headers=(),
                response_headers=(),
                tool_calls=tuple(dataclasses.replace(t, arguments="") for t in rec.tool_calls))
        return rec

    # ------------------------------------------------------------------
    # Public control

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record submitted so far is in LMDB. False on timeout."""
        deadline = time.monotonic() + timeout
        if self._drain is not None:
            self._rotate()
            waiting = list(self._released)
            while waiting:
                waiting = [p for p in waiting if os.path.exists(p)]
                if not waiting:
                    break
                if time.monotonic() >= deadline:
                    return False
                try:
                    self._drain.check()  # a drain that died meanwhile would never finish
                except OSError:
                    pass
                time.sleep(0.005)
            return True
        if not self._ready.wait(timeout):
            return False
        with self._lock:
            target = self._seq
        self._wake.set()
        with self._done:
            while self._committed < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return self._committed >= target
                self._done.wait(min(left, 0.05))
                self._wake.set()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then release the journal and the environment."""
        if self._closed:
            return
        if self._held_conns:
            self._append_held()
        self._closing = True
        self._wake.set()
        if self._drain is not None:
            self._close_process_mode(timeout)
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("capture: writer did not finish in %.0fs; unwritten records stay in "
                      "the journal for a replay", timeout)
        with self._lock:
            self._closed = True
            leftover = bool(self._queue)
            files = self._retired + ([self._journal] if self._journal else [])
            self._retired, self._journal = [], None
        for j in files:
            if j.fd < 0:
                continue
            if leftover or j.keep or j.last_seq > self._committed:
                j.release()
            else:
                j.remove()
        if not self._thread.is_alive():
            release_env(self._h)

    def _close_process_mode(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._retry_backlog()
        if self._backlog:
            log.error("capture: the journal takes no records: %d held in memory are LOST",
                      len(self._backlog))
        drained = self.flush(timeout)
        self._drain.stop(timeout)
        with self._lock:
            self._closed = True
            j, self._journal = self._journal, None
        if j is not None and j.fd >= 0:
            if j.size:
                j.release()
            else:
                j.remove()
        if not drained:
            log.error("capture: records not yet written stay in %s for a replay", self._jdir)
        release_env(self._h)

    def _rotate(self) -> None:
        """Process mode: hand the current segment to the drain process.

        The event loop appends under `_lock`, so the lock covers only the
        swap: the new segment is made (open, lock, rename) before it and the
        old one released after it. A system call under the lock would make
        the loop wait for this thread, and this thread then wait for the
        interpreter lock: a stall of up to a switch interval (5 ms)."""
        j = self._journal
        if j is None or not j.size:
            return
        try:
            new = journal.JournalFile(self._jdir)
        except OSError as e:
            if self._throttle.ok("rotate"):
                log.error("capture: cannot start a new journal segment: %s", e)
            return
        with self._lock:
            if self._closed or self._journal is not j:
                old = None
            else:
                old, self._journal = j, new
        if old is None:
            new.remove()
            return
        old.release()
        self._released.append(old.path)

    def _run_rotator(self) -> None:
        while not self._closing:
            self._wake.wait(self._rotate_interval)
            if self._closed:
                return
            if self._backlog:
                self._retry_backlog()
            self._rotate()
            if len(self._released) > 64:
                self._released = [p for p in self._released if os.path.exists(p)]
            try:
                self._drain.check()
            except OSError as e:
                if self._throttle.ok("drain"):
                    log.error("capture: cannot start the drain process: %s", e)

    def drain_journals(self, timeout: float = 30.0) -> bool:
        """Replay every unlocked journal now and wait for it (thread mode)."""
        target = self._replay_passes + 2  # a whole pass that starts after this call
        self._replay_due = 0.0
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._replay_passes < target:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self._replay_due = 0.0
            self._wake.set()
            time.sleep(0.005)
        return self.flush(max(0.0, deadline - time.monotonic()))

    def replay_now(self) -> None:
        """Replay journals of dead processes now (the writer also does it periodically)."""
        self._replay_due = 0.0
        self._wake.set()

    def purge(self) -> int:
        """Run the purges now, in the calling thread. Returns records purged."""
        before = self.stats["purged"]
        self._purge()
        return self.stats["purged"] - before

    def response_owner(self, response_id: str) -> tuple[str, str, str] | None:
        """(provider, model, user) of a Responses API response id, from the
        `resp` index (aperture.responses). None when unknown or unreadable."""
        key = response_id.encode("utf-8", "surrogatepass")[:KEY_FIELD_MAX]
        try:
            with self._h.read() as txn:
                raw = txn.get(key, db=self._dbs["resp"])
        except ENV_ERRORS as e:
            if self._throttle.ok("resp"):
                log.error("capture: cannot read the response id index: %s", e)
            return None
        if raw is None:
            return None
        provider, model, user = orjson.loads(raw)[:3]
        return provider, model, user

    # ------------------------------------------------------------------
    # Writer thread

    def _run(self) -> None:
        self._replay_due = 0.0
        self._purge_due = 0.0
        pending: list[tuple[int, Record]] = []
        failures = 0
        first = True
        while True:
            now = time.monotonic()
            if now >= self._replay_due:
                self._replay_due = now + self._replay_interval
                try:
                    self._replay()
                except Exception:
                    log.exception("capture: journal replay failed")
                if first:
                    first = False
                    self._ready.set()
            if now >= self._purge_due:
                self._purge_due = now + self._purge_interval
                try:
                    self._purge()
                except Exception:
                    log.exception("capture: retention purge failed")
            if not pending:
                pending = self._take()
            if pending:
                cpu = time.thread_time()
                try:
                    self._write_batch([r for _, r in pending])
                except ENV_ERRORS as e:
                    failures += 1
                    self.stats["write_errors"] += 1
                    pause = min(30.0, 0.1 * 2 ** min(failures, 9))
                    if self._throttle.ok("lmdb"):
                        log.error("capture: LMDB write failed (%s: %s); %d records waiting, "
                                  "retrying in %.1fs", type(e).__name__, e,
                                  len(pending) + len(self._queue), pause)
                    if self._closing and failures > 3:
                        return  # the journal keeps the records
                    time.sleep(pause)
                    continue
                except Exception:
                    try:
                        self._write_one_by_one([r for _, r in pending])
                    except ENV_ERRORS:
                        continue  # retried whole on the next pass
                failures = 0
                self._after_commit(pending[-1][0])
                self.stats["writer_cpu_s"] += time.thread_time() - cpu
                pending = []
                continue
            if self._closing:
                return
            self._idle = True
            if not self._queue:
                wait = max(0.0, min(self._replay_due, self._purge_due) - time.monotonic())
                self._wake.wait(min(wait, 5.0))
            self._wake.clear()
            self._idle = False
            if len(self._queue) < self.batch_max and self.batch_linger > 0 and not self._closing:
                time.sleep(self.batch_linger)

    def _take(self) -> list[tuple[int, Record]]:
        q = self._queue
        out = []
        n = min(len(q), self.batch_max)
        for _ in range(n):
            out.append(q.popleft())
        return out

    def _after_commit(self, seq: int) -> None:
        done = []
        with self._lock:
            self._committed = seq
            j = self._journal
            if j is not None and j.fd >= 0 and j.size:
                if j.last_seq <= seq and not j.keep:
                    try:
                        j.truncate()
                    except OSError as e:
                        if self._throttle.ok("truncate"):
                            log.error("capture: cannot truncate journal %s: %s", j.path, e)
                elif j.keep or j.size > self._rotate_bytes:
                    try:
                        self._journal = journal.JournalFile(self._jdir)
                        self._retired.append(j)
                    except OSError as e:
                        if self._throttle.ok("rotate"):
                            log.error("capture: cannot start a new journal: %s", e)
            keep = []
            for r in self._retired:
                (done if r.last_seq <= seq else keep).append(r)
            self._retired = keep
        for r in done:
            if r.keep:
                r.release()
            else:
                r.remove()
        with self._done:
            self._done.notify_all()

    def _write_one_by_one(self, records: list, write=None) -> None:
        """Write each record in its own transaction, skipping those that fail
        for a reason other than the environment. `write` takes a list of
        records as given (default: Record objects, see _write_batch)."""
        write = write or self._write_batch
        for rec in records:
            try:
                write([rec])
            except ENV_ERRORS:
                raise
            except Exception:
                self.stats["dropped"] += 1
                log.exception("capture: record %s cannot be stored; skipped",
                              getattr(rec, "id", None) or "from a journal")

    def _write_batch(self, records: list[Record]) -> None:
        """Write Record objects (the writer thread's queue) in one transaction."""
        self._write_entries([codec.record_entry(r) for r in records])

    def _write_payloads(self, payloads: list[bytes]) -> None:
        """Write journal frame payloads (a replay) in one transaction."""
        decode, pace = codec.decode_journal_entry, self._pace
        entries = []
        for p in payloads:
            pace()
            entries.append(decode(p))
        self._write_entries(entries)

    def _write_entries(self, entries: list[codec.Entry]) -> None:
        """Write records given as (meta list, request body, response body)
        entries, the journal's layout (see codec.record_entry), in one
        transaction."""
        retention = self.retention
        cutoff = None if retention is None else self._clock() - retention
        prepare, prepare_body = sessions.prepare, blocks.prepare_body
        # One tuple per record: (meta list, session hint, request size,
        # response size, request and response descriptors (None past the
        # retention), the (hash, block) pairs of both bodies).
        prepared = []
        hashes: dict[bytes, bytes] = {}
        pace = self._pace
        for f, req, resp in entries:
            pace()
            hint = prepare(f[F_SESSION_HINT], f[F_REQ_HEADERS], f[F_USER], req)
            if cutoff is None or (retention > 0 and f[F_TIME] >= cutoff):
                req_d, req_blocks = prepare_body(req)
                resp_d, resp_blocks = prepare_body(resp)
                body_blocks = req_blocks + resp_blocks
                if body_blocks:
                    hashes.update(body_blocks)
                prepared.append((f, hint, len(req), len(resp), req_d, resp_d, body_blocks))
            else:  # past the retention: no bodies, headers or tool arguments
                prepared.append((f, hint, len(req), len(resp), None, None, ()))
        # Compress, outside the write transaction, the blocks not stored yet.
        packed: dict[bytes, bytes] = {}
        if hashes:
            with self._h.read() as txn:
                missing = blocks.missing_blocks(txn, self._dbs, hashes)
            for h in missing:
                pace()
                packed[h] = blocks.pack_block(hashes[h])
        for attempt in range(20):
            try:
                with self._h.env.begin(write=True) as txn:
                    written, dups, added = self._apply(txn, prepared, packed)
                break
            except lmdb.MapFullError:
                before = self._h.env.info()["map_size"]
                size = self._h.grow()
                if size <= before:
                    raise StoreError(
                        "capture store in %s (--data-dir) is full: its LMDB map is at its "
                        "largest size, %.1f MiB; records wait in the journal (shorten the "
                        "retention, or move --data-dir)" % (self.data_dir, size / (1 << 20)))
                log.info("capture: map size grown to %d MiB", size >> 20)
            except lmdb.MapResizedError:
                self._h.adopt_map_size()
        else:
            raise StoreError("capture store in %s (--data-dir): the LMDB map could not grow "
                             "enough" % self.data_dir)
        self.stats["written"] += written
        self.stats["duplicates"] += dups
        self.stats["bytes_blocks"] += added

    def _apply(self, txn, prepared: list, packed: dict[bytes, bytes]):
        # One cursor per database: a cursor's put and get skip the per-call
        # set-up of txn.put(..., db=...), a large share of a small record's cost.
        dbs = self._dbs
        cursor = txn.cursor
        ids = cursor(db=dbs["ids"])
        ids_get, ids_put = ids.get, ids.put
        rec_put = cursor(db=dbs["rec"]).put
        cap_put = cursor(db=dbs["cap"]).put
        tools_put = cursor(db=dbs["tools"]).put
        ix_u = cursor(db=dbs["ix_u"]).put
        ix_m = cursor(db=dbs["ix_m"]).put
        ix_p = cursor(db=dbs["ix_p"]).put
        ix_s = cursor(db=dbs["ix_s"]).put
        conv = cursor(db=dbs["conv"])
        resp = cursor(db=dbs["resp"])
        resp_t_put = cursor(db=dbs["resp_t"]).put
        resolve, summary, encode_capture = sessions.resolve, codec.summary, codec.encode_capture
        dups = added = 0
        rows: list[list] = []  # the records written, for the rollups
        by_session: dict[str, list[list]] = {}  # the same, per session
        pace = self._pace
        for f, hint, req_size, resp_size, req_d, resp_d, body_blocks in prepared:
            pace()
            idb = f[F_ID].encode("ascii", "replace")
            if ids_get(idb) is not None:
                dups += 1
                continue
            t = f[F_TIME]
            ts = ts_bytes(t)
            tsid = ts + idb
            sid = resolve(conv, hint, new_id, resp)
            ids_put(idb, ts)
            if f[F_RESPONSE_ID]:
                rkey = f[F_RESPONSE_ID].encode("utf-8", "surrogatepass")[:KEY_FIELD_MAX]
                if resp.put(rkey, orjson.dumps([f[F_PROVIDER], f[F_MODEL], f[F_USER], sid, t])):
                    resp_t_put(ts + rkey, b"")
            rec_put(tsid, summary(f, sid, req_size, resp_size))
            if req_d is not None:
                if body_blocks:
                    added += blocks.store_blocks(txn, dbs, body_blocks, blocks.hour_of(t),
                                                 packed)
                qh, rh = f[F_REQ_HEADERS], f[F_RESP_HEADERS]
                headers = codec.encode_headers(qh, rh) if qh or rh else b""
                cap_put(idb, encode_capture(headers, req_d, resp_d))
                if f[F_TOOLS]:
                    tools_put(idb, codec.encode_tools(f[F_TOOLS]))
            ix_u(key_field(f[F_USER]) + SEP + tsid, b"")
            ix_m(key_field(f[F_MODEL]) + SEP + tsid, b"")
            ix_p(key_field(f[F_PROVIDER]) + SEP + tsid, b"")
            ix_s(key_field(sid) + SEP + tsid, b"")
            rows.append(f)
            same = by_session.get(sid)
            if same is None:
                by_session[sid] = [f]
            else:
                same.append(f)
        self._flush_sessions(txn, by_session)
        self._flush_rollups(txn, rows)
        return len(rows), dups, added

    def _flush_sessions(self, txn, by_session: dict[str, list[list]]) -> None:
        """Add each session's records of the batch to its stored totals, and
        move its ses_t and ses_u entries to its new last time and user."""
        dbs = self._dbs
        ses = txn.cursor(db=dbs["ses"])
        ses_t, ses_u = dbs["ses_t"], dbs["ses_u"]
        pace = self._pace
        for sid, rows in by_session.items():
            pace()
            sidb = sid.encode("utf-8", "surrogatepass")
            raw = ses.get(sidb)
            if raw is None:
                tot = sessions.new_totals(sid, rows[0][F_USER], rows[0][F_TIME])
                old_last = old_user = None
            else:
                tot = orjson.loads(raw)
                old_last, old_user = tot["last"], tot["user"]
            sessions.add_to_totals(tot, rows)
            ses.put(sidb, orjson.dumps(tot))
            new_last = ts_bytes(tot["last"])
            new_user = key_field(tot["user"])
            if old_last is not None:
                ol = ts_bytes(old_last)
                ou = key_field(old_user)
                if ol == new_last and ou == new_user:
                    continue
                txn.delete(ol + sidb, db=ses_t)
                txn.delete(ou + SEP + ol + sidb, db=ses_u)
            txn.put(new_last + sidb, b"", db=ses_t)
            txn.put(new_user + SEP + new_last + sidb, b"", db=ses_u)

    @staticmethod
    def _rollup_sums(rows: list[list], pace) -> dict[tuple, list[int]]:
        """The figures of the batch's records summed per (hour, user, model,
        provider) and per (hour, tool name, user, model, provider);
        _flush_rollups expands each sum into rollup keys."""
        roll: dict[tuple, list[int]] = {}
        for f in rows:
            pace()
            u = f[F_USAGE]
            hour = int(f[F_TIME] // 3600)
            calls = f[F_TOOLS]
            dur = int((f[F_DURATION] or 0) * 1000)
            cost = f[F_COST]
            priced, unpriced = (0, 1) if cost is None else (cost, 0)
            user, model, provider = f[F_USER], f[F_MODEL], f[F_PROVIDER]
            add_counts(roll, (hour, user, model, provider),
                       (1, u[0], u[1], u[2], u[3], u[4], len(calls), dur, priced, unpriced))
            if calls:
                counts: dict[str, int] = {}
                for tc in calls:
                    counts[tc[0]] = counts.get(tc[0], 0) + 1
                for name, n in counts.items():
                    add_counts(roll, (hour, name, user, model, provider),
                               (1, u[0], u[1], u[2], u[3], u[4], n, dur, priced, unpriced))
        return roll

    def _flush_rollups(self, txn, rows: list[list]) -> None:
        keys: dict[bytes, list[int]] = {}
        for k, vals in self._rollup_sums(rows, self._pace).items():
            hour = k[0]
            hb = LEVEL_HOUR + struct.pack(">I", hour)
            db_ = LEVEL_DAY + struct.pack(">I", hour // 24)
            if len(k) == 4:
                _, user, model, provider = k
                targets = ((DIM_TOTAL, b""), (DIM_USER, key_field(user)),
                           (DIM_MODEL, key_field(model)), (DIM_PROVIDER, key_field(provider)),
                           (DIM_COMBO, combo_key(user, provider, model)))
            else:
                _, name, user, model, provider = k
                targets = ((DIM_TOOL, key_field(name)),
                           (DIM_TOOL_COMBO, combo_key(user, provider, model, name)))
            for dim, value in targets:
                for level in (hb, db_):
                    add_counts(keys, dim + level + value, vals)
        db = self._dbs["roll"]
        get, put, pack = txn.get, txn.put, ROLL.pack
        pace = self._pace
        for rk, acc in keys.items():
            pace()
            old = get(rk, db=db)
            if old is not None:
                acc = [a + b for a, b in zip(acc, rollup_values(old))]
            put(rk, pack(*acc), db=db)
        meta = self._dbs["meta"]
        if rows and get(COMBO_SINCE, db=meta) is None:
            self._mark_combo_since(txn, rows)

    def _mark_combo_since(self, txn, rows: list[list]) -> None:
        """First batch with combination rollups: records stored before it
        have none; remember the newest of them (0 for a new store)."""
        since = 0.0
        with txn.cursor(db=self._dbs["rec"]) as cur:
            ids = {f[F_ID] for f in rows}
            if cur.last():
                for key, value in cur.iterprev():
                    if key[8:].decode("ascii", "replace") not in ids:
                        since = orjson.loads(value)[1]
                        break
        txn.put(COMBO_SINCE, ts_bytes(since), db=self._dbs["meta"])

    # -- periodic work ----------------------------------------------------

    def _replay(self) -> None:
        try:
            # Free the reader slots of killed processes (a `query` cut short).
            self._h.env.reader_check()
        except lmdb.Error:
            pass
        try:
            if self._jdir is not None:
                self._replay_orphans()
        finally:
            self._replay_passes += 1

    def _replay_orphans(self) -> None:
        with self._lock:
            own = {j.path for j in self._retired if j.fd >= 0}
            if self._journal is not None:
                own.add(self._journal.path)
        for orphan in journal.orphans(self._jdir, own):
            try:
                records = orphan.read(self._pace)  # frame payloads (codec.read_frames)
                for i in range(0, len(records), self.batch_max):
                    chunk = records[i:i + self.batch_max]
                    try:
                        self._write_payloads(chunk)
                    except ENV_ERRORS:
                        raise
                    except Exception:
                        self._write_one_by_one(chunk, self._write_payloads)
            except Exception as e:  # the file stays for the next pass
                log.error("capture: replay of %s failed (%s); will retry", orphan.path, e)
                orphan.give_up()
                continue
            self.stats["replayed"] += len(records)
            if records and not self._quiet_replay:
                log.info("capture: replayed %d records from %s", len(records), orphan.path)
            orphan.done()

    def _purge(self) -> None:
        """Forget response ids past RESPONSE_ID_DAYS; purge content past the retention."""
        dbs = self._dbs
        ids_cutoff = self._clock() - RESPONSE_ID_DAYS * 86400.0

        def response_ids(txn):
            return 0, retention_mod.purge_response_ids(txn, dbs, ids_cutoff)

        self._purge_steps("purge of old response ids", response_ids)
        if self.retention is None:
            return
        cutoff = self._clock() - self.retention

        def content(txn):
            purged, _, done = retention_mod.purge_step(txn, dbs, cutoff)
            return purged, done

        self._purge_steps("retention purge", content)

    def _purge_steps(self, what: str, step) -> None:
        """Run `step(txn)` -> (records purged, done) in write transactions
        until it is done, letting the event loop in between."""
        while not self._closing:
            try:
                with self._h.env.begin(write=True) as txn:
                    n, done = step(txn)
            except lmdb.MapResizedError:
                self._h.adopt_map_size()
                continue
            except ENV_ERRORS as e:
                log.error("capture: %s failed: %s", what, e)
                return
            if n:
                with self._lock:
                    self.stats["purged"] += n
            if done:
                return
            time.sleep(0.001)
