"""What the meter tests share: both implementations, feeding, observing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from aperture import _pure

try:
    from aperture import _native
except ImportError:  # extension not built
    _native = None

needs_native = pytest.mark.skipif(_native is None, reason="aperture._native is not built (run `pip install -e .`)")
IMPLS = [pytest.param(_pure, id="pure"), pytest.param(_native, id="native", marks=needs_native)]
PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_EVENT_BYTES = 16 * 1024 * 1024


def run(mod, framing: str, dialect: str, body: bytes, cuts=(), finish: bool = True):
    """A meter fed `body` cut at `cuts`, then finished."""
    m = mod.Meter(framing, dialect)
    prev = 0
    for c in [*sorted(cuts), len(body)]:
        m.feed(body[prev:c])
        prev = c
    if finish:
        m.finish()
    return m


def observe(m) -> tuple:
    return m.events, m.bad_events, m.complete, m.error, m.response_id, m.usage(), m.tool_calls()
