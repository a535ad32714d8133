"""The capture writer as a separate process (`CaptureStore(writer="process")`).

Theory of operation. In the default mode the LMDB writer is a thread of the
gateway worker and shares the GIL with its event loop: every millisecond the
writer spends in Python is a millisecond the event loop waits, and each
hand-over of the GIL costs a thread wake-up on top. In process mode the worker
only appends records to its journal; the writing happens in a child process.

    worker process                          drain process (one per worker)
    --------------                          ------------------------------
    submit: one os.writev to the current    every `poll` seconds: replay every
      journal segment (locked, see          journal segment nobody holds a lock
      journal.py)                           on (journal.orphans) into LMDB, then
    every `rotate` seconds, if the          delete it; the usual writer does the
      segment holds records: start a new    work (sessions, blocks, rollups,
      segment and unlock the old one        retention purge)

An unlocked segment is exactly what the replay after a crash looks for, so the
drain process needs no protocol with the worker: a segment is handed over by
dropping its lock, and whichever drain process locks it first writes it
(records already stored are skipped by id). A SIGKILLed worker's last segment
is unlocked by the kernel and drained the same way. The drain process stops
when its standard input reaches end of file (the worker closed it, or died),
after one last pass.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import orjson

log = logging.getLogger("aperture.capture")

DEFAULT_ROTATE = 0.05
DEFAULT_POLL = 0.02


class DrainChild:
    """Starts the drain process and restarts it if it dies."""

    def __init__(self, data_dir: str, options: dict) -> None:
        self.data_dir = data_dir
        self.options = options
        self.proc: subprocess.Popen | None = None
        self._last_start = 0.0
        self.start()

    def start(self) -> None:
        self._last_start = time.monotonic()
        # The child imports this same aperture, wherever it is installed.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aperture.capture.drain", os.path.abspath(self.data_dir),
             orjson.dumps(self.options).decode()],
            stdin=subprocess.PIPE, close_fds=True, env=env)

    def check(self) -> None:
        """Restart the drain process if it exited (at most once a second)."""
        p = self.proc
        if p is not None and p.poll() is not None and time.monotonic() - self._last_start > 1.0:
            log.error("capture: drain process exited with status %s; restarting it",
                      p.returncode)
            self.start()

    def stop(self, timeout: float) -> None:
        p = self.proc
        if p is None:
            return
        try:
            p.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("capture: drain process did not stop in %.0fs; killing it "
                      "(its segments stay for a replay)", timeout)
            p.kill()
            p.wait()


def main(argv: list[str]) -> int:
    data_dir, options = argv[0], orjson.loads(argv[1])
    # The worker decides when we stop (end of standard input); a Ctrl-C or a
    # SIGTERM sent to the whole process group must not cut a transaction short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A background writer: when CPUs are short, serving comes first. The
    # journal holds what waits, and the drain catches up when there is room.
    os.nice(10)
    logging.basicConfig(level=options.pop("log_level", logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .store import CaptureStore

    store = CaptureStore(data_dir, writer="thread", use_journal=False, quiet_replay=True,
                         share_gil=False, **options)
    # The writer allocates a batch of records at a time and drops it whole
    # once committed. With the collector's default first threshold (700
    # objects) each batch would be scanned several times while alive; with
    # this one most of it is gone before a collection. Objects from start-up
    # stay for the life of the process: frozen, no collection visits them.
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    done = threading.Event()

    def wait_stdin() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    done.wait()
    store.drain_journals(timeout=60.0)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
