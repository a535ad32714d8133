"""Capture benchmarks: write throughput and query latency.

    python tools/bench_capture.py [--records 1000000] [--store DIR] [--write-only | --query-only]

Write throughput:
- small records (a short chat request and answer), submitted from one thread
  as fast as possible: the CPU `submit` costs the caller, the CPU the writer
  spends per record (writer thread, or drain process), and the records per
  second committed;
- Claude-Code-like records (50-turn sessions, 60-200 kB request bodies).

Query latency, over a generated store of `--records` records (30 days, 50
users, 6 models, sessions of about 20 requests): listing with a user filter,
usage by model (all time and last 7 days), sessions, and for comparison two
queries no index serves (a status filter; usage by model for one user).
The generated store is kept in `--store DIR` when given, and reused if it
already holds records.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aperture.capture.query import CaptureReader, Filter  # noqa: E402
from aperture.capture.record import ToolCall, Usage  # noqa: E402
from aperture.capture.store import CaptureStore  # noqa: E402
from tests.capture.helpers import claude_code_bodies, make_record, sse_response  # noqa: E402

MODELS = [("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-opus-4-1"),
          ("anthropic", "claude-haiku-4-5"), ("openai", "gpt-5"), ("openai", "gpt-5-mini"),
          ("google", "gemini-2.5-pro")]
TOOLS = ["Read", "Edit", "Bash", "Grep", "Glob", "Write", "TodoWrite", "WebFetch"]


def bench_small(n: int, writer: str) -> None:
    """CPU per small record: on the submitting thread, and in the writer
    (the writer thread of this process, or the drain process)."""
    d = tempfile.mkdtemp()
    try:
        store = CaptureStore(d, writer=writer)
        store.flush(30)
        recs = [make_record(usage=Usage(100 + i % 50, 20, 0, 0, 0)) for i in range(n)]
        children_before = os.times().children_user + os.times().children_system
        t0 = time.perf_counter()
        c0 = time.thread_time()
        for r in recs:
            store.submit(r)
        submit_cpu = time.thread_time() - c0
        assert store.flush(600)
        t2 = time.perf_counter()
        writer_cpu = store.stats["writer_cpu_s"]
        store.close()
        if writer == "process":
            writer_cpu = (os.times().children_user + os.times().children_system
                          - children_before)
        print(f"small records, {writer} writer: submit {1e6 * submit_cpu / n:.1f} us CPU, "
              f"writer {1e6 * writer_cpu / n:.1f} us CPU per record; {n / (t2 - t0):,.0f} "
              f"records/s committed ({n} records, durable commits)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_agentic(sessions: int) -> None:
    d = tempfile.mkdtemp()
    try:
        store = CaptureStore(d)
        store.flush()
        rng = random.Random(1)
        recs = []
        raw = 0
        for s in range(sessions):
            for body in claude_code_bodies(50, seed=s, session=f"s{s}"):
                resp = sse_response(rng, 40)
                raw += len(body) + len(resp)
                recs.append(make_record(request_body=body, response_body=resp, stream=True))
        t0 = time.perf_counter()
        for r in recs:
            store.submit(r)
        t1 = time.perf_counter()
        assert store.flush(600)
        t2 = time.perf_counter()
        store.close()
        n = len(recs)
        print(f"Claude-Code-like records: submit {1e6 * (t1 - t0) / n:.0f} us each on the "
              f"caller; {n / (t2 - t0):,.0f} records/s, {raw / (t2 - t0) / 1e6:.0f} MB/s of "
              f"bodies ({n} records, {raw / n / 1e3:.0f} kB each)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def generate(d: str, n: int) -> None:
    rng = random.Random(42)
    now = time.time()
    users = [f"user{i:02d}@example.com" for i in range(50)]
    store = CaptureStore(d, durable=False, batch_max=2000, max_queue=10**9)
    t0 = time.perf_counter()
    open_sessions: dict[str, list] = {}
    step = 30 * 86400 / n
    for i in range(n):
        user = rng.choice(users)
        sess = open_sessions.get(user)
        if sess is None or sess[1] <= 0:
            sess = open_sessions[user] = [f"{user}-{i}", rng.randrange(5, 40)]
        sess[1] -= 1
        provider, model = rng.choice(MODELS)
        ntools = rng.choice((0, 0, 1, 2))
        rec = make_record(
            time=now - 30 * 86400 + i * step, user=user, provider=provider, model=model,
            status=rng.choice((200,) * 30 + (429, 500)),
            usage=Usage(rng.randrange(5000), rng.randrange(2000), rng.randrange(50000),
                        rng.randrange(3000), rng.randrange(500)),
            tool_calls=tuple(ToolCall(rng.choice(TOOLS), '{"x":1}') for _ in range(ntools)),
            session_hint=sess[0], duration_ms=rng.uniform(200, 20000))
        store.submit(rec)
        if i % 20000 == 19999:
            store.flush(600)
            print(f"  generated {i + 1:,} records ({(i + 1) / (time.perf_counter() - t0):,.0f}"
                  f"/s)", end="\r", flush=True)
    assert store.flush(3600)
    store.close()
    print(f"  generated {n:,} records in {time.perf_counter() - t0:.0f} s" + " " * 20)


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_queries(d: str) -> None:
    now = time.time()
    with CaptureReader(d) as r:
        with r._h.read() as txn:
            total = txn.stat(r._h.dbs["rec"])["entries"]
        print(f"query latency over {total:,} records (median of 5, in-process reader):")
        cases = [
            ("list --user U --limit 50", lambda: r.records(Filter(user="user07@example.com"), 50)),
            ("list --model M --since 7d --limit 50",
             lambda: r.records(Filter(model="gpt-5", since=now - 7 * 86400), 50)),
            ("list --limit 50", lambda: r.records(Filter(), 50)),
            ("usage --by model", lambda: r.usage("model")),
            ("usage --by model --since 7d",
             lambda: r.usage("model", Filter(since=now - 7 * 86400))),
            ("usage --by day", lambda: r.usage("day")),
            ("usage --by tool --since 24h", lambda: r.usage("tool", Filter(since=now - 86400))),
            ("sessions --limit 50", lambda: r.sessions(Filter(), 50)),
            ("sessions --user U --limit 50",
             lambda: r.sessions(Filter(user="user07@example.com"), 50)),
            ("usage --by model --user U (scan of U's records)",
             lambda: r.usage("model", Filter(user="user07@example.com"))),
            ("list --status 500 --limit 50", lambda: r.records(Filter(status=500), 50)),
            ("list --status 418 (no match: full scan)",
             lambda: r.records(Filter(status=418), 50)),
        ]
        for name, fn in cases:
            t, out = timed(fn, 3 if "scan" in name else 5)
            print(f"  {name:<50} {t * 1000:9.1f} ms  ({len(out)} rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description="capture write and query benchmarks")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=50_000, help="small records to write")
    ap.add_argument("--sessions", type=int, default=4, help="50-turn agentic sessions")
    ap.add_argument("--store", default=None, help="keep the generated store here")
    ap.add_argument("--write-only", action="store_true")
    ap.add_argument("--query-only", action="store_true")
    args = ap.parse_args()
    if not args.query_only:
        bench_small(args.small, "thread")
        bench_small(args.small, "process")
        bench_agentic(args.sessions)
    if args.write_only:
        return
    d = args.store or tempfile.mkdtemp()
    try:
        exists = os.path.exists(os.path.join(d, "captures.lmdb", "data.mdb"))
        if not exists:
            print(f"generating {args.records:,} records in {d} ...")
            generate(d, args.records)
        bench_queries(d)
    finally:
        if args.store is None:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
