#!/usr/bin/env python3
"""Where one proxied request's CPU goes in aperture, step by step.

    python tools/profile_gateway.py [--duration 15] [--connections 32] [--capture [process|thread]]

Runs the provider simulator and one aperture worker (capture off unless
--capture; its writer in a drain process unless --capture thread), drives small non-streaming Anthropic requests at it with wrk, and
meanwhile samples the worker with py-spy (`pip install -e '.[bench]'`; py-spy
needs ptrace rights, as root or with CAP_SYS_PTRACE). The worker's CPU time
over the run divided by the requests served is its CPU per request; each
step's share of the samples splits that figure.

A sample is charged to the innermost frame of the stack that belongs to
aperture or to the HTTP libraries, and that frame's (file, function) names
the step (STEPS below). Samples with no such frame are the event loop itself:
uvloop's C code, the system calls it makes, callbacks between Python frames.
With --native, samples inside C extensions (uvloop, httptools, the Rust
meters) are split further by the native frame's library.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway as bg  # noqa: E402

# (file part, function name or "*") -> step, first match wins, tried from the
# innermost frame outwards.
STEPS = [
    (("h11/", "*"), "upstream: h11 (write request, parse response)"),
    (("upstream/connection", "send"), "upstream: socket writes"),
    (("upstream/connection", "data_received"), "upstream: reads"),
    (("upstream/connection", "*"), "upstream: connection"),
    (("upstream/pool", "*"), "upstream: pool"),
    (("upstream/auth", "*"), "exchange: credentials"),
    (("ingress/protocol", "data_received"), "ingress: parse request (httptools)"),
    (("ingress/protocol", "on_"), "ingress: parse request (httptools)"),
    (("ingress/protocol", "write_raw"), "ingress: socket writes"),
    (("ingress/protocol", "*"), "ingress: connection and response framing"),
    (("flow.py", "*"), "flow control (read buffers, drain)"),
    (("exchange.py", "_submit"), "record: build and hand to the sink"),
    (("capture/", "*"), "record: build and hand to the sink"),
    (("headers.py", "for_record"), "record: build and hand to the sink"),
    (("sessions.py", "*"), "record: build and hand to the sink"),
    (("ids.py", "*"), "exchange: ids and clocks"),
    (("headers.py", "*"), "exchange: headers up and down"),
    (("formats/", "*"), "exchange: route"),
    (("routing.py", "*"), "exchange: route"),
    (("policy.py", "*"), "exchange: grants"),
    (("identity/", "*"), "exchange: identity"),
    (("gateway.py", "*"), "gateway: dispatch"),
    (("exchange.py", "_read_until_model"), "exchange: body and model scan"),
    (("exchange.py", "_relay"), "exchange: relay and meter"),
    (("exchange.py", "_read_usage"), "exchange: relay and meter"),
    (("exchange.py", "_send_request"), "exchange: send request"),
    (("exchange.py", "*"), "exchange: the rest of the journey"),
    (("asyncio/", "*"), "event loop: asyncio (tasks, futures)"),
]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def step_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        m = _FRAME.match(frame)
        if not m:
            continue
        func, file = m.group("func"), m.group("file")
        for (part, name), step in STEPS:
            if part in file and (name == "*" or func == name or (name.endswith("_") and
                                                                 func.startswith(name))):
                return step
    leaf = stack[-1] if stack else ""
    m = _FRAME.match(leaf)
    if m and m.group("file").endswith(".so"):
        return "native: " + Path(m.group("file")).name.split(".")[0]
    return "event loop: uvloop and system calls"


def cpu_seconds(pid: int) -> float:
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 10 ms


def drain_pids(pid: int) -> list[int]:
    """The worker's capture drain processes (its children running aperture.capture.drain)."""
    found = []
    for task in Path("/proc/%d/task" % pid).iterdir():
        for child in (task / "children").read_text().split():
            if b"aperture.capture.drain" in Path("/proc/%s/cmdline" % child).read_bytes():
                found.append(int(child))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--capture", nargs="?", const="process", choices=["process", "thread"],
                        help="capture on, its writer in a drain process (default) or a thread")
    parser.add_argument("--native", action="store_true", help="sample C extensions too")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--stacks", type=int, default=0, help="print the N most sampled stacks of each step")
    parser.add_argument("--lines", type=int, default=0,
                        help="print the N most sampled lines of aperture's code (innermost frame)")
    parser.add_argument("--functions", type=int, default=0,
                        help="print the N functions of aperture with the most samples in or under "
                             "them (inclusive), with their own (self) share")
    args = parser.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        raise SystemExit("py-spy not found: pip install -e '.[bench]'")

    tmp = Path(tempfile.mkdtemp(prefix="aperture-profile-"))
    script = tmp / "post.lua"
    script.write_text(bg.LUA)
    aperture = [sys.executable, "-m", "aperture.cli"]
    sim_port, ap_port, ng_port = bg.free_port(), bg.free_port(), bg.free_port()
    config = bg.write_configs(tmp, sim_port, ng_port)
    procs = []
    try:
        procs.append(bg.start(aperture + ["simulate", "--listen", "127.0.0.1:%d" % sim_port],
                              tmp / "sim.log"))
        bg.wait_port(sim_port)
        serve = aperture + ["serve", "--config", str(config), "--identity", "dev:bench@example.com",
                            "--log-level", "warning", "--listen", "127.0.0.1:%d" % ap_port]
        serve += ["--data-dir", str(tmp / "data"), "--capture-writer", args.capture] if args.capture \
            else ["--no-capture"]
        gw = bg.start(serve, tmp / "ap.log")
        procs.append(gw)
        bg.wait_port(ap_port)
        url = "http://127.0.0.1:%d/v1/messages" % ap_port
        bg.run_wrk(url, 8, 2, script)  # warm-up

        raw = tmp / "profile.txt"
        spy = subprocess.Popen([pyspy, "record", "-p", str(gw.pid), "-f", "raw", "-o", str(raw),
                                "-r", str(args.rate), "-d", str(args.duration + 1)]
                               # Native stacks need the process paused while sampled.
                               + (["--native"] if args.native else ["--nonblocking"]),
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "py-spy.log", "wb"))
        time.sleep(0.5)
        drains = drain_pids(gw.pid)
        cpu0, drain0 = cpu_seconds(gw.pid), sum(map(cpu_seconds, drains))
        result = bg.run_wrk(url, args.connections, args.duration, script)
        cpu, drain_cpu = cpu_seconds(gw.pid) - cpu0, sum(map(cpu_seconds, drains)) - drain0
        if spy.wait() != 0 or not raw.exists():
            raise SystemExit("py-spy failed: " + (tmp / "py-spy.log").read_text())
        requests = result["rps"] * args.duration
        per_request = cpu / requests * 1e6

        samples: collections.Counter[str] = collections.Counter()
        stacks: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        lines: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            step = step_of(frames)
            samples[step] += int(count)
            stacks[step][";".join(frames[-4:])] += int(count)
            for frame in reversed(frames):
                if "aperture/" in frame:
                    lines[frame] += int(count)
                    own[function_of(frame)] += int(count)
                    break
            for name in {function_of(f) for f in frames if "aperture/" in f}:
                inclusive[name] += int(count)
        total = sum(samples.values())
        print("\n%d requests/s at %d connections, capture %s; worker CPU %.1f us per request "
              "(%d samples)\n" % (result["rps"], args.connections, ("on (%s writer)" % args.capture) if args.capture else "off",
                                  per_request, total))
        if drains:
            print("drain process CPU %.1f us per request (not in the samples below)\n"
                  % (drain_cpu / requests * 1e6))
        print("%-48s %7s %8s" % ("step", "share", "us/req"))
        for step, n in samples.most_common():
            print("%-48s %6.1f%% %8.1f" % (step, 100 * n / total, per_request * n / total))
        for frame, n in lines.most_common(args.lines):
            print("  %5.1f%% %7.1f us  %s" % (100 * n / total, per_request * n / total, frame))
        if args.functions:
            print("\n  %-7s %9s %9s  %s" % ("incl", "us/req", "self", "function"))
        for name, n in inclusive.most_common(args.functions):
            print("  %5.1f%% %7.1f us %6.1f us  %s" % (100 * n / total, per_request * n / total,
                                                      per_request * own[name] / total, name))
        for step, n in samples.most_common():
            for stack, k in stacks[step].most_common(args.stacks):
                print("  %-46s %5.1f%%  %s" % (step[:46], 100 * k / total, stack))
    finally:
        for proc in reversed(procs):
            bg.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def function_of(frame: str) -> str:
    """`Class.method (aperture/x.py:12)` -> `Class.method (aperture/x.py)`."""
    name, _, where = frame.partition(" (")
    return "%s (%s)" % (name, where.rsplit(":", 1)[0].split("aperture/", 1)[-1])


if __name__ == "__main__":
    main()
