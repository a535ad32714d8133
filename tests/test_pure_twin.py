"""The integration suite once more, on the pure twins: `APERTURE_PURE=1` makes
the gateway read upstream responses with the h11 twin (aperture/upstream/
reader.py) and scan and meter with the pure-Python implementations
(aperture/accel.py). CI runs the README's test command only, so the second
run is this one test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pure_env() -> dict[str, str]:
    return {**os.environ, "APERTURE_PURE": "1"}


@pytest.mark.pure_twin
@pytest.mark.timeout(1800)
def test_integration_suite_passes_on_the_pure_twins():
    chosen = subprocess.run(
        [sys.executable, "-c", "from aperture.upstream import reader; from aperture import accel; "
                               "print(reader.IMPLEMENTATION, accel.IMPLEMENTATION)"],
        env=pure_env(), cwd=ROOT, capture_output=True, text=True, check=True)
    assert chosen.stdout.split() == ["h11", "pure"]
    run = subprocess.run([sys.executable, "-m", "pytest", "tests/integration", "-q", "-x",
                          "-p", "no:cacheprovider"],
                         env=pure_env(), cwd=ROOT, capture_output=True, text=True)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-60:])
    assert run.returncode == 0, "integration suite failed with APERTURE_PURE=1:\n" + tail
