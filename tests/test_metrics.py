"""Per-worker counts, their sum over workers, the exposition read back by
prometheus_client's parser; read_metrics grants."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from aperture import metrics
from aperture.capture.record import ToolCall, Usage
from aperture.policy import Policy
from aperture.identity import Identity

from .capture.helpers import make_record


def _samples(body: bytes) -> dict:
    out: dict = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_two_workers_sum():
    a, b = metrics.WorkerMetrics(), metrics.WorkerMetrics()
    a.observe(make_record(usage=Usage(10, 20, 30, 40, 5), cost=1_500_000_000, ttfb_ms=30.0,
                          duration_ms=700.0, tool_calls=(ToolCall("Bash", ""),)), "claude-sonnet-4-5")
    b.observe(make_record(usage=Usage(1, 2, 3, 4, 0), cost=None, status=502,
                          state="upstream_error", ttfb_ms=None, duration_ms=20.0), "claude-sonnet-4-5")
    snaps = []
    for w in (a, b):
        snap = w.snapshot()
        snap["gauges"] = {"in_flight_requests": 1, "in_flight_streams": 0}
        snaps.append(snap)
    m = _samples(metrics.render(metrics.merge(snaps), 123))
    reqs = {(s.labels["status_class"], s.labels["state"]): s.value for s in m["aperture_requests_total"]}
    assert reqs == {("2xx", "complete"): 1, ("5xx", "upstream_error"): 1}
    tokens = {s.labels["kind"]: s.value for s in m["aperture_tokens_total"]}
    assert tokens == {"input": 11, "output": 22, "cache_read": 33, "cache_write": 44, "reasoning": 5}
    assert [s.value for s in m["aperture_cost_usd_total"]] == [1.5]
    assert [s.value for s in m["aperture_unpriced_requests_total"]] == [1]
    assert [s.value for s in m["aperture_tool_calls_total"]] == [1]
    buckets = {s.labels["le"]: s.value for s in m["aperture_request_duration_seconds_bucket"]}
    assert buckets["0.05"] == 1 and buckets["1.0"] == 2 and buckets["+Inf"] == 2
    assert [s.value for s in m["aperture_time_to_first_byte_seconds_count"]] == [1]
    assert [s.value for s in m["aperture_in_flight_requests"]] == [2]
    assert [s.value for s in m["aperture_capture_backlog_bytes"]] == [123]
    assert [s.value for s in m["aperture_workers"]] == [2]


def test_read_metrics_grant():
    doc = {"grants": [
        {"src": ["tag:prom"], "app": {"tailscale.com/cap/aperture": [{"read_metrics": True}]}},
        {"src": ["ann@example.com"], "app": {"tailscale.com/cap/aperture": [{"role": "user"}]}},
        {"src": ["root@example.com"], "app": {"tailscale.com/cap/aperture": [{"role": "admin"}]}}]}
    policy = Policy.compile(doc)
    prom = Identity(login="", tags=("tag:prom",))
    assert policy.may_read_metrics(prom) and policy.role(prom) is None
    assert not policy.may_read_metrics(Identity(login="ann@example.com"))
    assert policy.may_read_metrics(Identity(login="root@example.com"))


def test_read_metrics_must_be_a_boolean():
    from aperture.policy import validate_grants

    problems = validate_grants({"grants": [{"src": ["*"], "app": {
        "tailscale.com/cap/aperture": [{"read_metrics": "yes"}]}}]})
    assert problems == ['grants[0].app["tailscale.com/cap/aperture"][0].read_metrics: '
                        "must be true or false, not a string"]
