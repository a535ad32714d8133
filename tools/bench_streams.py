#!/usr/bin/env python3
"""Streaming load: many concurrent SSE streams at LLM token rates, relayed by
aperture and by nginx from the same upstream, and read from the upstream
directly, in one run on this machine.

    python tools/bench_streams.py [--streams 250,500,1000,2000] [--duration 30] [--repeat 3]
                                  [--capture both] [--json]

A coding agent's gateway mostly holds streams open: each answer is a stream
of small events at tens of events per second, for tens of seconds. This tool
opens N streams (each on its own connection, `--ramp-rate` new ones per
second), waits `--settle` seconds, then measures a window of `--duration`
seconds in which every stream receives `--rate` events/s of about
`--event-bytes` bytes.

The upstream and the client are tools/streamload (Go, built on first use):
an OpenAI Chat Completions provider whose content events carry the
CLOCK_MONOTONIC time at which they were written, and a client that reads every
stream from one epoll loop and subtracts that time from its own read time.
aperture routes the requests by model to a provider with `openai_chat`
compatibility, so it meters real chunk events ending in a usage chunk and
`data: [DONE]`.

Targets, each started fresh for each run, one worker each: the upstream read
directly; nginx (proxy_buffering off, keep-alive upstream); aperture with
`--no-capture` and with capture on. Per stream count and target:

- events/s relayed in the window, against those offered;
- per-event delay (client read time minus upstream send time), p50 and p99,
  and the added delay: the same figure minus the direct one of the same round;
- CPU of the proxy's worker per 1,000 events relayed (utime + stime of
  /proc/<pid>/stat over the window), and per core; with capture on, the CPU
  of the capture writer process as well;
- RSS per open stream: (RSS with the streams open - RSS idle) / streams open,
  at the start and at the end of the window (idle: after a warm-up of a few
  short streams);
- the CPU the upstream and the client used, and the whole machine's, so that
  one can see whether they, rather than the proxy, were the limit; the
  upstream's lateness against its schedule (p99).

Rounds interleave the stream counts and targets (`--repeat`); each figure is
the median over rounds, the added delays are taken per round against the
direct run just before.

Budget (DESIGN.md's machine, one worker): 1,000 concurrent streams with added
per-event delay p99 <= 10 ms and RSS <= 64 KiB per open stream; CPU per event
within 3 x nginx's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

BUDGET_STREAMS = 1000
BUDGET_ADDED_P99_MS = 10.0
BUDGET_RSS_KIB = 64.0
BUDGET_CPU_VS_NGINX = 3.0
TARGETS = ("direct", "nginx", "aperture", "aperture+capture")


def upstream_stats(port: int, reset: bool = False) -> dict:
    url = "http://127.0.0.1:%d/stats%s" % (port, "?reset=1" if reset else "")
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def client_cmd(binary: Path, url: str, n: int, args, *, duration: float, settle: float,
               tail: float = 1.0, drain: float | None = None) -> list[str]:
    return [str(binary), "streams", "-url", url, "-n", str(n), "-rate", str(args.rate),
            "-event-bytes", str(args.event_bytes), "-ramp-rate", str(args.ramp_rate),
            "-settle", "%gs" % settle, "-duration", "%gs" % duration, "-tail", "%gs" % tail,
            "-drain", "%gs" % (args.drain if drain is None else drain)]


def warm_up(binary: Path, url: str, args) -> None:
    """A few short streams first: connection pools, caches, lazy imports."""
    out = subprocess.run(client_cmd(binary, url, 20, args, duration=1, settle=0, tail=0.2, drain=10),
                         capture_output=True, text=True)
    result = json.loads(out.stdout.rpartition("result ")[2] or "{}")
    if result.get("complete") != 20:
        raise SystemExit("warm-up streams through %s failed: %s %s" % (url, result, out.stderr[-500:]))


def one_run(ctx: dict, target: str, n: int, args) -> dict:
    """Start `target` fresh, warm it up, run n streams, stop it."""
    tmp: Path = ctx["tmp"]
    up_port: int = ctx["upstream_port"]
    proc = None
    gw_pid = None
    if target == "direct":
        url = "http://127.0.0.1:%d/v1/chat/completions" % up_port
    else:
        port = bk.free_port()
        url = "http://127.0.0.1:%d/v1/chat/completions" % port
        if target == "nginx":
            proc, gw_pid = bk.start_streaming_nginx(tmp, up_port, port)
        else:
            proc = bk.start_aperture(tmp, ctx["config"], port, target == "aperture+capture", "aperture")
            gw_pid = proc.pid
    try:
        warm_up(ctx["binary"], url, args)
        time.sleep(0.5)
        rss_idle = bk.rss_kib(gw_pid) if gw_pid else None
        client = subprocess.Popen(client_cmd(ctx["binary"], url, n, args, duration=args.duration,
                                             settle=args.settle),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pids = {"upstream": ctx["upstream_pid"], "client": client.pid}
        if gw_pid:
            pids["gateway"] = gw_pid
            for i, child in enumerate(bk.children(gw_pid)):
                pids["writer%d" % i] = child  # aperture's capture writer
        meter = bk.CpuMeter(pids)
        run: dict = {}
        result = None
        assert client.stdout is not None
        for line in client.stdout:
            if line.startswith("window-start"):
                meter.mark()
                upstream_stats(up_port, reset=True)
                run["open_start"] = int(line.split("open=")[1])
                if gw_pid:
                    run["rss_start_kib"] = bk.rss_kib(gw_pid)
            elif line.startswith("window-end"):
                elapsed, cpu = meter.read()
                run["open_end"] = int(line.split("open=")[1])
                if gw_pid:
                    run["rss_end_kib"] = bk.rss_kib(gw_pid)
                run["upstream"] = upstream_stats(up_port)
                run["elapsed_s"] = elapsed
                run["cpu_s"] = cpu
            elif line.startswith("result "):
                result = json.loads(line[len("result "):])
        stderr = client.stderr.read() if client.stderr else ""
        client.wait()
        if result is None or "cpu_s" not in run:
            raise SystemExit("the load client failed against %s: %s" % (target, stderr[-2000:]))
    finally:
        if proc is not None:
            bk.stop(proc, timeout=60)
    run["client"] = result
    out = summarize_run(run, rss_idle)
    log = tmp / ("nginx/error.log" if target == "nginx" else "aperture.log")
    out["log"] = bk.log_problems(log) if proc is not None else []
    for name in ("nginx/error.log", "aperture.log"):
        (tmp / name).unlink(missing_ok=True)
    for line in out["log"]:
        print("   %s log: %s" % (target, line), file=sys.stderr, flush=True)
    return out


def summarize_run(run: dict, rss_idle: int | None) -> dict:
    c = run["client"]
    cpu = run["cpu_s"]
    elapsed = run["elapsed_s"]
    events = c["window_events"]
    out = {
        "events_per_s": c["events_per_s"],
        "offered_per_s": c["offered_events_per_s"],
        "delivered": c["events_per_s"] / c["offered_events_per_s"] if c["offered_events_per_s"] else 0.0,
        "p50_ms": c["p50_us"] / 1000, "p90_ms": c["p90_us"] / 1000, "p99_ms": c["p99_us"] / 1000,
        "p999_ms": c["p999_us"] / 1000, "max_ms": c.get("max_us", 0) / 1000,
        "event_bytes": c["event_bytes"],
        "streams": c["streams"], "complete": c["complete"], "short": c["short"], "failed": c["failed"],
        "errors": c["errors"],
        "open_start": run["open_start"], "open_end": run["open_end"],
        "upstream_core": cpu["upstream"] / elapsed, "client_core": cpu["client"] / elapsed,
        "machine_cores": cpu["machine"] / elapsed,
        # The machine's CPU not charged to these processes: other work on the
        # machine, and kernel work (interrupts) done outside any of them.
        "other_cores": (cpu["machine"] - sum(v for k, v in cpu.items()
                                             if k not in ("machine", "interrupts"))) / elapsed,
        "upstream_lag_p99_ms": run["upstream"]["lag_p99_us"] / 1000,
        "upstream_events_per_s": run["upstream"]["paced_events"] / elapsed,
    }
    if "gateway" in cpu:
        out["gw_core"] = cpu["gateway"] / elapsed
        out["gw_cpu_ms_per_1k"] = cpu["gateway"] / events * 1e6 if events else math.nan
        writer = sum(v for k, v in cpu.items() if k.startswith("writer"))
        out["writer_core"] = writer / elapsed
        out["rss_idle_kib"] = rss_idle
        out["rss_start_kib"] = run["rss_start_kib"]
        out["rss_end_kib"] = run["rss_end_kib"]
        out["kib_per_stream_start"] = ((run["rss_start_kib"] - rss_idle) / run["open_start"]
                                       if run["open_start"] else math.nan)
        out["kib_per_stream_end"] = ((run["rss_end_kib"] - rss_idle) / run["open_end"]
                                     if run["open_end"] else math.nan)
    return out


def median_of(runs: list[dict]) -> dict:
    """Each numeric figure's median over the rounds; counts summed."""
    med: dict = {}
    for key, value in runs[0].items():
        if key in ("complete", "short", "failed", "streams"):
            med[key] = sum(r[key] for r in runs)
        elif key == "log":
            med[key] = [line for r in runs for line in r["log"]]
        elif key == "errors":
            errors: dict = {}
            for r in runs:
                for k, v in r["errors"].items():
                    errors[k] = errors.get(k, 0) + v
            med[key] = errors
        elif isinstance(value, (int, float)) and value is not None:
            med[key] = statistics.median(r[key] for r in runs)
        else:
            med[key] = value
    return med


def fmt_ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="250,500,1000,2000", help="stream counts, comma-separated")
    parser.add_argument("--duration", type=float, default=30, help="seconds of the measuring window")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all counts and targets (median)")
    parser.add_argument("--rate", type=float, default=50, help="events per second per stream")
    parser.add_argument("--event-bytes", type=int, default=120,
                        help="bytes per event, at least what an OpenAI chunk with the timestamp takes")
    parser.add_argument("--ramp-rate", type=float, default=250, help="new streams per second while ramping up")
    parser.add_argument("--settle", type=float, default=3, help="seconds between the ramp and the window")
    parser.add_argument("--drain", type=float, default=15,
                        help="seconds after the window for streams to finish before they are cut")
    parser.add_argument("--capture", choices=["off", "on", "both"], default="both",
                        help="run aperture with capture off, on, or both")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    counts = [int(x) for x in args.streams.split(",") if x.strip()]
    targets = ["direct"]
    if not args.no_nginx:
        targets.append("nginx")
    if args.capture in ("off", "both"):
        targets.append("aperture")
    if args.capture in ("on", "both"):
        targets.append("aperture+capture")

    machine = bk.describe_machine()
    binary = bk.build_streamload()
    tmp = Path(tempfile.mkdtemp(prefix="aperture-streams-"))
    up_port = bk.free_port()
    upstream = bk.start([str(binary), "upstream", "-listen", "127.0.0.1:%d" % up_port], tmp / "upstream.log")
    bk.wait_port(up_port)
    ctx = {"tmp": tmp, "binary": binary, "upstream_port": up_port, "upstream_pid": upstream.pid,
           "config": bk.write_load_config(tmp, up_port)}
    runs: dict[int, dict[str, list[dict]]] = {n: {t: [] for t in targets} for n in counts}
    t_start = time.monotonic()
    try:
        for rnd in range(args.repeat):
            for n in counts:
                for target in targets:
                    print("round %d/%d: %d streams, %s ..." % (rnd + 1, args.repeat, n, target),
                          file=sys.stderr, flush=True)
                    runs[n][target].append(one_run(ctx, target, n, args))
                    time.sleep(1)
    finally:
        bk.stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    results = {n: {t: median_of(rs) for t, rs in by_t.items()} for n, by_t in runs.items()}
    # Added delay: per round, against the direct run of the same round and count.
    for n, by_t in runs.items():
        for t, rs in by_t.items():
            if t == "direct":
                continue
            for q in ("p50", "p99"):
                paired = [r["%s_ms" % q] - d["%s_ms" % q] for r, d in zip(rs, by_t["direct"])]
                results[n][t]["added_%s_ms" % q] = statistics.median(paired)
            if t != "nginx" and "nginx" in by_t:
                ratios = [r["gw_cpu_ms_per_1k"] / g["gw_cpu_ms_per_1k"] for r, g in zip(rs, by_t["nginx"])]
                results[n][t]["cpu_vs_nginx"] = statistics.median(ratios)

    event_bytes = next((r["event_bytes"] for by_t in results.values() for r in by_t.values()
                        if r["event_bytes"]), args.event_bytes)
    print()
    print("machine: %s" % machine)
    print("run: %s streams x %g events/s of %d bytes (OpenAI chunks, chunked HTTP/1.1), window %gs after a "
          "ramp of %g streams/s and %gs to settle; %d round(s), medians; %.0f min"
          % (args.streams, args.rate, event_bytes, args.duration, args.ramp_rate, args.settle,
             args.repeat, (time.monotonic() - t_start) / 60))
    print()
    print("Per-event delay (client read - upstream send), ms; added = minus direct, same round")
    print("%-7s %-17s %10s %9s %8s %8s %9s %9s %8s  %s" % (
        "streams", "target", "events/s", "delivered", "p50", "p99", "added p50", "added p99", "p99.9",
        "streams done"))
    for n in counts:
        for t in targets:
            r = results[n][t]
            print("%-7d %-17s %10.0f %8.1f%% %8s %8s %9s %9s %8s  %d/%d" % (
                n, t, r["events_per_s"], 100 * r["delivered"], fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]),
                fmt_ms(r.get("added_p50_ms")), fmt_ms(r.get("added_p99_ms")), fmt_ms(r["p999_ms"]),
                r["complete"], r["streams"]))
    print()
    print("Cost in the window: proxy worker CPU per 1,000 events and in cores; RSS per open stream at the "
          "start / end of the window; the CPU of the load generator (upstream, client), of the rest (other "
          "processes, and kernel work charged to none, such as loopback TCP delivered in interrupts) and of "
          "the whole machine, in cores (of %d); the upstream's lateness against its schedule, p99"
          % (os.cpu_count() or 0))
    print("%-7s %-17s %10s %7s %6s %9s %15s %6s %8s %6s %6s %7s %9s" % (
        "streams", "target", "CPU/1k ev", "x nginx", "proxy", "RSS idle", "KiB/stream", "writer",
        "upstream", "client", "other", "machine", "up. lag99"))
    for n in counts:
        for t in targets:
            r = results[n][t]
            if "gw_core" in r:
                per = "%.1f / %.1f" % (r["kib_per_stream_start"], r["kib_per_stream_end"])
                cols = ("%.1f ms" % r["gw_cpu_ms_per_1k"], fmt_ms(r.get("cpu_vs_nginx")),
                        "%.2f" % r["gw_core"], "%.0f MiB" % (r["rss_idle_kib"] / 1024), per,
                        "%.2f" % r["writer_core"] if t == "aperture+capture" else "-")
            else:
                cols = ("-", "-", "-", "-", "-", "-")
            print("%-7d %-17s %10s %7s %6s %9s %15s %6s %8.2f %6.2f %6.2f %7.2f %6.1f ms" % (
                (n, t) + cols + (r["upstream_core"], r["client_core"], r["other_cores"],
                                 r["machine_cores"], r["upstream_lag_p99_ms"])))
    print()
    for n in counts:
        for t in targets:
            r = results[n][t]
            if r["complete"] != r["streams"]:
                print("!! %d streams, %s: %d of %d streams did not complete (%d short, %d failed): %s" % (
                    n, t, r["streams"] - r["complete"], r["streams"], r["short"], r["failed"],
                    r["errors"]))
            if r["delivered"] < 0.98:
                print("!! %d streams, %s: only %.1f%% of the offered events arrived in the window "
                      "(the relay fell behind)" % (n, t, 100 * r["delivered"]))
            for line in r["log"][:5]:
                print("!! %d streams, %s logged: %s" % (n, t, line))
    summary = budget_summary(results, counts, targets)
    if args.json:
        print(json.dumps(bk.json_safe({"machine": machine, "params": vars(args), "results": results,
                          "rounds": runs, "summary": summary}), indent=2))


def budget_summary(results: dict, counts: list[int], targets: list[str]) -> dict:
    n = BUDGET_STREAMS if BUDGET_STREAMS in results else min(counts, key=lambda c: abs(c - BUDGET_STREAMS))
    summary: dict = {"streams": n}
    print("Budget at %d streams, one worker:" % n)
    for t in ("aperture", "aperture+capture"):
        if t not in targets:
            continue
        r = results[n][t]
        s = summary[t] = {
            "added_p99_ms": r["added_p99_ms"], "added_p99_met": r["added_p99_ms"] <= BUDGET_ADDED_P99_MS,
            "kib_per_stream_start": r["kib_per_stream_start"], "kib_per_stream_end": r["kib_per_stream_end"],
            "rss_met": r["kib_per_stream_end"] <= BUDGET_RSS_KIB,
            "cpu_vs_nginx": r.get("cpu_vs_nginx"),
            "cpu_met": r.get("cpu_vs_nginx") is not None and r["cpu_vs_nginx"] <= BUDGET_CPU_VS_NGINX,
        }

        def verdict(ok: bool) -> str:
            return "met" if ok else "NOT met"

        print("  %-17s added p99 %s ms (budget <= %g): %s" % (
            t, fmt_ms(s["added_p99_ms"]), BUDGET_ADDED_P99_MS, verdict(s["added_p99_met"])))
        print("  %-17s RSS per open stream %.1f KiB at the window's start, %.1f KiB at its end "
              "(budget <= %g): %s" % ("", s["kib_per_stream_start"], s["kib_per_stream_end"], BUDGET_RSS_KIB,
                                      verdict(s["rss_met"])))
        if s["cpu_vs_nginx"] is not None:
            print("  %-17s CPU per event %.2f x nginx's (budget <= %g): %s" % (
                "", s["cpu_vs_nginx"], BUDGET_CPU_VS_NGINX, verdict(s["cpu_met"])))
        if r["delivered"] < 0.98:
            print("  %-17s relayed only %.1f%% of the offered events: the figures are those of a saturated "
                  "worker" % ("", 100 * r["delivered"]))
    return summary


if __name__ == "__main__":
    main()
