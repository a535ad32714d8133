"""The dashboard's page data over a large store: time per page.

    python tools/bench_ui.py [--records 1000000] [--store DIR] [--repeat 5]

Generates (or reuses, with --store) a store of `--records` records over 30
days: 50 users, 9 models of 5 providers (one without a price), sessions of
5 to 40 requests, tool calls, a few refused and failed exchanges, each record
with its estimated cost. Then, for every page, runs the calls its script makes
the way the reader process runs them (aperture.ui.data, in this process,
sequentially) and prints the median of `--repeat` runs. The budget is 200 ms
per page.
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

from aperture import pricing  # noqa: E402
from aperture.capture.query import CaptureReader, Filter  # noqa: E402
from aperture.capture.record import ToolCall, Usage  # noqa: E402
from aperture.capture.store import CaptureStore  # noqa: E402
from aperture.ui import data  # noqa: E402
from tests.capture.helpers import make_record  # noqa: E402

MODELS = [("anthropic", "claude-sonnet-4-6"), ("anthropic", "claude-opus-4-7"),
          ("anthropic", "claude-haiku-4-5"), ("openai", "gpt-5.4"), ("openai", "gpt-5.4-mini"),
          ("openai", "gpt-5.3-codex"), ("google", "gemini-2.5-pro"),
          ("bedrock", "us.anthropic.claude-sonnet-4-6"), ("local", "qwen3-coder:30b")]
TOOLS = ["Read", "Edit", "Bash", "Grep", "Glob", "Write", "TodoWrite", "WebFetch"]
DAY = 86400


def generate(d: str, n: int) -> None:
    rng = random.Random(42)
    now = time.time()
    users = [f"user{i:02d}@example.com" for i in range(50)]
    store = CaptureStore(d, durable=False, batch_max=2000, max_queue=10**9)
    t0 = time.perf_counter()
    open_sessions: dict[str, list] = {}
    step = 30 * DAY / n
    for i in range(n):
        user = rng.choice(users)
        sess = open_sessions.get(user)
        if sess is None or sess[1] <= 0:
            sess = open_sessions[user] = [f"{user}-{i}", rng.randrange(5, 40)]
        sess[1] -= 1
        provider, model = rng.choice(MODELS)
        usage = Usage(rng.randrange(5000), rng.randrange(2000), rng.randrange(50000),
                      rng.randrange(3000), rng.randrange(500))
        state, status = rng.choice([("complete", 200)] * 40 + [("refused", 403), (
            "upstream_error", 529), ("incomplete", 200)])
        price = pricing.lookup(provider, model) if provider != "local" else None
        cost = 0 if state == "refused" else (
            None if price is None else price.cost(usage.input_tokens, usage.output_tokens,
                                                  usage.cache_read_tokens,
                                                  usage.cache_write_tokens))
        rec = make_record(
            time=now - 30 * DAY + i * step, user=user, provider=provider, model=model,
            status=status, state=state, usage=usage, cost=cost,
            tool_calls=tuple(ToolCall(rng.choice(TOOLS), '{"x":1}')
                             for _ in range(rng.choice((0, 0, 1, 2)))),
            session_hint=sess[0], duration_ms=rng.uniform(200, 20000))
        store.submit(rec)
        if i % 20000 == 19999:
            store.flush(600)
            print(f"  generated {i + 1:,} records ({(i + 1) / (time.perf_counter() - t0):,.0f}"
                  f"/s)", end="\r", flush=True)
    assert store.flush(3600)
    store.close()
    print(f"  generated {n:,} records in {time.perf_counter() - t0:.0f} s" + " " * 20)


def pages(d: str) -> list[tuple[str, list]]:
    """(page, [(call, args)]) as app.js asks for them."""
    with CaptureReader(d) as r:
        one = r.records(Filter(user="user07@example.com"), 1)[0]
    user, sid, rid = one["user"], one["session"], one["id"]
    q = lambda **kw: {"since": None, "until": None, "user": None, "model": None,  # noqa: E731
                      "provider": None, "tool": None, "group": (), "bucket": None, **kw}
    now = time.time()
    out = []
    for label, since, bucket in (("24h", now - DAY, "hour"), ("7d", now - 7 * DAY, "day"),
                                 ("30d", now - 30 * DAY, "day"), ("all", None, "day")):
        out.append((f"Dashboard (one user, {label})", [
            ("summary", ({"since": since, "until": None, "user": user},)),
            ("usage", (q(since=since, user=user, group=("model",)),)),
            ("usage", (q(since=since, user=user, bucket=bucket),))]))
    for label, since, bucket in (("7d", now - 7 * DAY, "day"), ("30d", now - 30 * DAY, "day")):
        out.append((f"Adoption (everyone, {label})", [
            ("summary", ({"since": since, "until": None, "user": None},)),
            ("users", ({"since": since, "until": None},)),
            ("active_users", ({"since": since, "until": None, "bucket": bucket},)),
            ("usage", (q(since=since, group=("model",)),)),
            ("usage", (q(since=since, bucket=bucket),))]))
        out.append((f"Tool Use (everyone, {label})", [
            ("usage", (q(since=since, group=("tool",)),)),
            ("usage", (q(since=since, group=("tool",), bucket=bucket),)),
            ("sessions", (_sq(since=since), 50, None))]))
    seven = now - 7 * DAY
    out.append(("Tool Use (one user, one model, 30d)", [
        ("usage", (q(since=now - 30 * DAY, user=user, model="gpt-5.4", group=("tool",)),)),
        ("usage", (q(since=now - 30 * DAY, user=user, model="gpt-5.4", group=("tool",),
                     bucket="day"),)),
        ("sessions", (_sq(since=now - 30 * DAY, user=user, model="gpt-5.4"), 50, None))]))
    out.append(("Logs (everyone, 7d)", [("sessions", (_sq(since=seven), 50, None))]))
    out.append(("Logs (one user, state refused, 7d)",
                [("sessions", (_sq(since=seven, user=user, state="refused"), 50, None))]))
    out.append(("Logs (status 529, everyone, all time)",
                [("sessions", (_sq(status=529), 50, None))]))
    out.append(("Logs (status 418: no match, one page of the scan)",
                [("sessions", (_sq(status=418), 50, None))]))
    out.append(("Logs: a session", [("session", (sid, 100, None))]))
    out.append(("Logs: a request (capture, both bodies' first page)", [
        ("capture", (rid,)), ("body", (rid, "request", "pretty", 0, None)),
        ("body", (rid, "response", "raw", 0, None))]))
    return out


def _sq(**kw) -> dict:
    base = {"since": None, "until": None, "user": None, "provider": None, "model": None,
            "status": None, "state": None, "tool": None}
    base.update(kw)
    return base


def bench(d: str, repeat: int) -> None:
    with CaptureReader(d) as r:
        with r._h.read() as txn:
            total = txn.stat(r._h.dbs["rec"])["entries"]
    print(f"page data over {total:,} records (median of {repeat}, calls in sequence as the "
          "reader process runs them):")
    for name, calls in pages(d):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            for op, args in calls:
                data.call(op, d, *args)
            times.append(time.perf_counter() - t)
        ms = statistics.median(times) * 1000
        flag = "" if ms <= 200 else "  OVER BUDGET"
        print(f"  {name:<52} {ms:8.1f} ms{flag}")


def main() -> None:
    ap = argparse.ArgumentParser(description="dashboard page data benchmark")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--store", default=None, help="keep the generated store here")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    d = args.store or tempfile.mkdtemp()
    try:
        if not os.path.exists(os.path.join(d, "captures.lmdb", "data.mdb")):
            print(f"generating {args.records:,} records in {d} ...")
            generate(d, args.records)
        bench(d, args.repeat)
    finally:
        if args.store is None:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
