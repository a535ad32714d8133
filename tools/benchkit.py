"""What the benchmark tools share: free ports, child processes, readings of
/proc, the machine's description, the set-ups of aperture and nginx in front
of the Go load tool (tools/streamload), and that tool's build.

The tools are run as scripts (`python tools/bench_x.py`), so this module is
imported as `benchkit`, from the tools directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
STREAMLOAD_SRC = TOOLS / "streamload"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# Ports and processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on port %d" % port)


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
                            start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------
# /proc


def rss_kib(pid: int) -> int:
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (utime + stime of /proc/<pid>/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`."""
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            out += [int(c) for c in open("/proc/%d/task/%s/children" % (pid, tid)).read().split()]
        except FileNotFoundError:
            pass
    return out


def machine_cpu() -> tuple[float, float, float]:
    """(busy, interrupts, total) CPU seconds of the whole machine since boot,
    all cores; interrupts: hard and soft interrupt time (on this path mostly
    loopback TCP delivery), which no process's utime + stime includes."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    total = sum(values[:8])  # guest time is already counted in user
    idle = values[3] + values[4]  # idle + iowait
    return (total - idle) / CLK_TCK, (values[5] + values[6]) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """CPU seconds of some processes and of the machine over one interval:
    `mark()` at its start, `read()` at its end. Besides the processes' names,
    the readings hold "machine" (all busy time) and "interrupts"."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = 0.0
        self.before: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                out[name] = cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                out[name] = float("nan")
        out["machine"], out["interrupts"], _ = machine_cpu()
        return out

    def mark(self) -> None:
        self.t0 = time.monotonic()
        self.before = self._sample()

    def read(self) -> tuple[float, dict[str, float]]:
        """(seconds elapsed, CPU seconds used by each process, the machine and
        interrupts)."""
        after = self._sample()
        return time.monotonic() - self.t0, {k: after[k] - self.before[k] for k in after}


def log_problems(path: Path, limit: int = 5) -> list[str]:
    """The first distinct warning or error lines of a server's log (aperture's
    stderr at --log-level warning, or nginx's error log), with counts."""
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        if any(word in line for word in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "[error]",
                                         "[crit]", "[alert]", "[emerg]", "[warn]")) \
                and "development identity" not in line:  # the benchmarks' own --identity dev:
            # Without the time stamp, so that repeats count as one.
            key = line.split(" ", 2)[-1][:200] if line[:2].isdigit() else line[:200]
            seen[key] = seen.get(key, 0) + 1
    return ["%dx %s" % (n, line) for line, n in list(seen.items())[:limit]]


def json_safe(value):
    """`value` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# The machine


def describe_machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    load = os.getloadavg()
    return ("%s, %d cores (%s), %d MiB, Linux %s, Python %s; load average before the run %.2f"
            % (platform.node() or "?", os.cpu_count() or 0, model, mem, platform.release(),
               platform.python_version(), load[0]))


# ---------------------------------------------------------------------------
# The Go load tool


def build_streamload() -> Path:
    """Build tools/streamload with `go build`, once per version of its
    source (cached in the temp directory by a hash of the source and of the
    Go version). Returns the binary's path."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("go not found: the load tool (tools/streamload) is written in Go")
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod")
    h = hashlib.sha256()
    h.update(subprocess.run([go, "version"], capture_output=True, text=True, env=env).stdout.encode())
    for path in sorted(STREAMLOAD_SRC.iterdir()):
        if path.suffix == ".go" or path.name == "go.mod":
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    out_dir = Path(tempfile.gettempdir()) / ("aperture-streamload-" + h.hexdigest()[:16])
    binary = out_dir / "streamload"
    if binary.exists():
        return binary
    out_dir.mkdir(exist_ok=True)
    partial = out_dir / ("streamload.%d" % os.getpid())
    res = subprocess.run([go, "build", "-o", str(partial), "."], cwd=STREAMLOAD_SRC, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit("go build of tools/streamload failed:\n" + res.stderr)
    os.replace(partial, binary)
    return binary


# ---------------------------------------------------------------------------
# aperture and nginx in front of the load tool's upstream

LOAD_MODELS = ["gpt-load", "claude-sonnet-4-5"]


def write_load_config(tmp: Path, upstream_port: int) -> Path:
    """aperture's config: the load tool's upstream as its one provider
    (OpenAI Chat and Anthropic Messages), everyone allowed."""
    config = tmp / "config.json"
    config.write_text(json.dumps({"providers": {"load": {
        "baseurl": "http://127.0.0.1:%d" % upstream_port, "apikey": "load-key", "authorization": "bearer",
        "models": LOAD_MODELS, "compatibility": {"openai_chat": True, "anthropic_messages": True}}},
        "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [{"role": "user"}, {"models": "**"}]}}]}))
    return config


def start_aperture(tmp: Path, config: Path, port: int, capture: bool, name: str) -> subprocess.Popen:
    """One aperture worker on `port`; with capture, into a fresh data
    directory under `tmp`. Returns once it listens."""
    cmd = [sys.executable, "-m", "aperture.cli", "serve", "--config", str(config),
           "--identity", "dev:bench@example.com", "--log-level", "warning",
           "--listen", "127.0.0.1:%d" % port]
    if capture:
        data = tmp / ("data-" + name)
        shutil.rmtree(data, ignore_errors=True)
        cmd += ["--data-dir", str(data)]
    else:
        cmd.append("--no-capture")
    proc = start(cmd, tmp / (name + ".log"))
    wait_port(port)
    return proc


STREAMING_NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 10000; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream load {{ server 127.0.0.1:{upstream_port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 64m;
        location / {{
            proxy_pass http://load;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise SystemExit("nginx not found: apt-get install nginx-light")
    return found


def start_streaming_nginx(tmp: Path, upstream_port: int, port: int) -> tuple[subprocess.Popen, int]:
    """nginx as a plain streaming reverse proxy (one worker, no response
    buffering, keep-alive to the upstream). Returns (master, worker pid)."""
    conf_dir = tmp / "nginx"
    shutil.rmtree(conf_dir, ignore_errors=True)
    conf_dir.mkdir()
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (conf_dir / d).mkdir()
    (conf_dir / "nginx.conf").write_text(STREAMING_NGINX_CONF.format(
        dir=conf_dir, upstream_port=upstream_port, port=port))
    proc = start([nginx_binary(), "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir)],
                 tmp / "nginx.log")
    wait_port(port)
    deadline = time.monotonic() + 5
    while not children(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = children(proc.pid)
    if not workers:
        raise SystemExit("nginx started no worker")
    return proc, workers[0]
