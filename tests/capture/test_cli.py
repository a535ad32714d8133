import base64
import csv
import io
import json
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture.capture.cli import query
from aperture.capture.query import RECORD_FIELDS, CaptureReader, Filter, parse_time
from aperture.capture.record import ToolCall, Usage
from aperture.capture.store import CaptureStore

from .helpers import make_record

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    store = CaptureStore(str(d), durable=False, batch_linger=0)
    recs = []
    for i in range(40):
        recs.append(make_record(
            time=T0 + i * 1800, user=("alice", "bob", "carol")[i % 3],
            model=("claude-sonnet-4-5", "gpt-5")[i % 2],
            provider=("anthropic", "openai")[i % 2], status=(200, 200, 429, 500)[i % 4],
            usage=Usage(i, 2 * i, i % 5, i % 7, i % 2),
            tool_calls=(ToolCall("Read", '{"path":"/x"}'),) * (i % 3),
            session_hint=f"sess-{i % 4}",
            request_body=b"\xff\xfe binary" if i == 7 else b'{"messages":[]}'))
    for r in recs:
        store.submit(r)
    assert store.flush()
    store.close()
    return str(d), recs


def run(*args, env=None):
    return CliRunner().invoke(query, list(args), env=env, catch_exceptions=False)


def test_list_json_has_the_documented_fields_newest_first(data):
    d, recs = data
    res = run("--data-dir", d, "--format", "json", "--limit", "100")
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert len(rows) == 40
    assert list(rows[0]) == list(RECORD_FIELDS)
    assert [r["id"] for r in rows] == [r.id for r in reversed(recs)]
    assert rows[0]["time"] == "2025-06-16T10:36:40.000Z"


@pytest.mark.parametrize("opts,pred", [
    (["--user", "bob"], lambda r: r.user == "bob"),
    (["--model", "gpt-5"], lambda r: r.model == "gpt-5"),
    (["--provider", "anthropic"], lambda r: r.provider == "anthropic"),
    (["--session", "sess-1"], lambda r: r.session_hint == "sess-1"),
    (["--status", "429"], lambda r: r.status == 429),
    (["--user", "alice", "--model", "gpt-5"], lambda r: r.user == "alice" and r.model == "gpt-5"),
    (["--since", "2025-06-15T17:00:00Z", "--until", "2025-06-15T18:00:00+00:00"],
     lambda r: T0 + 6800 <= r.time <= T0 + 10400),
])
def test_list_filters(data, opts, pred):
    d, recs = data
    res = run("--data-dir", d, "--format", "jsonl", "--limit", "1000", *opts)
    assert res.exit_code == 0
    got = [json.loads(line)["id"] for line in res.output.splitlines()]
    assert got == [r.id for r in reversed(recs) if pred(r)]
    assert got


def test_limit_and_table_width(data):
    d, _ = data
    res = run("--data-dir", d, "--limit", "5")
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert len(lines) == 6 and lines[0].startswith("ID")
    assert max(len(x) for x in lines) <= 80
    for cmd in (["usage", "--by", "tool"], ["usage", "--by", "day"], ["sessions"]):
        out = run("--data-dir", d, *cmd).output.splitlines()
        assert len(out) > 1 and max(len(x) for x in out) <= 80


def test_csv(data):
    d, recs = data
    res = run("--data-dir", d, "--format", "csv", "--user", "carol", "--limit", "3")
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert [r["id"] for r in rows] == [r.id for r in reversed(recs) if r.user == "carol"][:3]
    assert list(rows[0]) == list(RECORD_FIELDS)


def test_env_var_and_options_before_subcommand(data):
    d, _ = data
    res = run("usage", "--by", "user", "--format", "json", env={"APERTURE_DATA_DIR": d})
    assert {r["user"] for r in json.loads(res.output)} == {"alice", "bob", "carol"}
    res = run("--data-dir", d, "--user", "bob", "--format", "json", "sessions")
    assert {s["user"] for s in json.loads(res.output)} == {"bob"}


def test_show_text_and_json(data):
    d, recs = data
    res = run("--data-dir", d, "show", recs[3].id)
    assert res.exit_code == 0
    assert recs[3].id in res.output and '{"messages":[]}' in res.output
    res = run("show", recs[7].id, "--format", "json", "--data-dir", d)
    cap = json.loads(res.output)
    assert cap["request_body_encoding"] == "base64"
    assert base64.b64decode(cap["request_body"]) == recs[7].request_body
    assert cap["response_body"] == recs[7].response_body.decode()
    assert cap["request_headers"] == [["content-type", "application/json"]]
    assert run("--data-dir", d, "show", "01NOSUCHID").exit_code == 1


def test_usage_by_every_dimension(data):
    d, recs = data
    for by, key in (("user", lambda r: r.user), ("model", lambda r: r.model),
                    ("provider", lambda r: r.provider), ("session", lambda r: r.session_hint)):
        rows = json.loads(run("--data-dir", d, "usage", "--by", by, "--format", "json").output)
        expect = {}
        for r in recs:
            e = expect.setdefault(key(r), [0, 0, 0])
            e[0] += 1
            e[1] += r.usage.input_tokens
            e[2] += r.usage.output_tokens
        assert {x[by]: [x["requests"], x["input_tokens"], x["output_tokens"]]
                for x in rows} == expect
    rows = json.loads(run("--data-dir", d, "usage", "--by", "tool", "--format", "json").output)
    assert rows == [dict(rows[0], tool="Read")] and rows[0]["tool_calls"] == sum(
        i % 3 for i in range(40))
    days = json.loads(run("--data-dir", d, "usage", "--by", "day", "--format", "json").output)
    assert [x["day"] for x in days] == ["2025-06-15", "2025-06-16"]
    assert sum(x["requests"] for x in days) == 40
    rows = json.loads(run("--data-dir", d, "usage", "--by", "model", "--status", "500",
                          "--format", "json").output)
    assert sum(x["requests"] for x in rows) == 10


def test_sessions_command(data):
    d, _ = data
    rows = json.loads(run("--data-dir", d, "sessions", "--format", "json").output)
    assert [s["session"] for s in rows] == ["sess-3", "sess-2", "sess-1", "sess-0"]
    assert all(s["requests"] == 10 for s in rows)
    res = run("--data-dir", d, "sessions", "--format", "csv")
    assert res.output.splitlines()[0].startswith("session,user,first,last,requests")


@pytest.mark.parametrize("args", [
    ["--format", "xml"], ["--limit", "-1"], ["--status", "abc"], ["--since", "yesterday"],
    ["--until", "2025-13-01"], ["usage", "--by", "color"], ["--bogus"],
    ["--since", "1h", "--until", "2h"], ["sessions", "--limit", "x"], ["show"],
])
def test_bad_options_exit_2(data, args):
    d, _ = data
    res = CliRunner().invoke(query, ["--data-dir", d] + args)
    assert res.exit_code == 2, res.output


def test_empty_results(tmp_path, data):
    d, _ = data
    assert run("--data-dir", d, "--user", "nobody", "--format", "json").output.strip() == "[]"
    res = run("--data-dir", d, "--user", "nobody")
    assert res.exit_code == 0 and res.output.splitlines() == [res.output.splitlines()[0]]
    missing = str(tmp_path / "none")
    for cmd in ([], ["usage"], ["sessions"]):
        res = run("--data-dir", missing, *cmd, "--format", "json")
        assert res.exit_code == 0 and json.loads(res.output) == []


def test_parse_time():
    now = 1_000_000.0
    assert parse_time("90m", now) == now - 5400
    assert parse_time("7d", now) == now - 7 * 86400
    assert parse_time("2025-06-15T15:06:40Z", now) == T0
    assert parse_time("2025-06-15T17:06:40+02:00", now) == T0
    assert parse_time("2025-06-15", now) == T0 - 15 * 3600 - 400
    for bad in ("", "soon", "12", "2025-02-30"):
        with pytest.raises(ValueError):
            parse_time(bad, now)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(-3 * 86400, 3 * 86400), st.floats(0, 4 * 86400),
       st.sampled_from(["user", "model", "provider", "day", "tool"]))
def test_usage_from_rollups_equals_a_scan(rollup_store, start, length, by):
    d, recs = rollup_store
    f = Filter(since=T0 + start, until=T0 + start + length)
    with CaptureReader(d) as r:
        fast = r.usage(by, f)
        acc = {}
        for s in r._h and _scan_all(r, f):
            from aperture.capture.query import _add_summary
            _add_summary(acc, by, s)
    expect = {g: v[:7] for g, v in acc.items()}
    assert {row[by]: [row[k] for k in ("requests", "input_tokens", "output_tokens",
                                      "cache_read_tokens", "cache_write_tokens",
                                      "reasoning_tokens", "tool_calls")]
            for row in fast} == expect


def _scan_all(reader, f):
    with reader._h.read() as txn:
        return list(reader._scan(txn, f))


@pytest.fixture(scope="module")
def rollup_store(tmp_path_factory):
    import random
    rng = random.Random(7)
    d = tmp_path_factory.mktemp("roll")
    store = CaptureStore(str(d), durable=False, batch_linger=0)
    recs = [make_record(time=T0 + rng.uniform(-4 * 86400, 4 * 86400),
                        user=rng.choice("abc"), model=rng.choice(["m1", "m2"]),
                        usage=Usage(rng.randrange(100), rng.randrange(100), 1, 2, 3),
                        tool_calls=(ToolCall(rng.choice(["A", "B"]), ""),) * rng.randrange(3))
            for _ in range(1500)]
    for r in recs:
        store.submit(r)
    assert store.flush(30)
    store.close()
    return str(d), recs


def test_cli_reads_while_a_store_writes(tmp_path):
    store = CaptureStore(str(tmp_path), durable=False, batch_linger=0)
    try:
        for i in range(50):
            store.submit(make_record(time=time.time()))
        assert store.flush()
        res = run("--data-dir", str(tmp_path), "--format", "json", "--limit", "1000")
        assert len(json.loads(res.output)) == 50
    finally:
        store.close()


def test_a_damaged_store_is_a_clean_error(tmp_path):
    env = tmp_path / "captures.lmdb"
    env.mkdir()
    (env / "data.mdb").write_bytes(b"not an lmdb file" * 512)
    res = CliRunner().invoke(query, ["--data-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert "capture store" in res.output


def test_cli_reads_while_another_process_writes(tmp_path):
    import multiprocessing

    from . import helpers
    ctx = multiprocessing.get_context("spawn")
    data = str(tmp_path / "data")
    ack = str(tmp_path / "acks")
    # The writer starts with a tiny map and grows it while we read.
    p = ctx.Process(target=helpers.writer_process,
                    args=(data, 3, 10**9, ack, True, 64 * 1024))
    p.start()
    try:
        seen = []
        deadline = time.time() + 60
        while time.time() < deadline and (not seen or seen[-1] < 800):
            res = CliRunner().invoke(query, ["--data-dir", data, "--format", "json",
                                             "--limit", "100000"])
            assert res.exit_code == 0, res.output
            rows = json.loads(res.output)
            assert all(r["user"] == "user3" for r in rows)
            seen.append(len(rows))
            time.sleep(0.05)
        assert seen == sorted(seen) and seen[-1] >= 800
    finally:
        helpers.kill(p.pid)
        p.join(10)


def test_tables_fit_80_columns_with_long_names(tmp_path):
    store = CaptureStore(str(tmp_path), durable=False, batch_linger=0)
    long = "x" * 120
    for i in range(3):
        store.submit(make_record(user=long + "@example.com", model="model-" + long,
                                 provider="p" + long, session_hint="s" * 100 + str(i),
                                 usage=Usage(10**9, 10**10, 10**11, 10**12, 10**13),
                                 tool_calls=tuple(ToolCall(f"tool_{long}_{j}", "")
                                                  for j in range(5))))
    assert store.flush()
    store.close()
    d = str(tmp_path)
    for cmd in ([], ["sessions"]) + tuple(["usage", "--by", b] for b in
                                          ("user", "model", "provider", "day", "session",
                                           "tool")):
        res = run("--data-dir", d, *cmd)
        assert res.exit_code == 0
        lines = res.output.splitlines()
        assert len(lines) > 1 and max(len(x) for x in lines) <= 80, (cmd, res.output)
