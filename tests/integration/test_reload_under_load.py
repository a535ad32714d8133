"""Configuration reloads under load: `PUT /api/config`, an edit of the file and
SIGHUP, one after the other, while clients keep sending streaming and
non-streaming requests, and while long streams are open across each reload.

Each configuration names its one provider after its generation (gen1 ... gen4),
with a key of its own, and points it at one of two simulators in turn (A for
odd generations, B for even ones). A request's record names the provider it
was routed to; the simulator that saw it and the key it carried show the
upstream it really used. So "each request finishes on the configuration it
started with" is observable: for every request the three agree, a stream
open across a reload ends on the old generation, and a request sent after a
reload was acknowledged runs on the new one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

from .conftest import launch_gateway, serve_simulator
from .test_admin_config import get_config, put_config
from .test_capture import LOGIN, read_records, read_response, request_bytes

MODEL = "claude-sonnet-4-6"
ADMIN = "admin@example.com"


def config_text(gen: int, sim_url: str) -> str:
    doc = {"providers": {"gen%d" % gen: {
        "baseurl": sim_url, "apikey": "sk-gen%d-key" % gen, "authorization": "x-api-key",
        "models": [MODEL], "compatibility": {"anthropic_messages": True}}},
        "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [
            {"role": "admin"}, {"models": "**"}]}}]}
    return json.dumps(doc, indent=2)


class Sent:
    __slots__ = ("marker", "stream", "long", "start", "end", "status", "complete")

    def __init__(self, stream: bool, long: bool = False) -> None:
        self.marker = uuid.uuid4().hex
        self.stream = stream
        self.long = long
        self.start = self.end = 0.0
        self.status = 0
        self.complete = False


def send(port: int, sent: Sent, *, first_byte: threading.Event | None = None) -> None:
    body = json.dumps({"model": MODEL, "max_tokens": 50, "stream": sent.stream,
                       "messages": [{"role": "user", "content": sent.marker}]}).encode()
    headers = {LOGIN: "load-%s@example.com" % sent.marker}
    if sent.long:  # a stream that lasts about 1.5 s
        headers.update({"x-sim-tokens": "60", "x-sim-token-rate": "40"})
    else:
        headers["x-sim-tokens"] = "5"
    sent.start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), 30) as s:
            s.sendall(request_bytes("/v1/messages", body, headers))
            if first_byte is not None:
                s.settimeout(30)
                head = s.recv(64, socket.MSG_PEEK)  # the head (and the first event) are here
                if head:
                    first_byte.set()
            resp = read_response(s)
        sent.status, sent.complete = resp.status, resp.complete
    except OSError:
        sent.status = -1
    sent.end = time.monotonic()


def test_reloads_during_load_fail_nothing_and_keep_each_request_on_its_config(tmp_path, loop_thread):
    with serve_simulator(loop_thread, history=100_000) as sim_a, \
            serve_simulator(loop_thread, history=100_000) as sim_b:
        sims = {1: sim_a, 2: sim_b, 3: sim_a, 4: sim_b}
        gw = launch_gateway(tmp_path, config_text(1, sim_a.url), identity="serve-headers")
        path = Path(gw.config_path)
        sent: list[Sent] = []
        mutex = threading.Lock()
        stop = threading.Event()

        def load(t: int) -> None:
            n = 0
            while not stop.is_set():
                one = Sent(stream=(t + n) % 2 == 0)
                send(gw.port, one)
                with mutex:
                    sent.append(one)
                n += 1

        def long_streams(count: int = 6) -> tuple[list[Sent], list[threading.Thread]]:
            """Streams open across the next reload: started, and their first bytes in."""
            group = [Sent(stream=True, long=True) for _ in range(count)]
            seen = [threading.Event() for _ in group]
            threads = [threading.Thread(target=send, args=(gw.port, one), kwargs={"first_byte": ev},
                                        daemon=True) for one, ev in zip(group, seen)]
            for th in threads:
                th.start()
            for ev in seen:
                assert ev.wait(10)
            return group, threads

        reloads: list[tuple[float, float]] = []  # (asked, acknowledged) per reload
        across: list[list[Sent]] = []  # the long streams open across each reload
        workers = [threading.Thread(target=load, args=(t,), daemon=True) for t in range(6)]
        try:
            for th in workers:
                th.start()
            time.sleep(1.0)
            pending = []

            def reload(do, acknowledged) -> None:
                group, threads = long_streams()
                across.append(group)
                pending.extend(threads)
                asked = time.monotonic()
                do()
                deadline = time.monotonic() + 10
                while not acknowledged():
                    assert time.monotonic() < deadline, "the reload was not seen:\n" + gw.log()
                    time.sleep(0.01)
                reloads.append((asked, time.monotonic()))
                time.sleep(1.0)  # load on the new configuration

            # 1 -> 2 over the API
            def put() -> None:
                reply = put_config(gw, config_text(2, sim_b.url), get_config(gw, ADMIN)["hash"], ADMIN)
                assert reply.status == 200, reply.body

            reload(put, lambda: True)

            # 2 -> 3 by an edit of the file (the watch notices it)
            def edit() -> None:
                tmp = path.with_name(path.name + ".edit")
                tmp.write_text(config_text(3, sim_a.url))
                os.replace(tmp, path)

            reload(edit, lambda: gw.log().count("config: reloaded") == 1)

            # 3 -> 4 by SIGHUP, after an edit the watch cannot see (same inode, size, mtime)
            def sighup() -> None:
                st = os.stat(path)
                text = path.read_text()
                new = config_text(4, sim_b.url)
                new += " " * (len(text) - len(new))
                assert len(new) == len(text)
                with open(path, "r+") as f:
                    f.write(new)
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
                gw.proc.send_signal(signal.SIGHUP)

            reload(sighup, lambda: gw.log().count("config: reloaded") == 2)
        finally:
            stop.set()
            for th in workers + pending:
                th.join(30)
        try:
            # Zero failed requests.
            assert len(sent) >= 200
            failed = [(s.status, s.complete) for s in sent + sum(across, []) if (s.status, s.complete) != (200, True)]
            assert failed == []

            # Every request recorded once, on a provider whose upstream and key served it.
            by_marker = {}
            deadline = time.monotonic() + 30
            want = len(sent) + sum(map(len, across))
            while len(by_marker) < want and time.monotonic() < deadline:
                by_marker = {r["user"][len("load-"):-len("@example.com")]: r
                             for r in read_records(gw.data_dir) if r["user"].startswith("load-")}
                time.sleep(0.1)
            assert len(by_marker) == want
            seen = {}
            for sim in (sim_a, sim_b):
                for req in list(sim.sim.seen):
                    marker = json.loads(req.body)["messages"][0]["content"]
                    seen.setdefault(marker, []).append((sim.port, req.headers["x-api-key"]))

            def gen_of(one: Sent) -> int:
                row = by_marker[one.marker]
                assert row["state"] == "complete"
                gen = int(row["provider"][len("gen"):])
                assert seen[one.marker] == [(sims[gen].port, "sk-gen%d-key" % gen)]
                return gen

            # A stream open across reload k ends on the configuration before it.
            for k, group in enumerate(across, start=1):
                assert [gen_of(one) for one in group] == [k] * len(group)
            # A request sent after reload k was acknowledged runs on a newer
            # configuration; one done before reload k was asked, on an older one.
            gens = {1: 0, 2: 0, 3: 0, 4: 0}
            for one in sent:
                gen = gen_of(one)
                gens[gen] += 1
                for k, (asked, acked) in enumerate(reloads, start=1):
                    if one.start > acked:
                        assert gen > k
                    if one.end < asked:
                        assert gen <= k
            assert min(gens.values()) >= 20, gens  # load ran on every configuration
        finally:
            assert gw.stop() == 0
        assert "Traceback" not in gw.log()
