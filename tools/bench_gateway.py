#!/usr/bin/env python3
"""Gateway benchmark: the provider simulator served directly, through aperture,
and through nginx as a plain reverse proxy, in one run on this machine.

    python tools/bench_gateway.py [--duration 6] [--repeat 3] [--connections 32] [--capture both]
                                  [--workers 2]

Needs `wrk` and `nginx` (Debian: apt-get install wrk nginx-light). Every load
goes to 127.0.0.1 only. Prints requests/s and p50/p99 latency for each target,
the ratios that the performance budget is written in (DESIGN.md), and the
memory each idle keep-alive connection costs aperture.

Budget (2 cores, one worker each, small non-streaming requests):
  32 connections: aperture >= 0.5 x nginx requests/s
  1 connection:   aperture p50 - direct p50 <= 150 us
  idle keep-alive connection: <= 16 KiB each
  capture on: >= 0.9 x capture off requests/s
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import free_port, rss_kib, start, stop, wait_port  # noqa: F401 (also used as bg.*)

BODY = json.dumps({
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Say hello in five words."}],
})

LUA = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["x-api-key"] = "-"
""" % json.dumps(BODY)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream sim {{ server 127.0.0.1:{sim_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def run_wrk(url: str, connections: int, duration: float, script: Path) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s)\s*$" % pct, out, re.M)
        lat[pct] = float(m.group(1)) * _UNITS[m.group(2)] * 1e6
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_us": lat["50"], "p99_us": lat["99"],
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_err.group(1) if sock_err else ""}


def median_run(runs: list[dict]) -> dict:
    """The run with the median requests/s (its latencies come with it)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    med = dict(ordered[len(ordered) // 2])
    med["non2xx"] = sum(r["non2xx"] for r in runs)
    return med


def write_configs(tmp: Path, sim_port: int, nginx_port: int) -> Path:
    """aperture's config (the simulator as its one provider, everyone
    allowed) and nginx's, in `tmp`. Returns the path of aperture's."""
    config = tmp / "config.json"
    config.write_text(json.dumps({"providers": {"sim": {
        "baseurl": "http://127.0.0.1:%d" % sim_port, "apikey": "sim-key", "authorization": "x-api-key",
        "models": ["claude-sonnet-4-6"], "compatibility": {"anthropic_messages": True}}},
        "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [{"role": "user"}, {"models": "**"}]}}]}))
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, sim_port=sim_port, port=nginx_port))
    return config


def idle_connection_cost(port: int, pid: int, count: int = 1000) -> float:
    """KiB of gateway memory per idle keep-alive connection (after one request each)."""
    request = ("GET /healthz HTTP/1.1\r\nHost: ai\r\n\r\n").encode()
    warm = []
    for _ in range(50):  # warm up allocator pools before the baseline
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        s.recv(1024)
        warm.append(s)
    for s in warm:
        s.close()
    time.sleep(0.5)
    before = rss_kib(pid)
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        s.recv(1024)
        socks.append(s)
    time.sleep(0.5)
    after = rss_kib(pid)
    for s in socks:
        s.close()
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all targets (median)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--capture", choices=["off", "on", "both"], default="both",
                        help="run aperture with capture off, on, or both (for the capture cost)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--workers", type=int, default=0,
                        help="also run aperture (capture off) with this many workers, "
                             "reported against one worker at the main concurrency")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path("/usr/sbin/" + tool).exists():
            raise SystemExit("%s not found: apt-get install wrk nginx-light" % tool)
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"

    tmp = Path(tempfile.mkdtemp(prefix="aperture-bench-"))
    script = tmp / "post.lua"
    script.write_text(LUA)
    aperture = [sys.executable, "-m", "aperture.cli"]
    sim_port, ap_port, ap2_port, ng_port = free_port(), free_port(), free_port(), free_port()
    config = write_configs(tmp, sim_port, ng_port)

    procs = []
    try:
        procs.append(start(aperture + ["simulate", "--listen", "127.0.0.1:%d" % sim_port], tmp / "sim.log"))
        wait_port(sim_port)
        targets = {"direct": "http://127.0.0.1:%d/v1/messages" % sim_port}
        serve = aperture + ["serve", "--config", str(config), "--identity", "dev:bench@example.com",
                            "--log-level", "warning"]
        ap_off = ap_on = None
        if args.capture in ("off", "both"):
            ap_off = start(serve + ["--listen", "127.0.0.1:%d" % ap_port, "--no-capture"], tmp / "ap.log")
            procs.append(ap_off)
            wait_port(ap_port)
            targets["aperture"] = "http://127.0.0.1:%d/v1/messages" % ap_port
        if args.capture in ("on", "both"):
            ap_on = start(serve + ["--listen", "127.0.0.1:%d" % ap2_port, "--data-dir", str(tmp / "data")],
                          tmp / "ap2.log")
            procs.append(ap_on)
            wait_port(ap2_port)
            targets["aperture+capture"] = "http://127.0.0.1:%d/v1/messages" % ap2_port
        if args.workers > 1:
            apw_port = free_port()
            procs.append(start(serve + ["--listen", "127.0.0.1:%d" % apw_port, "--no-capture",
                                        "--workers", str(args.workers)], tmp / "apw.log"))
            wait_port(apw_port)
            targets["aperture x%d" % args.workers] = "http://127.0.0.1:%d/v1/messages" % apw_port
        procs.append(start([nginx_bin, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], tmp / "nginx.log"))
        wait_port(ng_port)
        targets["nginx"] = "http://127.0.0.1:%d/v1/messages" % ng_port

        for url in targets.values():
            run_wrk(url, 8, 2, script)  # warm-up: pools, caches
        # Rounds interleave the targets, so that a slow moment of this shared
        # machine does not land on one target only; each figure is the median.
        runs: dict[str, dict[str, list[dict]]] = {name: {"c%d" % args.connections: [], "c1": []}
                                                  for name in targets}
        for _ in range(args.repeat):
            for name, url in targets.items():
                runs[name]["c%d" % args.connections].append(
                    run_wrk(url, args.connections, args.duration, script))
                runs[name]["c1"].append(run_wrk(url, 1, args.duration, script))
        results = {name: {key: median_run(rs) for key, rs in by_conc.items()}
                   for name, by_conc in runs.items()}

        c = "c%d" % args.connections
        print("\n%-18s %12s %10s %10s %10s %10s" % ("target", "req/s@%d" % args.connections,
                                                    "p50@%d" % args.connections, "p99@%d" % args.connections,
                                                    "p50@1", "p99@1"))
        for name, r in results.items():
            print("%-18s %12.0f %8.0fus %8.0fus %8.0fus %8.0fus" % (
                name, r[c]["rps"], r[c]["p50_us"], r[c]["p99_us"], r["c1"]["p50_us"], r["c1"]["p99_us"]))
            bad = r[c]["non2xx"] + r["c1"]["non2xx"]
            if bad or r[c]["socket_errors"]:
                print("  !! %s: %d non-2xx responses, socket errors: %s" % (name, bad, r[c]["socket_errors"]))
        print()
        summary = {}
        if "aperture" in results or "aperture+capture" in results:
            ap = results.get("aperture") or results["aperture+capture"]
            summary["throughput_vs_nginx"] = ap[c]["rps"] / results["nginx"][c]["rps"]
            summary["throughput_vs_direct"] = ap[c]["rps"] / results["direct"][c]["rps"]
            summary["added_p50_us_1conn"] = ap["c1"]["p50_us"] - results["direct"]["c1"]["p50_us"]
            summary["nginx_added_p50_us_1conn"] = results["nginx"]["c1"]["p50_us"] - results["direct"]["c1"]["p50_us"]
            print("aperture / nginx requests/s at %d connections: %.2f  (budget >= 0.50)"
                  % (args.connections, summary["throughput_vs_nginx"]))
            print("aperture / direct requests/s at %d connections: %.2f" % (args.connections,
                                                                            summary["throughput_vs_direct"]))
            print("added p50 latency at 1 connection: aperture %+.0f us (budget <= 150), nginx %+.0f us"
                  % (summary["added_p50_us_1conn"], summary["nginx_added_p50_us_1conn"]))
        if "aperture" in results and "aperture+capture" in results:
            # Paired per round (the two runs of a round are back to back), so
            # that a slow moment of the machine weighs on both sides of a ratio.
            paired = sorted(on["rps"] / off["rps"] for on, off in zip(
                runs["aperture+capture"][c], runs["aperture"][c]))
            summary["capture_on_vs_off"] = statistics.median(paired)
            summary["capture_on_vs_off_rounds"] = paired
            print("capture on / off requests/s: %.2f, median of %d rounds (%.2f to %.2f)  "
                  "(budget >= 0.90)" % (summary["capture_on_vs_off"], len(paired),
                                        paired[0], paired[-1]))
        if args.workers > 1 and "aperture" in results:
            paired = sorted(many["rps"] / one["rps"] for many, one in zip(
                runs["aperture x%d" % args.workers][c], runs["aperture"][c]))
            summary["workers_vs_one"] = statistics.median(paired)
            print("--workers %d / --workers 1 requests/s at %d connections: %.2f, median of %d "
                  "rounds (%.2f to %.2f)" % (args.workers, args.connections, summary["workers_vs_one"],
                                             len(paired), paired[0], paired[-1]))
        if "aperture" in results and "aperture+capture" in results:
            summary["capture_on_vs_off_p99_1conn"] = (results["aperture+capture"]["c1"]["p99_us"]
                                                      / results["aperture"]["c1"]["p99_us"])
            print("capture on / off p99 at 1 connection: %.2f  (budget <= 2)"
                  % summary["capture_on_vs_off_p99_1conn"])
        gw = ap_off or ap_on
        gw_port = ap_port if ap_off else ap2_port
        per_conn = idle_connection_cost(gw_port, gw.pid)
        summary["idle_kib_per_connection"] = per_conn
        print("memory per idle keep-alive connection: %.1f KiB  (budget <= 16)" % per_conn)
        if args.json:
            rounds = {name: [r["rps"] for r in by_conc[c]] for name, by_conc in runs.items()}
            print(json.dumps({"results": results, "summary": summary, "rounds_rps": rounds},
                             indent=2))
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
