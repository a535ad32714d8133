"""The dashboard's read side: sums from rollups equal sums of the records, for
every grouping, filter and bucket; pages continue where they stopped."""

from __future__ import annotations

import random

import pytest

from aperture.capture.dashboard import (Query, SessionQuery, aggregate, count_sessions,
                                        decode_cursor, records_page, sessions_page)
from aperture.capture.query import CaptureReader, Filter
from aperture.capture.record import ToolCall, Usage
from aperture.capture.store import CaptureStore

from .helpers import make_record

HOUR = 3600.0
T0 = 1_780_000_000.0 - (1_780_000_000.0 % 86400)  # a UTC midnight
USERS = ["ann@example.com", "bob@example.com", "tag:ci"]
MODELS = [("anthropic", "claude-sonnet-4-6"), ("openai", "gpt-5.4"), ("bedrock", "nova-pro")]
TOOLS = ["Read", "Bash", "Edit"]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dash")
    rng = random.Random(7)
    store = CaptureStore(str(d), durable=False)
    records = []
    for i in range(600):
        provider, model = rng.choice(MODELS)
        rec = make_record(
            time=T0 + rng.uniform(0, 3 * 86400), user=rng.choice(USERS), provider=provider,
            model=model, status=rng.choice((200, 200, 429, 500)),
            state=rng.choice(("complete", "complete", "refused", "incomplete")),
            usage=Usage(rng.randrange(100), rng.randrange(100), rng.randrange(50),
                        rng.randrange(20), rng.randrange(5)),
            tool_calls=tuple(ToolCall(rng.choice(TOOLS), "{}") for _ in range(rng.randrange(3))),
            cost=None if model == "nova-pro" and i % 2 else rng.randrange(10**6),
            session_hint="s%d" % (i % 40), duration_ms=rng.uniform(1, 100))
        records.append(rec)
        store.submit(rec)
    assert store.flush(30)
    store.close()
    return str(d), records


def brute(records, q: Query) -> dict:
    out: dict = {}
    for r in records:
        if q.since is not None and r.time < q.since or q.until is not None and r.time > q.until:
            continue
        if any(v is not None and getattr(r, k) != v for k, v in
               (("user", q.user), ("model", q.model), ("provider", q.provider))):
            continue
        b = None if q.bucket is None else int(r.time // {"hour": 3600, "day": 86400}[q.bucket]) * {
            "hour": 3600, "day": 86400}[q.bucket]
        u = r.usage
        base = [1, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
                u.reasoning_tokens, len(r.tool_calls), int(r.duration_ms * 1000), r.cost or 0,
                int(r.cost is None)]
        fields = {"user": r.user, "provider": r.provider, "model": r.model}
        if "tool" in q.group or q.tool is not None:
            counts: dict = {}
            for t in r.tool_calls:
                counts[t.name] = counts.get(t.name, 0) + 1
            pairs = [(n, c) for n, c in counts.items() if q.tool in (None, n)]
        else:
            pairs = [(None, len(r.tool_calls))]
        for name, calls in pairs:
            fields["tool"] = name
            key = (b,) + tuple(fields[g] for g in q.group)
            v = list(base)
            v[6] = calls
            acc = out.setdefault(key, [0] * 10)
            for i in range(10):
                acc[i] += v[i]
    return out


QUERIES = [
    Query(), Query(group=("model",)), Query(group=("user",), bucket="day"),
    Query(user="ann@example.com", group=("model",)),
    Query(user="bob@example.com", bucket="hour", since=T0 + 5.5 * HOUR, until=T0 + 30.25 * HOUR),
    Query(provider="openai", group=("user", "model"), bucket="day", since=T0 + 3 * HOUR),
    Query(group=("tool",), bucket="day"), Query(tool="Bash", user="tag:ci", group=("model",)),
    Query(user="ann@example.com", group=("tool",), since=T0 + 7.3 * HOUR),
    Query(model="gpt-5.4", until=T0 + 50.5 * HOUR, group=("provider",), bucket="hour"),
]


@pytest.mark.parametrize("q", QUERIES)
def test_aggregates_equal_the_records(store_dir, q):
    d, records = store_dir
    with CaptureReader(d) as reader:
        assert aggregate(reader, q) == brute(records, q)


def test_store_written_before_combinations_reads_old_part_from_records(store_dir, tmp_path):
    """combo_since in the future: everything is summed from records, same answer."""
    import lmdb

    from aperture.capture.schema import ts_bytes
    from aperture.capture.store import COMBO_SINCE

    d, records = store_dir
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    env = lmdb.open(str(copy / "captures.lmdb"), max_dbs=30)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(COMBO_SINCE, ts_bytes(T0 + 40 * HOUR), db=meta)
    env.close()
    q = Query(user="ann@example.com", group=("model",), bucket="day")
    with CaptureReader(str(copy)) as reader:
        assert aggregate(reader, q) == brute(records, q)


def test_session_pages_continue_and_filter(store_dir):
    d, records = store_dir
    with CaptureReader(d) as reader:
        q = SessionQuery(state="refused")
        seen, cursor = [], None
        while True:
            rows, cur = sessions_page(reader, q, 7, decode_cursor(cursor) if cursor else None)
            seen += rows
            if cur is None:
                break
            cursor = cur
        want = reader.sessions(Filter(), None)
        want = [r["session"] for r in want if any(
            rec.state == "refused" for rec in records if rec.session_hint == r["session"])]
        assert [r["session"] for r in seen] == want
        assert all(r["states"].get("refused") for r in seen)
        assert count_sessions(reader, None, None) == 40


def test_record_pages_cover_a_session_once(store_dir):
    d, records = store_dir
    with CaptureReader(d) as reader:
        got, cursor = [], None
        while True:
            rows, cursor = records_page(reader, Filter(session="s3"), 4,
                                        decode_cursor(cursor) if cursor else None,
                                        oldest_first=True)
            got += rows
            if cursor is None:
                break
    want = sorted((r for r in records if r.session_hint == "s3"), key=lambda r: (r.time, r.id))
    assert [r["id"] for r in got] == [r.id for r in want]
    assert [r["cost_usd"] for r in got] == [None if r.cost is None else r.cost / 1e9 for r in want]
