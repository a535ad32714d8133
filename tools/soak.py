#!/usr/bin/env python3
"""Soak: aperture under a mixed load for a long while, then the books checked.

    python tools/soak.py [--minutes 10] [--users 32] [--workers 2]

Runs `aperture serve --workers N` on its embedded default (every API format,
answered by the provider simulator) with capture on, and drives
`loadtest/soakfile.py` at it with locust (`pip install -e '.[bench]'`): every
format, streams and not, tool calls, injected provider errors and cuts,
clients that hang up mid-stream, refused requests. Then it checks:

- the store holds exactly one record per request sent, by the state each one
  must have (`complete`, `incomplete`, `client_disconnected`, `refused`);
- the workers' resident memory grew by less than 10 % from the end of the
  first tenth of the run (warm: pools, caches, allocator arenas) to the end;
- the gateway's log has no ERROR line and no traceback.

Exit status 1 when a check fails. Load stays on this machine (127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import benchkit as bk  # noqa: E402

ROOT = TOOLS.parent


def workers_rss(gateway_pid: int) -> int:
    """KiB of resident memory of the serving processes (the workers, not their
    capture writer processes)."""
    total = 0
    for pid in bk.children(gateway_pid):
        try:
            cmdline = Path("/proc/%d/cmdline" % pid).read_bytes()
        except OSError:
            continue
        if b"aperture.capture.drain" not in cmdline:
            total += bk.rss_kib(pid)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    locust = shutil.which("locust") or str(Path(sys.executable).with_name("locust"))
    if not Path(locust).exists():
        raise SystemExit("locust not found: pip install -e '.[bench]'")
    seconds = int(args.minutes * 60)

    tmp = Path(tempfile.mkdtemp(prefix="aperture-soak-"))
    port = bk.free_port()
    log = tmp / "gateway.log"
    counts_file = tmp / "counts.json"
    gw = bk.start([sys.executable, "-m", "aperture.cli", "serve", "--listen", "127.0.0.1:%d" % port,
                   "--workers", str(args.workers), "--data-dir", str(tmp / "data"),
                   "--log-level", "warning"], log)
    failed = []
    try:
        bk.wait_port(port)
        time.sleep(1)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(2.0):
                samples.append((time.monotonic(), workers_rss(gw.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        started = time.monotonic()
        sampler.start()
        run = subprocess.run(
            [locust, "-f", str(ROOT / "loadtest" / "soakfile.py"), "--headless", "-u", str(args.users),
             "-r", str(max(1, args.users // 4)), "--run-time", "%ds" % seconds, "--only-summary",
             # users finish the request they are in before the run stops
             "--stop-timeout", "30",
             "--host", "http://127.0.0.1:%d" % port],
            env={**__import__("os").environ, "APERTURE_SOAK_COUNTS": str(counts_file)},
            capture_output=True, text=True)
        stop.set()
        sampler.join()
        if not counts_file.exists():
            raise SystemExit("locust wrote no counts:\n" + run.stderr[-3000:])
        counts = json.loads(counts_file.read_text())
        expected = Counter(counts["states"])
        for error, n in counts["no_answer"].items():
            print("no answer to %d requests (not sent, so not recorded): %s" % (n, error))
        sent = sum(expected.values())

        # The books: one record per request, by state.
        from aperture.capture.query import CaptureReader

        def stored() -> Counter:
            with CaptureReader(str(tmp / "data")) as reader:
                return Counter(row["state"] for row in reader.records(limit=None))

        deadline = time.monotonic() + 60
        got = stored()
        while sum(got.values()) < sent and time.monotonic() < deadline:
            time.sleep(1)
            got = stored()
        # What the workers counted (/metrics sums them): exchanges, and records
        # the capture dropped.
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
        counted = {f.name: sum(s.value for s in f.samples if not s.name.endswith("_created"))
                   for f in text_string_to_metric_families(text)}
        print("\nthe workers counted %d exchanges; the capture dropped %d records"
              % (counted.get("aperture_requests", 0), counted.get("aperture_capture_dropped_records", 0)))
        print("requests sent: %d in %.0f s (%.0f/s), %d users, %d workers"
              % (sent, seconds, sent / seconds, args.users, args.workers))
        print("%-22s %10s %10s" % ("state", "sent", "stored"))
        for state in sorted(set(expected) | set(got)):
            print("%-22s %10d %10d" % (state, expected[state], got[state]))
        if got != expected:
            failed.append("the store does not hold one record per request, by state")
        # What the clients saw go wrong (locust's error report), for the books.
        report = run.stderr.rpartition("Error report")[2].strip()
        if report and "# occurrences" in report:
            print("locust's error report:")
            for line in report.splitlines()[:15]:
                print("  " + line)

        # Memory: the end of the first tenth of the run against the end.
        warm = [rss for t, rss in samples if t - started >= seconds / 10]
        if warm:
            growth = warm[-1] / warm[0] - 1
            print("workers' RSS: %.1f MiB warm, %.1f MiB at the end: %+.1f %% (budget < 10 %%)"
                  % (warm[0] / 1024, warm[-1] / 1024, growth * 100))
            if growth >= 0.10:
                failed.append("RSS grew by %.1f %%" % (growth * 100))

        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if re.search(r" ERROR |Traceback", line)]
        print("error lines in the gateway's log: %d" % len(errors))
        for line in errors[:10]:
            print("  " + line)
        if errors:
            failed.append("errors in the log")
    finally:
        bk.stop(gw, timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print("FAILED: " + "; ".join(failed))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
