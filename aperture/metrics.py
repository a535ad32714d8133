"""Prometheus metrics: counted per worker, summed over the workers when scraped.

Theory of operation
-------------------
Counting. Every exchange ends in one record (refused and failed ones too),
handed to the gateway's sink. `ObservingSink` wraps the capture sink: it sets
the record's estimated cost (aperture.pricing; $0 for an exchange aperture
refused, which no provider saw; none for a model without a price), counts it in this worker's
`WorkerMetrics`, and passes it on, so the exchange itself is untouched. The
counters are plain dicts keyed by label tuples: about 2 µs per record.
prometheus_client's multiprocess mode (one mmap'd file per process, summed
at scrape) was measured at 22 µs per record for the same counters, about a
tenth of a proxied request's CPU here, so the request path does not use it;
the library writes the exposition format (a custom collector), and the tests
read it back with its parser.

The identity source's own counters (WhoIs calls by result, aperture.identity.whois)
are read when scraped too.

Gauges are read when scraped: exchanges in flight and those streaming (the
gateway's set of live exchanges), open client connections (the server's
connection set), upstream connections (in use by live exchanges; idle in
the pool), the capture writer's queue and counters, and the event loops'
tasks (a leak shows as a count that does not come back down).

Summing over workers. `aperture serve --workers N` forks N processes that
share the port; a scrape reaches one of them. Each worker listens on a Unix
socket `<pid>.sock` in a directory private to the serve command (mode 0700,
made before the fork); the worker that answers a scrape asks every other
socket in it for a snapshot (JSON), adds them to its own, and renders the sum.
A worker that does not answer within a second is left out of that scrape
(`aperture_workers` counts those included). Values about the store shared by
all workers (the journal bytes waiting for LMDB) are read once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

import orjson

from aperture.capture.record import REFUSED

if TYPE_CHECKING:
    from aperture.capture.record import Record

log = logging.getLogger("aperture.metrics")

TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                    300.0, 600.0)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
SCRAPE_TIMEOUT = 1.0
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                      "CONNECT"})


def status_class(status: int) -> str:
    return "%dxx" % (status // 100) if 100 <= status < 600 else "none"


class WorkerMetrics:
    """This worker's counters (see the module docstring)."""

    def __init__(self) -> None:
        # (provider, model, api, status class, state) -> requests
        self.requests: dict[tuple, int] = {}
        # (provider, model) -> [5 token kinds, tool calls, cost nano, unpriced requests]
        self.models: dict[tuple, list[int]] = {}
        # provider -> [bucket counts..., +Inf count, sum]
        self.ttfb: dict[str, list[float]] = {}
        self.duration: dict[str, list[float]] = {}
        # (method, status) -> requests on paths and methods aperture does not serve
        self.unrouted: dict[tuple, int] = {}

    def observe_unrouted(self, method: str, status: int) -> None:
        """A request no route serves. Its path is not a label (clients may send
        any path; labels must stay a bounded set); the method is one of the few
        the HTTP parser accepts."""
        key = (method if method in _METHODS else "OTHER", str(status))
        self.unrouted[key] = self.unrouted.get(key, 0) + 1

    def observe(self, rec: Record, model: str) -> None:
        key = (rec.provider, model, rec.api, status_class(rec.status), rec.state)
        req = self.requests
        req[key] = req.get(key, 0) + 1
        mkey = (rec.provider, model)
        m = self.models.get(mkey)
        if m is None:
            m = self.models[mkey] = [0] * 8
        u = rec.usage
        m[0] += u.input_tokens
        m[1] += u.output_tokens
        m[2] += u.cache_read_tokens
        m[3] += u.cache_write_tokens
        m[4] += u.reasoning_tokens
        m[5] += len(rec.tool_calls)
        if rec.cost is None:
            m[7] += 1
        else:
            m[6] += rec.cost
        if rec.ttfb_ms is not None:
            _observe(self.ttfb, rec.provider, TTFB_BUCKETS, rec.ttfb_ms / 1000.0)
        _observe(self.duration, rec.provider, DURATION_BUCKETS, rec.duration_ms / 1000.0)

    def snapshot(self) -> dict:
        return {"requests": [list(k) + [v] for k, v in self.requests.items()],
                "models": [list(k) + v for k, v in self.models.items()],
                "ttfb": self.ttfb, "duration": self.duration,
                "unrouted": [list(k) + [v] for k, v in self.unrouted.items()]}


def _observe(hists: dict, provider: str, buckets: tuple, value: float) -> None:
    h = hists.get(provider)
    if h is None:
        h = hists[provider] = [0] * (len(buckets) + 1) + [0.0]
    h[bisect.bisect_left(buckets, value)] += 1
    h[-1] += value


class ObservingSink:
    """The record sink the exchanges see: prices and counts each record, then
    hands it to the capture sink (see the module docstring)."""

    def __init__(self, inner, gateway) -> None:
        self.inner = inner
        self._gateway = gateway
        self.counts = WorkerMetrics()

    def submit(self, record: Record, hold=None) -> None:
        try:
            snapshot = self._gateway.current()
            provider = snapshot.config.providers.get(record.provider)
            # Only configured models become label values: a refused request
            # may name anything, and labels must stay a bounded set.
            if provider is not None and record.model in provider.models:
                model = record.model
                if record.state == REFUSED:
                    record.cost = 0  # refused by aperture: no provider saw it
                else:
                    record.cost = snapshot.prices.cost(record.provider, model, record.usage)
            else:
                model = "" if not record.model else "other"
                if record.state == REFUSED:
                    record.cost = 0
            self.counts.observe(record, model)
        except Exception:  # counting must never cost a capture
            log.exception("metrics: cannot count record %s", getattr(record, "id", "?"))
        self.inner.submit(record, hold)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name):
        return getattr(self.inner, name)


# --- gauges and snapshots ------------------------------------------------------------


def worker_snapshot(gateway) -> dict:
    """This worker's counters and gauges."""
    m = gateway.metrics
    live = m.live
    streams = upstream_active = 0
    for ex in live:
        if getattr(ex, "stream", False):
            streams += 1
        if getattr(ex, "upstream", None) is not None:
            upstream_active += 1
    idle = 0
    pool = gateway.pool
    for conns in getattr(pool, "_idle", {}).values():
        idle += sum(1 for c in conns if not getattr(c, "closed", False))
    sink = gateway.sink
    inner = getattr(sink, "inner", sink)
    stats = getattr(inner, "stats", {})
    queue = getattr(inner, "_queue", ())
    snap = gateway.sink.counts.snapshot() if hasattr(gateway.sink, "counts") else {}
    snap["gauges"] = {
        "in_flight_requests": len(live), "in_flight_streams": streams,
        "client_connections": len(m.connections) if m.connections is not None else 0,
        "upstream_active": upstream_active, "upstream_idle": idle,
        "capture_queue": len(queue),
        # every task of the event loop: exchanges, connections' timers and
        # background work; back at its resting value once traffic stops,
        # unless something leaks a task
        "tasks": len(asyncio.all_tasks()),
    }
    lookups = getattr(gateway.identity_source, "lookup_results", None)
    if isinstance(lookups, dict):
        snap["identity"] = dict(lookups)
    snap["capture"] = {"dropped": stats.get("dropped", 0),
                       "journal_errors": stats.get("journal_errors", 0),
                       "write_errors": stats.get("write_errors", 0)}
    return snap


def merge(snaps: list[dict]) -> dict:
    total: dict = {"requests": {}, "models": {}, "ttfb": {}, "duration": {}, "gauges": {},
                   "capture": {}, "identity": {}, "unrouted": {}, "workers": len(snaps)}
    for s in snaps:
        for row in s.get("unrouted", ()):
            k = tuple(row[:2])
            total["unrouted"][k] = total["unrouted"].get(k, 0) + row[2]
        for row in s.get("requests", ()):
            k = tuple(row[:5])
            total["requests"][k] = total["requests"].get(k, 0) + row[5]
        for row in s.get("models", ()):
            k = tuple(row[:2])
            acc = total["models"].setdefault(k, [0] * 8)
            for i, v in enumerate(row[2:]):
                acc[i] += v
        for name in ("ttfb", "duration"):
            for provider, h in s.get(name, {}).items():
                acc = total[name].get(provider)
                if acc is None:
                    total[name][provider] = list(h)
                else:
                    for i, v in enumerate(h):
                        acc[i] += v
        for part in ("gauges", "capture", "identity"):
            for k, v in s.get(part, {}).items():
                total[part][k] = total[part].get(k, 0) + v
    return total


def journal_bytes(data_dir: str | None) -> int:
    """Bytes of captures written to journals and not yet to LMDB (all workers)."""
    if data_dir is None:
        return 0
    from aperture.capture.journal import JOURNAL_DIRNAME

    total = 0
    with contextlib.suppress(OSError):
        with os.scandir(os.path.join(data_dir, JOURNAL_DIRNAME)) as it:
            for entry in it:
                with contextlib.suppress(OSError):
                    if entry.is_file():
                        total += entry.stat().st_size
    return total


# --- the exposition -------------------------------------------------------------------


def render(total: dict, journal: int) -> bytes:
    from prometheus_client.core import (CollectorRegistry, CounterMetricFamily,
                                        GaugeMetricFamily, HistogramMetricFamily)
    from prometheus_client.exposition import generate_latest

    def families():
        f = CounterMetricFamily("aperture_requests", "Exchanges finished, refused and failed "
                                "ones included.", labels=["provider", "model", "api",
                                                          "status_class", "state"])
        for k, v in sorted(total["requests"].items()):
            f.add_metric(list(k), v)
        yield f
        tokens = CounterMetricFamily("aperture_tokens", "Tokens metered, by kind (reasoning "
                                     "tokens are also counted in output).",
                                     labels=["provider", "model", "kind"])
        calls = CounterMetricFamily("aperture_tool_calls", "Tool calls in responses.",
                                    labels=["provider", "model"])
        cost = CounterMetricFamily("aperture_cost_usd", "Estimated cost in US dollars of the "
                                   "exchanges whose model has a price.",
                                   labels=["provider", "model"])
        unpriced = CounterMetricFamily("aperture_unpriced_requests", "Exchanges whose model "
                                       "has no price (not in aperture_cost_usd).",
                                       labels=["provider", "model"])
        for (provider, model), v in sorted(total["models"].items()):
            for i, kind in enumerate(TOKEN_KINDS):
                tokens.add_metric([provider, model, kind], v[i])
            calls.add_metric([provider, model], v[5])
            cost.add_metric([provider, model], v[6] / 1e9)
            unpriced.add_metric([provider, model], v[7])
        yield from (tokens, calls, cost, unpriced)
        unrouted = CounterMetricFamily("aperture_unrouted_requests", "Requests on a path or "
                                       "with a method aperture does not serve (answered 4xx, "
                                       "captured as refused).", labels=["method", "status"])
        for k, v in sorted(total["unrouted"].items()):
            unrouted.add_metric(list(k), v)
        yield unrouted
        for name, buckets, doc in (
                ("ttfb", TTFB_BUCKETS, ("aperture_time_to_first_byte_seconds",
                                        "Time from the request to the first response byte "
                                        "sent to the client.")),
                ("duration", DURATION_BUCKETS, ("aperture_request_duration_seconds",
                                                "Time from the request to its end."))):
            h = HistogramMetricFamily(doc[0], doc[1], labels=["provider"])
            for provider, counts in sorted(total[name].items()):
                cum, out = 0, []
                for b, c in zip(buckets, counts):
                    cum += c
                    out.append((_le(b), cum))
                cum += counts[len(buckets)]
                out.append(("+Inf", cum))
                h.add_metric([provider], out, counts[-1])
            yield h
        g = total["gauges"]
        for name, key, doc in (
                ("aperture_in_flight_requests", "in_flight_requests", "Exchanges in progress."),
                ("aperture_in_flight_streams", "in_flight_streams",
                 "Exchanges relaying a streamed response."),
                ("aperture_client_connections", "client_connections",
                 "Open client connections."),
                ("aperture_capture_queue_records", "capture_queue",
                 "Records waiting in memory for a writer thread."),
                ("aperture_event_loop_tasks", "tasks",
                 "asyncio tasks alive in the workers' event loops (this scrape's own included).")):
            yield GaugeMetricFamily(name, doc, value=g.get(key, 0))
        up = GaugeMetricFamily("aperture_upstream_connections", "Open connections to "
                               "providers: in use, or idle in the pool.", labels=["state"])
        up.add_metric(["active"], g.get("upstream_active", 0))
        up.add_metric(["idle"], g.get("upstream_idle", 0))
        yield up
        yield GaugeMetricFamily("aperture_capture_backlog_bytes", "Captured bytes in journals, "
                                "not yet written to the store.", value=journal)
        c = total["capture"]
        yield CounterMetricFamily("aperture_capture_dropped_records", "Records not captured "
                                  "(writer overloaded, undecodable).", value=c.get("dropped", 0))
        errs = CounterMetricFamily("aperture_capture_errors", "Capture I/O errors.",
                                   labels=["kind"])
        errs.add_metric(["journal"], c.get("journal_errors", 0))
        errs.add_metric(["write"], c.get("write_errors", 0))
        yield errs
        if total.get("identity"):
            who = CounterMetricFamily("aperture_identity_lookups", "WhoIs calls to tailscaled's "
                                      "LocalAPI (one per client connection at most), by result.",
                                      labels=["result"])
            for result, count in sorted(total["identity"].items()):
                who.add_metric([result], count)
            yield who
        yield GaugeMetricFamily("aperture_workers", "Workers whose counts this scrape sums.",
                                value=total["workers"])

    class _Collector:
        def collect(self):
            return families()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def _le(b: float) -> str:
    return repr(float(b))


# --- per worker: the set of live exchanges, the sibling socket ---------------------------


class Metrics:
    """What one gateway worker keeps for /metrics."""

    def __init__(self, directory: str | None) -> None:
        self.live: set = set()
        self.connections: set | None = None
        self.directory = directory
        self._server: asyncio.AbstractServer | None = None
        self._path: str | None = None

    async def start(self, gateway) -> None:
        if self.directory is None:
            return
        self._path = os.path.join(self.directory, "%d.sock" % os.getpid())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

        async def answer(reader, writer):
            try:
                writer.write(orjson.dumps(worker_snapshot(gateway)))
                await writer.drain()
            finally:
                writer.close()

        try:
            self._server = await asyncio.start_unix_server(answer, path=self._path)
        except OSError as e:
            log.error("metrics: cannot listen on %s (%s); /metrics will count this worker "
                      "only when it answers the scrape", self._path, e)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)

    async def gather(self, gateway) -> list[dict]:
        """This worker's snapshot and every sibling's."""
        snaps = [worker_snapshot(gateway)]
        if self.directory is None:
            return snaps
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(".sock")]
        except OSError:
            return snaps
        own = os.path.basename(self._path or "")
        paths = [os.path.join(self.directory, n) for n in names if n != own]
        results = await asyncio.gather(*(self._ask(p) for p in paths))
        snaps.extend(r for r in results if r is not None)
        return snaps

    async def _ask(self, path: str) -> dict | None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(path)
                try:
                    data = await reader.read()
                finally:
                    writer.close()
            return orjson.loads(data)
        except (OSError, TimeoutError, orjson.JSONDecodeError):
            if not _alive(path):
                with contextlib.suppress(OSError):
                    os.unlink(path)  # a worker that died without cleaning up
            return None


def _alive(path: str) -> bool:
    try:
        pid = int(os.path.basename(path).split(".", 1)[0])
        os.kill(pid, 0)
        return True
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True


async def scrape(gateway) -> bytes:
    t0 = time.perf_counter()
    snaps = await gateway.metrics.gather(gateway)
    body = render(merge(snaps), journal_bytes(gateway.settings.data_dir))
    log.debug("metrics: scrape of %d workers in %.1f ms", len(snaps),
              (time.perf_counter() - t0) * 1000)
    return body
