"""tailscaled, tailscale and headscale at pinned versions, built once into a cache the tests own.

The cache is `$APERTURE_TEST_CACHE/tailnet/bin` (default `~/.cache/aperture-tests`).
A binary there is reused when it reports the pinned version; otherwise it is
built with Go from the Go module proxy (about five minutes on two cores without
a warm Go build cache; seconds with one):

* tailscale: `go install tailscale.com/cmd/tailscaled@V tailscale.com/cmd/tailscale@V`
  with GOBIN pointed at the cache;
* headscale: `go mod download -json github.com/juanfont/headscale@V`, then
  `go build ./cmd/headscale` in the downloaded directory (`go install` of that
  module fails on its deprecation look-up). Built that way it reports its
  version as "dev", so the build leaves a stamp beside it: `headscale.version`
  holds the version and the binary's SHA-256.

A missing Go toolchain or a failed build raises BuildError with the command and
its output: the tailnet tests fail loudly rather than skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

TAILSCALE_VERSION = "1.98.10"
HEADSCALE_VERSION = "0.29.3"
GO_FALLBACKS = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


class BuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("APERTURE_TEST_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "aperture-tests")
    return Path(root) / "tailnet"


def find_go() -> str:
    found = shutil.which("go")
    if found:
        return found
    for path in GO_FALLBACKS:
        if os.access(path, os.X_OK):
            return path
    raise BuildError("the tailnet tests build tailscaled and headscale with Go, and no `go` was "
                     "found on PATH or in %s: install Go (https://go.dev/dl/) and run again"
                     % ", ".join(GO_FALLBACKS))


def _version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def _has_version(binary: Path, args: list[str], version: str) -> bool:
    """Whether the binary's version line names `version`. Built with `go install`
    from the module proxy, tailscale says "1.98.10-ERR-BuildInfo" (no VCS data)."""
    if not os.access(binary, os.X_OK):
        return False
    first = (_version_of([str(binary), *args]).split() or [""])[0].lstrip("v")
    return first == version or first.startswith(version + "-")


def _stamp(binary: Path) -> str:
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    return "%s %s\n" % (HEADSCALE_VERSION, digest)


def _headscale_ok(binary: Path) -> bool:
    stamp = binary.with_name(binary.name + ".version")
    try:
        return os.access(binary, os.X_OK) and stamp.read_text() == _stamp(binary)
    except OSError:
        return False


def _run(argv: list[str], *, cwd: str | None = None, env: dict, log: Path) -> str:
    with open(log, "ab") as out:
        out.write(("\n$ %s\n" % " ".join(argv)).encode())
        out.flush()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out,
                              timeout=3600)
        out.write(proc.stdout)
    if proc.returncode != 0:
        raise BuildError("%s failed (exit %d); output in %s:\n%s" % (
            " ".join(argv), proc.returncode, log, log.read_text(errors="replace")[-4000:]))
    return proc.stdout.decode()


def ensure_binaries() -> dict[str, Path]:
    """Paths of tailscaled, tailscale and headscale at the pinned versions,
    built when missing. Concurrent runs wait for each other's build."""
    root = cache_dir()
    bindir = root / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    paths = {name: bindir / name for name in ("tailscaled", "tailscale", "headscale")}
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        need_tailscale = not (_has_version(paths["tailscaled"], ["--version"], TAILSCALE_VERSION)
                              and _has_version(paths["tailscale"], ["version"], TAILSCALE_VERSION))
        need_headscale = not _headscale_ok(paths["headscale"])
        if not (need_tailscale or need_headscale):
            return paths
        go = find_go()
        env = {**os.environ, "GOBIN": str(bindir), "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0",
               "PATH": os.path.dirname(go) + os.pathsep + os.environ.get("PATH", "")}
        env.setdefault("GOTOOLCHAIN", "auto")
        log = root / "build.log"
        if need_tailscale:
            _run([go, "install", "tailscale.com/cmd/tailscaled@v" + TAILSCALE_VERSION,
                  "tailscale.com/cmd/tailscale@v" + TAILSCALE_VERSION], env=env, log=log)
        if need_headscale:
            info = json.loads(_run([go, "mod", "download", "-json",
                                    "github.com/juanfont/headscale@v" + HEADSCALE_VERSION],
                                   env=env, log=log))
            if not info.get("Dir"):
                raise BuildError("go mod download gave no directory for headscale: %r" % info)
            tmp = bindir / "headscale.tmp"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            _run([go, "build", "-o", str(tmp), "./cmd/headscale"], cwd=info["Dir"], env=env,
                 log=log)
            tmp.replace(paths["headscale"])
            paths["headscale"].with_name("headscale.version").write_text(_stamp(paths["headscale"]))
        for name, args, version in (("tailscaled", ["--version"], TAILSCALE_VERSION),
                                    ("tailscale", ["version"], TAILSCALE_VERSION)):
            if not _has_version(paths[name], args, version):
                raise BuildError("%s was built but does not report version %s: %r" % (
                    paths[name], version, _version_of([str(paths[name]), *args])[:300]))
    return paths
