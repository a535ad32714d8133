#!/usr/bin/env python3
"""Large bodies: a 2 MB coding-agent request and a 50 MB streamed answer,
through aperture (capture off and on), through nginx and directly, in one
run on this machine.

    python tools/bench_bodies.py [--repeat 3] [--requests 200] [--streams 3] [--json]

1. Request: a Claude-Code-shaped Anthropic Messages body (long system prompt,
   18 tools, a long message history; built from tests/capture/helpers.py's
   `claude_code_bodies`, grown to `--body-mb`), POSTed to /v1/messages,
   non-streaming, sequentially on one keep-alive connection. Each request's
   time runs from its first byte written to the last byte of the answer read;
   the added time is the target's median (and p90) minus the direct one's in
   the same round. Eight bytes of the last message change with every request,
   as a session's next turn does, so that no two bodies are the same.
   "model" comes first in the body, as Claude Code sends it; with
   `--model-last` the same body with "model" as its last key is timed too
   (aperture must then hold the whole body before it can route it).

2. Response: a 50 MB OpenAI Chat Completions stream (`--stream-mb`) of
   content events of `--event-bytes`, which the upstream writes in HTTP
   chunks of `--write-bytes` as fast as the connection takes them, ending in
   a usage chunk and `data: [DONE]` (so aperture meters it), read one stream
   at a time on one keep-alive connection; MB/s at the client (10^6 bytes/s,
   from the request's first byte to the stream's last). Every target must
   deliver the same bytes (CRC-32C of the body).

The upstream and the clients are tools/streamload (Go, built on first use).
nginx is a plain reverse proxy (one worker, proxy_buffering and
proxy_request_buffering off, keep-alive upstream). The proxies' CPU per
request or stream is the utime + stime of their worker process over the run.

Rounds interleave the targets (`--repeat`); each figure is the median over
rounds, ratios and added times are taken per round.

Budget (DESIGN.md's machine, one worker): the 2 MB request adds <= 2 ms
(median); the 50 MB stream reaches >= 0.5 x nginx's MB/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS.parent))

import benchkit as bk  # noqa: E402

BUDGET_ADDED_MS = 2.0
BUDGET_VS_NGINX = 0.5
MARKER = "@@@@@@@@"  # streamload post writes the request's number here


def claude_code_body(size: int, model_last: bool = False) -> bytes:
    """A Claude-Code-shaped request of about `size` bytes: the last turn of
    a generated session, its history continued with those of further
    sessions until the body is large enough."""
    from tests.capture.helpers import claude_code_bodies

    body = orjson.loads(claude_code_bodies(turns=60, seed=1)[-1])
    messages = body["messages"]
    total = len(orjson.dumps(body))
    seed = 2
    while total < size:
        # Each history starts and ends with a user message: going on from the
        # second one keeps the roles alternating.
        for message in orjson.loads(claude_code_bodies(turns=60, seed=seed)[-1])["messages"][1:]:
            if total >= size:
                break
            messages.append(message)
            total += len(orjson.dumps(message)) + 1
        seed += 1
    messages[-1]["content"].append({"type": "text", "text": "Turn %s: go on with the task." % MARKER})
    body["stream"] = False
    if model_last:
        body["model"] = body.pop("model")
    return orjson.dumps(body)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def run_json(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0 or "result " not in out.stdout:
        raise SystemExit("%s failed: %s" % (" ".join(cmd[:2]), out.stderr[-2000:]))
    return json.loads(out.stdout.rpartition("result ")[2])


def cpu_of(pid: int | None) -> dict[str, float]:
    """CPU seconds of a proxy's worker and of its children (aperture's
    capture writer)."""
    if not pid:
        return {}
    return {"proxy": bk.cpu_seconds(pid), "writer": sum(bk.cpu_seconds(c) for c in bk.children(pid))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all targets (median)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per target and round")
    parser.add_argument("--body-mb", type=float, default=2.0, help="request body size, MB")
    parser.add_argument("--model-last", action="store_true",
                        help="also time the body with \"model\" as its last key")
    parser.add_argument("--streams", type=int, default=3, help="timed streams per target and round")
    parser.add_argument("--stream-mb", type=float, default=50.0, help="streamed answer size, MB")
    parser.add_argument("--event-bytes", type=int, default=1000, help="bytes per SSE event of the answer")
    parser.add_argument("--write-bytes", type=int, default=65536,
                        help="bytes per upstream write (one HTTP chunk each)")
    parser.add_argument("--capture", choices=["off", "on", "both"], default="both",
                        help="run aperture with capture off, on, or both")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()

    machine = bk.describe_machine()
    binary = bk.build_streamload()
    tmp = Path(tempfile.mkdtemp(prefix="aperture-bodies-"))
    size = int(args.body_mb * 1e6)
    bodies = {"model first": tmp / "body-first.json"}
    bodies["model first"].write_bytes(claude_code_body(size))
    if args.model_last:
        bodies["model last"] = tmp / "body-last.json"
        bodies["model last"].write_bytes(claude_code_body(size, model_last=True))
    body_bytes = bodies["model first"].stat().st_size

    procs = []
    t_start = time.monotonic()
    try:
        up_port = bk.free_port()
        upstream = bk.start([str(binary), "upstream", "-listen", "127.0.0.1:%d" % up_port], tmp / "upstream.log")
        procs.append(upstream)
        bk.wait_port(up_port)
        config = bk.write_load_config(tmp, up_port)
        ports = {"direct": up_port}
        gw_pids: dict[str, int] = {}
        ng_port = bk.free_port()
        nginx, gw_pids["nginx"] = bk.start_streaming_nginx(tmp, up_port, ng_port)
        procs.append(nginx)
        ports["nginx"] = ng_port
        for name, capture in (("aperture", False), ("aperture+capture", True)):
            if args.capture == "both" or args.capture == ("on" if capture else "off"):
                port = bk.free_port()
                proc = bk.start_aperture(tmp, config, port, capture, name)
                procs.append(proc)
                ports[name] = port
                gw_pids[name] = proc.pid
        targets = list(ports)

        def post(target: str, body: Path, n: int, warmup: int, seq: int) -> dict:
            pid = gw_pids.get(target)
            before = cpu_of(pid)
            res = run_json([str(binary), "post", "-url", "http://127.0.0.1:%d/v1/messages" % ports[target],
                            "-body", str(body), "-n", str(n), "-warmup", str(warmup), "-seq", str(seq),
                            "-header", "anthropic-version: 2023-06-01", "-header", "x-api-key: -"])
            after = cpu_of(pid)
            if res["statuses"] != {"200": n + warmup} or res["body_mismatch"]:
                raise SystemExit("%s: unexpected answers to the large request: %s" % (target, res))
            us = res["us"]
            return {"median_ms": statistics.median(us) / 1000, "p90_ms": percentile(us, 0.9) / 1000,
                    "min_ms": min(us) / 1000,
                    **{"%s_cpu_ms_per_request" % k: (after[k] - before[k]) * 1000 / (n + warmup)
                       for k in after}}

        def fetch(target: str, n: int, warmup: int) -> dict:
            pid = gw_pids.get(target)
            before = cpu_of(pid)
            res = run_json([str(binary), "fetch", "-url",
                            "http://127.0.0.1:%d/v1/chat/completions" % ports[target],
                            "-bytes", str(int(args.stream_mb * 1e6)), "-event-bytes", str(args.event_bytes),
                            "-write-bytes", str(args.write_bytes), "-n", str(n), "-warmup", str(warmup)])
            after = cpu_of(pid)
            rates = [b / s / 1e6 for b, s in zip(res["bytes"], res["seconds"])]
            out = {"mb_per_s": statistics.median(rates), "bytes": res["bytes"][0],
                   "crc32c": sorted(set(res["crc32c"])), "ttfb_ms": statistics.median(res["ttfb_s"]) * 1000}
            if pid:
                out["proxy_cpu_ms_per_stream"] = (after["proxy"] - before["proxy"]) * 1000 / (n + warmup)
            return out

        # Warm-up: pools, caches, lazy imports, the capture store's first writes.
        for target in targets:
            post(target, bodies["model first"], 5, 5, 90_000_000)
            fetch(target, 1, 0)
        req_runs: dict[str, dict[str, list[dict]]] = {v: {t: [] for t in targets} for v in bodies}
        stream_runs: dict[str, list[dict]] = {t: [] for t in targets}
        seq = 0
        for rnd in range(args.repeat):
            print("round %d/%d ..." % (rnd + 1, args.repeat), file=sys.stderr, flush=True)
            for variant, body in bodies.items():
                for target in targets:
                    req_runs[variant][target].append(post(target, body, args.requests, 10, seq))
                    seq += args.requests + 10
            for target in targets:
                stream_runs[target].append(fetch(target, args.streams, 1))
    finally:
        for proc in reversed(procs):
            bk.stop(proc, timeout=30)
        logs = {name: bk.log_problems(tmp / log) for name, log in (
            ("aperture", "aperture.log"), ("aperture+capture", "aperture+capture.log"),
            ("nginx", "nginx/error.log"))}
        shutil.rmtree(tmp, ignore_errors=True)

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    results: dict = {"request": {}, "stream": {}}
    print()
    print("machine: %s" % machine)
    print("run: %d round(s), medians; %.0f min" % (args.repeat, (time.monotonic() - t_start) / 60))
    print()
    print("1. A %.2f MB Claude-Code-shaped request to /v1/messages, non-streaming, %d sequential requests per "
          "target and round on one keep-alive connection; ms per request" % (body_bytes / 1e6, args.requests))
    print("%-12s %-17s %8s %8s %11s %10s %10s %11s" % ("body", "target", "median", "p90", "added med",
                                                      "added p90", "proxy CPU", "writer CPU"))
    for variant in bodies:
        rr = req_runs[variant]
        res = results["request"][variant] = {}
        for target in targets:
            runs = rr[target]
            r = res[target] = {"median_ms": med(runs, "median_ms"), "p90_ms": med(runs, "p90_ms")}
            if target != "direct":
                r["added_median_ms"] = statistics.median(
                    a["median_ms"] - d["median_ms"] for a, d in zip(runs, rr["direct"]))
                r["added_p90_ms"] = statistics.median(
                    a["p90_ms"] - d["p90_ms"] for a, d in zip(runs, rr["direct"]))
                r["proxy_cpu_ms_per_request"] = med(runs, "proxy_cpu_ms_per_request")
            if target == "aperture+capture":
                r["writer_cpu_ms_per_request"] = med(runs, "writer_cpu_ms_per_request")
            print("%-12s %-17s %8.2f %8.2f %11s %10s %10s %11s" % (
                variant, target, r["median_ms"], r["p90_ms"],
                "%+.2f" % r["added_median_ms"] if "added_median_ms" in r else "-",
                "%+.2f" % r["added_p90_ms"] if "added_p90_ms" in r else "-",
                "%.2f ms" % r["proxy_cpu_ms_per_request"] if "proxy_cpu_ms_per_request" in r else "-",
                "%.2f ms" % r["writer_cpu_ms_per_request"] if "writer_cpu_ms_per_request" in r else "-"))
    print()
    print("2. A %.0f MB streamed answer (OpenAI chunks of %d bytes, upstream writes of %d bytes), one stream at a "
          "time, %d per target and round" % (args.stream_mb, args.event_bytes, args.write_bytes, args.streams))
    print("%-17s %9s %9s %9s %12s %8s" % ("target", "MB/s", "x nginx", "x direct", "proxy CPU", "ttfb"))
    crcs = set()
    for target in targets:
        runs = stream_runs[target]
        r = results["stream"][target] = {"mb_per_s": med(runs, "mb_per_s"), "ttfb_ms": med(runs, "ttfb_ms")}
        for ref in ("nginx", "direct"):
            r["vs_" + ref] = statistics.median(a["mb_per_s"] / b["mb_per_s"]
                                               for a, b in zip(runs, stream_runs[ref]))
        if "proxy_cpu_ms_per_stream" in runs[0]:
            r["proxy_cpu_ms_per_stream"] = med(runs, "proxy_cpu_ms_per_stream")
        for run in runs:
            crcs.update(run["crc32c"])
        print("%-17s %9.0f %9.2f %9.2f %12s %6.1f ms" % (
            target, r["mb_per_s"], r["vs_nginx"], r["vs_direct"],
            "%.0f ms" % r["proxy_cpu_ms_per_stream"] if "proxy_cpu_ms_per_stream" in r else "-", r["ttfb_ms"]))
    if len(crcs) != 1:
        print("!! the streamed bytes differed between targets or streams (CRC-32C %s)" % sorted(crcs))
    else:
        print("every stream arrived byte for byte the same (%d bytes, CRC-32C %s)"
              % (stream_runs["direct"][0]["bytes"], crcs.pop()))
    for name, lines in logs.items():
        for line in lines:
            print("!! %s logged: %s" % (name, line))
    print()
    summary: dict = {}
    print("Budget, one worker:")
    for target in ("aperture", "aperture+capture"):
        if target not in targets:
            continue
        added = results["request"]["model first"][target]["added_median_ms"]
        ratio = results["stream"][target]["vs_nginx"]
        summary[target] = {"added_ms": added, "added_met": added <= BUDGET_ADDED_MS,
                           "stream_vs_nginx": ratio, "stream_met": ratio >= BUDGET_VS_NGINX}
        print("  %-17s %.2f MB request adds %+.2f ms, median (budget <= %g ms): %s" % (
            target, body_bytes / 1e6, added, BUDGET_ADDED_MS, "met" if added <= BUDGET_ADDED_MS else "NOT met"))
        print("  %-17s %.0f MB stream at %.2f x nginx's MB/s (budget >= %g): %s" % (
            "", args.stream_mb, ratio, BUDGET_VS_NGINX, "met" if ratio >= BUDGET_VS_NGINX else "NOT met"))
    if args.json:
        print(json.dumps(bk.json_safe({
            "machine": machine, "params": vars(args), "body_bytes": body_bytes, "results": results,
            "rounds": {"request": req_runs, "stream": stream_runs}, "summary": summary, "logs": logs}), indent=2))


if __name__ == "__main__":
    main()
