"""Capture under load, across worker processes, through SIGKILL, and with zero
retention: each test runs its own gateway on its own data directory.

To make "records only in the journal" a certain state rather than a lucky
one, some tests hold LMDB's write lock from a helper process: every worker's
writer then waits, and whatever a client receives meanwhile exists only in the
workers' journals.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import anthropic
import openai
import pytest

from aperture.capture.schema import DEFAULT_MAP_SIZE, env_path
from aperture.sim import expected_usage

from .conftest import launch_gateway
from .test_capture import (LOGIN, TOOLS_ANTHROPIC, TOOLS_OPENAI, gateway_config, get_capture,
                           last_usage_seen, post, query_json, read_records, read_response,
                           record_usage, request_bytes, sums, tokens, wait_records)

TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")


def worker_pids(gw, n: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in re.findall(r"aperture: worker (\d+) listening", gw.log())]
        if len(pids) >= n or time.monotonic() > deadline:
            assert len(pids) == n, gw.log()
            return pids
        time.sleep(0.05)


_HOLDER = r"""
import sys, lmdb
env = lmdb.open(sys.argv[1], subdir=True, max_dbs=32, map_size=int(sys.argv[2]), lock=True)
txn = env.begin(write=True)
print("locked", flush=True)
sys.stdin.readline()
txn.abort()
env.close()
"""


class WriteLock:
    """LMDB's write lock on a store, held by a helper process."""

    def __init__(self, data_dir) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, env_path(str(data_dir)),
                                      str(DEFAULT_MAP_SIZE)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None and not self.proc.stdin.closed:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.wait(10) == 0
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture(params=["thread", "process"])
def writer(request) -> str:
    """Where a worker's LMDB writing happens (CaptureStore's `writer`)."""
    return request.param


def writer_env(writer: str) -> dict:
    return {"APERTURE_CAPTURE_WRITER": writer}


# ---------------------------------------------------------------------------
# 1. Several workers under concurrent load


KINDS = 8


def one_request(kind: int, n: int, claude, gpt) -> tuple[str, dict, dict, int]:
    """Send request `n` of `kind`; returns (api, request, usage the client got, x-sim-tokens)."""
    length = 3 + n % 17
    sim = {"x-sim-tokens": str(length)}
    text = "load request %d of kind %d" % (n, kind) + (" use the tool" if kind in (3, 6) else "")
    messages = [{"role": "user", "content": text}]
    if kind < 4:
        req = {"model": "claude-haiku-4-5" if n % 2 else "claude-sonnet-4-6",
               "max_tokens": 64, "messages": messages}
        if kind in (2, 3):
            req["system"] = [{"type": "text", "text": "cached system prompt " * 8,
                              "cache_control": {"type": "ephemeral"}}]
        if kind == 3:  # a system prompt: the simulator calls a tool when the choice says so
            req["tools"] = TOOLS_ANTHROPIC
            req["tool_choice"] = {"type": "any"}
        if kind in (1, 3):
            with claude.messages.stream(**req, extra_headers=sim) as s:
                got = s.get_final_message().usage.model_dump()
            req["stream"] = True
        else:
            got = claude.messages.create(**req, extra_headers=sim).usage.model_dump()
        return "anthropic", req, got, length
    req = {"model": "gpt-5.4" if n % 2 else "gpt-5.4-mini", "messages": messages}
    if kind == 4:
        req["prompt_cache_key"] = "load-cache"
    if kind in (5, 6):
        req["reasoning_effort"] = "medium"
    if kind == 6:
        req["tools"] = TOOLS_OPENAI
    if kind in (5, 7):
        req.update(stream=True, stream_options={"include_usage": True})
        chunks = list(gpt.chat.completions.create(**req, extra_headers=sim))
        got = chunks[-1].usage.model_dump()
    else:
        got = gpt.chat.completions.create(**req, extra_headers=sim).usage.model_dump()
    return "openai", req, got, length


def test_record_count_and_token_sums_under_load(tmp_path, simulator, writer):
    gw = launch_gateway(tmp_path, gateway_config(simulator.url), "--workers", "2",
                        identity="serve-headers", env=writer_env(writer))
    try:
        worker_pids(gw, 2)
        threads, per_thread = 6, 48
        expected: dict[str, dict] = {}
        errors: list[BaseException] = []

        def run(t: int) -> None:
            user = "load%d@example.com" % t
            acc = dict.fromkeys(TOKEN_KEYS, 0)
            acc["requests"] = 0
            try:
                with anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0,
                                         default_headers={LOGIN: user}) as claude, \
                        openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0,
                                      default_headers={LOGIN: user}) as gpt:
                    for i in range(per_thread):
                        api, req, got, length = one_request((t + i) % KINDS, i, claude, gpt)
                        want = record_usage(api, expected_usage(api, req, length))
                        assert record_usage(api, got) == want  # the simulator's own rule
                        for k in TOKEN_KEYS:
                            acc[k] += want[k]
                        acc["requests"] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            expected[user] = acc

        workers = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        assert not errors, errors[:3]
        total = threads * per_thread
        rows = wait_records(gw.data_dir, total, timeout=20)
        assert len(rows) == total
        assert all(r["state"] == "complete" and r["status"] == 200 for r in rows)
        streamed = [r for r in rows if r["stream"]]
        assert len(streamed) == sum(1 for t in range(threads) for i in range(per_thread)
                                    if (t + i) % KINDS in (1, 3, 5, 7))
        assert all(r["ttfb_ms"] is not None and r["ttfb_ms"] <= r["duration_ms"]
                   for r in streamed)
        want_all = {k: sum(e[k] for e in expected.values()) for k in TOKEN_KEYS}
        assert sums(rows) == want_all
        assert all(want_all[k] > 0 for k in TOKEN_KEYS)  # every kind of token was exercised
        assert sum(len(r["tool_calls"]) for r in rows) == sum(
            1 for t in range(threads) for i in range(per_thread) if (t + i) % KINDS in (3, 6))
        # Per user, from the rollups the CLI reads.
        by_user = {r["user"]: r for r in query_json(gw.data_dir, "usage", "--by", "user")}
        assert set(by_user) == set(expected)
        for user, acc in expected.items():
            assert {k: by_user[user][k] for k in acc} == acc
        by_model = query_json(gw.data_dir, "usage", "--by", "model")
        assert sum(r["requests"] for r in by_model) == total
        assert gw.stop() == 0
        # After a clean stop: still exactly one record per request, nothing left over.
        assert len(read_records(gw.data_dir)) == total
        assert not list((gw.data_dir / "journal").glob("*.jnl"))
    finally:
        gw.stop()


# ---------------------------------------------------------------------------
# 2. SIGKILL of workers mid-load


def kill_load_request(port: int, user: str, kind: int) -> tuple[bool, dict | None]:
    """One request on a new connection: (complete, usage the client can read)."""
    if kind == 0:
        body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
                "messages": [{"role": "user", "content": "stream for " + user}]}
        headers = {"x-sim-tokens": "12", "x-sim-token-rate": "400"}
        path, api = "/v1/messages", "anthropic"
    elif kind == 1:
        body = {"model": "claude-haiku-4-5", "max_tokens": 64,
                "messages": [{"role": "user", "content": "json for " + user}]}
        headers, path, api = {}, "/v1/messages", "anthropic"
    elif kind == 2:
        body = {"model": "gpt-5.4", "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "stream for " + user}]}
        headers = {"x-sim-tokens": "10", "x-sim-token-rate": "400"}
        path, api = "/v1/chat/completions", "openai"
    else:
        body = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "json " + user}]}
        headers, path, api = {}, "/v1/chat/completions", "openai"
    try:
        resp = post(port, path, body, {LOGIN: user, **headers}, timeout=10)
    except OSError:
        return False, None
    if resp.status != 200 or not resp.complete:
        return False, None
    usage = last_usage_seen(api, resp.body) if body.get("stream") else \
        record_usage(api, resp.json()["usage"])
    return True, usage


def test_sigkilled_workers_lose_no_completed_exchange(tmp_path, simulator, writer):
    config = gateway_config(simulator.url)
    gw = launch_gateway(tmp_path, config, "--workers", "3", identity="serve-headers",
                        env=writer_env(writer))
    lock = None
    stop = threading.Event()
    try:
        pids = worker_pids(gw, 3)
        done: dict[str, dict] = {}  # user -> usage, for every complete response
        attempted = [0]
        mutex = threading.Lock()

        def run(t: int) -> None:
            n = 0
            while not stop.is_set():
                user = "kill-%d-%d@example.com" % (t, n)
                with mutex:
                    attempted[0] += 1
                ok, usage = kill_load_request(gw.port, user, (t + n) % 4)
                if ok:
                    with mutex:
                        done[user] = usage
                n += 1

        def wait_done(more: int, timeout: float = 20.0) -> None:
            target = len(done) + more
            deadline = time.monotonic() + timeout
            while len(done) < target:
                assert time.monotonic() < deadline, "load stalled at %d responses" % len(done)
                time.sleep(0.01)

        load = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(6)]
        for th in load:
            th.start()
        wait_done(30)
        # Writers blocked: what completes now lives only in the journals.
        lock = WriteLock(gw.data_dir)
        wait_done(40)
        os.kill(pids[0], signal.SIGKILL)
        wait_done(20)
        lock.release()
        wait_done(20)
        os.kill(pids[1], signal.SIGKILL)  # wherever its writer happens to be
        wait_done(30)
        stop.set()
        for th in load:
            th.join(30)
        gw.stop()
        first_log = gw.log()

        # The gateway again, on the same data directory: journals are replayed.
        gw2 = launch_gateway(tmp_path, config, identity="serve-headers", env=writer_env(writer))
        try:
            deadline = time.monotonic() + 20
            while True:
                rows = {r["user"]: r for r in read_records(gw.data_dir)}
                missing = set(done) - set(rows)
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert not missing, "%d completed exchanges lost, e.g. %s" % (
                len(missing), sorted(missing)[:5])
            for user, usage in done.items():
                row = rows[user]
                assert row["state"] == "complete" and row["status"] == 200, row
                assert tokens(row) == usage, row
            assert len(rows) <= attempted[0]
            # The journal path was exercised (with the process writer it always
            # is), and the store reads through the CLI.
            if writer == "thread":
                assert "replayed" in first_log + gw2.log()
            listed = query_json(gw.data_dir, "--limit", "100000")
            assert len(listed) == len(rows) and len({r["id"] for r in listed}) == len(listed)
            by_model = query_json(gw.data_dir, "usage", "--by", "model")
            assert sum(r["requests"] for r in by_model) == len(rows)
            assert sum(s["requests"] for s in query_json(gw.data_dir, "sessions", "--limit",
                                                         "100000")) == len(rows)
            some = next(iter(done))
            assert get_capture(gw.data_dir, rows[some]["id"])["request_body"]
        finally:
            gw2.stop()
    finally:
        stop.set()
        if lock is not None:
            lock.release()
        gw.stop()


# ---------------------------------------------------------------------------
# 6b. Session grouping when consecutive turns land on different workers


def _socket_inode(server_port: int, client_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote = int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16)
            if local == server_port and remote == client_port:
                return f[9]
    return None


def owner_of(sock, server_port: int, pids: list[int]) -> int | None:
    """The worker that accepted this client connection."""
    inode = _socket_inode(server_port, sock.getsockname()[1])
    for pid in pids:
        for fd in Path("/proc/%d/fd" % pid).iterdir():
            try:
                if os.readlink(fd) == "socket:[%s]" % inode:
                    return pid
            except OSError:
                pass
    return None


def keepalive_post(sock, path: str, body: dict, headers: dict):
    data = request_bytes(path, json.dumps(body).encode(), headers)
    sock.sendall(data.replace(b"Connection: close\r\n", b""))
    return read_response(sock)


def test_turns_on_different_workers_join_one_session(tmp_path, simulator):
    """A client's next turn may reach another worker, whose writer commits
    before the first worker's: the conversation must still be one session."""
    import socket

    gw = launch_gateway(tmp_path, gateway_config(simulator.url), "--workers", "2",
                        identity="serve-headers", env=writer_env("thread"))
    lock = None
    stopped = None
    conns: dict[int, socket.socket] = {}
    spare: list[socket.socket] = []
    try:
        pids = worker_pids(gw, 2)
        deadline = time.monotonic() + 10
        while len(conns) < 2 and time.monotonic() < deadline:
            s = socket.create_connection(("127.0.0.1", gw.port), 10)
            time.sleep(0.02)
            pid = owner_of(s, gw.port, pids)
            if pid is not None and pid not in conns:
                conns[pid] = s
            else:
                spare.append(s)
        assert len(conns) == 2, "could not reach both workers"
        a, b = pids
        user = "race-%s@example.com" % uuid.uuid4().hex[:8]
        h = {LOGIN: user}
        turn1 = {"model": "gpt-5.4-mini",
                 "messages": [{"role": "user", "content": "first turn of a conversation"}]}
        lock = WriteLock(gw.data_dir)
        r1 = keepalive_post(conns[a], "/v1/chat/completions", turn1, h)
        assert r1.status == 200 and r1.complete
        os.kill(a, signal.SIGSTOP)  # worker a's writer falls behind
        stopped = a
        answer = r1.json()["choices"][0]["message"]
        turn2 = {"model": "gpt-5.4-mini", "messages": turn1["messages"] + [
            {"role": "assistant", "content": answer["content"]},
            {"role": "user", "content": "second turn"}]}
        r2 = keepalive_post(conns[b], "/v1/chat/completions", turn2, h)
        assert r2.status == 200 and r2.complete
        lock.release()
        assert len(wait_records(gw.data_dir, 1, user=user)) == 1  # turn 2, from worker b
        os.kill(a, signal.SIGCONT)
        stopped = None
        rows = wait_records(gw.data_dir, 2, user=user)
        assert len(rows) == 2
        assert rows[0]["session"] == rows[1]["session"], \
            "one conversation split into two sessions by the order of the writers"
    finally:
        for s in list(conns.values()) + spare:
            s.close()
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        if lock is not None:
            lock.release()
        gw.stop()


# ---------------------------------------------------------------------------
# 8. Retention "0": usage yes, bodies never


def test_zero_retention_keeps_usage_and_no_bodies(tmp_path, simulator, writer):
    config = gateway_config(simulator.url, database={"retention": {"duration": "0"}})
    gw = launch_gateway(tmp_path, config, identity="serve-headers", env=writer_env(writer))
    try:
        user = "noretain@example.com"
        marker = "MARKER" + uuid.uuid4().hex
        with anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0,
                                 default_headers={LOGIN: user}) as claude, \
                openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0,
                              default_headers={LOGIN: user}) as gpt:
            messages = [{"role": "user", "content": "remember " + marker}]
            m1 = claude.messages.create(model="claude-sonnet-4-6", max_tokens=32,
                                        messages=messages)
            messages += [{"role": "assistant", "content": m1.content[0].text},
                         {"role": "user", "content": "use the tool " + marker}]
            with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=32,
                                        tools=TOOLS_ANTHROPIC, messages=messages) as s:
                m2 = s.get_final_message()
            chunks = list(gpt.chat.completions.create(
                model="gpt-5.4", stream=True, stream_options={"include_usage": True},
                reasoning_effort="low",
                messages=[{"role": "user", "content": "stream " + marker}]))
        rows = wait_records(gw.data_dir, 3, user=user)
        assert len(rows) == 3
        rows.reverse()
        assert tokens(rows[0]) == record_usage("anthropic", m1.usage.model_dump())
        assert tokens(rows[1]) == record_usage("anthropic", m2.usage.model_dump())
        assert tokens(rows[2]) == record_usage("openai", chunks[-1].usage.model_dump())
        assert [t["name"] for t in rows[1]["tool_calls"]] == ["check_stock"]
        for row in rows:
            cap = get_capture(gw.data_dir, row["id"])
            assert cap["request_body"] is None and cap["response_body"] is None
        [by_tool] = query_json(gw.data_dir, "usage", "--by", "tool")
        assert by_tool["tool"] == "check_stock" and by_tool["tool_calls"] == 1
        text = subprocess.run([sys.executable, "-m", "aperture", "query", "show", rows[0]["id"],
                               "--data-dir", str(gw.data_dir)], capture_output=True, text=True)
        assert text.returncode == 0 and "not kept" in text.stdout and marker not in text.stdout
        # Not written anywhere: neither in LMDB nor in a journal.
        for path in Path(gw.data_dir).rglob("*"):
            if path.is_file():
                assert marker.encode() not in path.read_bytes(), path
    finally:
        gw.stop()
    for path in Path(gw.data_dir).rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path
    # The two Anthropic turns are one conversation, bodies kept or not.
    assert rows[0]["session"] == rows[1]["session"], \
        "with retention 0, conversation grouping is lost when a record goes through the journal"


# ---------------------------------------------------------------------------
# Who: login, node and tags from tailscaled's WhoIs


def test_records_carry_the_callers_node_and_tags(tmp_path, simulator):
    import shutil
    import socket
    import tempfile

    from tests.fakes.tailscaled import FakeTailscaled, tagged, user

    alice, ci = "127.0.0.2", "127.0.0.4"
    peers = {alice: user("alice@example.com", node_name="alice-laptop", node_id="nALICE1CNTRL"),
             ci: tagged(["tag:ci", "tag:build"], node_name="ci-runner", node_id="nCI1TAGGD")}
    short = tempfile.mkdtemp(prefix="ts-", dir="/tmp")
    try:
        with FakeTailscaled(str(Path(short) / "ts.sock"), peers).running() as fake:
            gw = launch_gateway(tmp_path, gateway_config(simulator.url),
                                "--tailscaled-socket", fake.socket_path, identity="tailscale")
            try:
                for source in (alice, ci):
                    body = json.dumps({"model": "gpt-5.4-mini", "messages": [
                        {"role": "user", "content": "from " + source}]}).encode()
                    with socket.create_connection(("127.0.0.1", gw.port), 10,
                                                  source_address=(source, 0)) as s:
                        s.sendall(request_bytes("/v1/chat/completions", body, {}))
                        assert read_response(s).status == 200
                rows = {r["node"]: r for r in wait_records(gw.data_dir, 2)}
            finally:
                gw.stop()
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert set(rows) == {"alice-laptop", "ci-runner"}
    a, c = rows["alice-laptop"], rows["ci-runner"]
    assert a["user"] == "alice@example.com" and a["tags"] == []
    assert sorted(c["tags"]) == ["tag:build", "tag:ci"] and c["user"] == "tag:ci,tag:build"
    assert get_capture(gw.data_dir, a["id"])["node_id"] == "nALICE1CNTRL"
    assert get_capture(gw.data_dir, c["id"])["node_id"] == "nCI1TAGGD"
    assert [r["user"] for r in query_json(gw.data_dir, "--user", "alice@example.com")] == \
        ["alice@example.com"]
