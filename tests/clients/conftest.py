"""The real coding agents against a real `aperture serve` on its embedded
default (the provider simulator upstream), as a new user would run them.

The clients are installed from npm at pinned versions, once, into a cache
these tests own (`$APERTURE_TESTS_CACHE`, default
`~/.cache/aperture-tests/agents/<name>-<version>`, with `npm install
--prefix`): nothing global, nothing fetched while an agent runs. A failed
install fails the tests (it never skips them). Each agent runs headless,
with a throwaway HOME, telemetry and auto-update off, a placeholder key of
its own (which must appear in no capture), and a time limit.

What each test checks is read back from the capture store
(`aperture.capture.query.CaptureReader`) and compared with what the
simulator declares for the request the client sent (`aperture.sim`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from aperture.capture.query import CaptureReader, Filter
from tests.integration.conftest import launch_gateway

#: name -> (npm package, version, binary)
CLIENTS = {
    "claude-code": ("@anthropic-ai/claude-code", "2.1.332", "claude"),
    "codex": ("@openai/codex", "0.171.0", "codex"),
    "gemini-cli": ("@google/gemini-cli", "0.61.0", "gemini"),
    "opencode": ("opencode-ai", "1.18.33", "opencode"),
    # OpenCode installs its plugin package into every config directory it
    # reads when it is missing; given ready-made, nothing is fetched.
    "opencode-plugin": ("@opencode-ai/plugin", "1.18.33", None),
}
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 120
#: a test's time limit (pytest-timeout): the first one of a client installs it
TEST_TIMEOUT = INSTALL_TIMEOUT + 2 * RUN_TIMEOUT
#: the marker that makes the simulator ask an agent to read a file (aperture.sim.agent)
MARKER = "sim-read-file:"


def cache_root() -> Path:
    return Path(os.environ.get("APERTURE_TESTS_CACHE")
                or Path.home() / ".cache" / "aperture-tests" / "agents")


def install(name: str) -> Path:
    """The client's install directory, installed from npm on first use."""
    package, version, _ = CLIENTS[name]
    target = cache_root() / ("%s-%s" % (name, version))
    done = target / ".aperture-installed"
    if done.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: the agent tests install %s@%s with it" % (package, version))
    staging = target.with_name(target.name + ".partial-%d" % os.getpid())
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        out = subprocess.run([npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund",
                              "--loglevel=error", "%s@%s" % (package, version)],
                             capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                             env={**os.environ, "npm_config_update_notifier": "false"})
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail("npm install %s@%s took more than %ds" % (package, version, INSTALL_TIMEOUT))
    if out.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail("npm install %s@%s failed (exit %d):\n%s"
                    % (package, version, out.returncode, out.stderr[-4000:]))
    (staging / ".aperture-installed").write_text("%s@%s\n" % (package, version))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def binary(name: str) -> str:
    _, _, exe = CLIENTS[name]
    path = install(name) / "node_modules" / ".bin" / exe
    if not path.exists():
        pytest.fail("%s is not in the npm install of %s" % (path, name))
    return str(path)


@dataclass
class Run:
    """One agent run: what it printed and the records it left."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    records: list[dict]  # oldest first, each with its capture (headers, bodies)

    def explain(self) -> str:
        rows = [{k: r[k] for k in ("model", "api", "path", "status", "state", "error")}
                for r in self.records]
        return "exit %s\nstdout: %s\nstderr: %s\nrecords: %s" % (
            self.returncode, self.stdout[-2000:], self.stderr[-3000:], json.dumps(rows, indent=1))


class Gateway:
    """`aperture serve` on the embedded default, shared by a module's tests."""

    def __init__(self, process) -> None:
        self.process = process
        self.url = process.url
        self.data_dir = process.data_dir

    def records_since(self, since: float) -> list[dict]:
        with CaptureReader(str(self.data_dir)) as reader:
            rows = reader.records(Filter(since=since), limit=None)
            return [reader.get(r["id"]) for r in reversed(rows)]

    def run(self, argv: list[str], env: dict, cwd: Path, expect: int,
            timeout: float = RUN_TIMEOUT) -> Run:
        """Run a client; wait until `expect` records of its requests are in the store."""
        since = time.time() - 0.001
        try:
            out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                                 timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            records = self.records_since(since)
            pytest.fail("%s did not finish within %ds\nstdout: %s\nstderr: %s\nrecords: %s\n%s"
                        % (argv[0], timeout, exc.stdout, exc.stderr,
                           [(r["model"], r["path"], r["status"]) for r in records],
                           self.process.log()[-3000:]))
        deadline = time.monotonic() + 15
        records = self.records_since(since)
        while len(records) < expect and time.monotonic() < deadline:
            time.sleep(0.1)
            records = self.records_since(since)
        time.sleep(0.3)  # anything more than expected would show now
        records = self.records_since(since)
        return Run(argv, out.returncode, out.stdout, out.stderr, records)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    process = launch_gateway(tmp_path_factory.mktemp("gateway"), None, identity="dev:dev@example.com")
    yield Gateway(process)
    process.stop()


@pytest.fixture
def workdir(tmp_path):
    """The agent's working directory, with a file the marker asks it to read."""
    work = tmp_path / "work"
    work.mkdir()
    secret = "The launch code is kiwi-%s." % uuid.uuid4().hex[:8]
    (work / "notes.txt").write_text(secret + "\n")
    return work


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def base_env(home: Path, **extra: str) -> dict:
    """A clean environment: no key or setting of the developer's leaks in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1"}
    env.update(extra)
    return env


def placeholder_key() -> str:
    """A client's placeholder credential: aperture must drop it, and no capture may hold it."""
    return "placeholder-key-%s" % uuid.uuid4().hex


