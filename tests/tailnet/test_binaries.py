"""The pinned binaries: reused when present at their versions, built otherwise, a loud failure without Go."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.tailnet import binaries
from tests.tailnet.binaries import BuildError, ensure_binaries

pytestmark = [pytest.mark.tailnet, pytest.mark.timeout(1800)]


def test_present_binaries_are_reused_without_go(monkeypatch):
    ensure_binaries()  # built here if this is the first run

    def no_go():
        raise AssertionError("Go was asked for although the binaries are there")

    monkeypatch.setattr(binaries, "find_go", no_go)
    paths = ensure_binaries()
    assert set(paths) == {"tailscaled", "tailscale", "headscale"}
    assert all(os.access(p, os.X_OK) for p in paths.values())


def test_a_missing_or_changed_binary_without_go_is_a_loud_failure(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    bindir = cache / "tailnet" / "bin"
    bindir.mkdir(parents=True)
    for name, path in ensure_binaries().items():
        shutil.copy2(path, bindir / name)
    (bindir / "headscale.version").write_text(
        (binaries.cache_dir() / "bin" / "headscale.version").read_text())
    monkeypatch.setenv("APERTURE_TEST_CACHE", str(cache))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(binaries, "GO_FALLBACKS", ())
    assert ensure_binaries()["headscale"] == bindir / "headscale"  # all there: no Go needed
    # A headscale that is not the one stamped must be rebuilt, and that needs Go.
    with open(bindir / "headscale", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BuildError, match="no `go` was found on PATH"):
        ensure_binaries()
