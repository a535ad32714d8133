"""The floor under aperture's request path: what the cheapest possible gateway
built on the same parts costs on this machine.

    python tools/bench_floor.py [--duration 5] [--repeat 3]

Two bare forwarders run beside aperture, nginx and the provider simulator
served directly. Each forwarder is an asyncio protocol on uvloop that parses
client requests with httptools (as aperture does), swaps the credential header,
sends the request upstream on a pooled keep-alive connection and copies the
answer back. They do nothing else: no identity, grants, routing, metering,
capture or timeouts. They differ only in how they speak to the upstream:

- `floor-h11`: an h11 client connection, used as aperture uses it (h11 writes
  the request and parses the response);
- `floor-httptools`: the request written by hand and the response parsed with
  httptools' llhttp parser.

Whatever a forwarder costs, aperture cannot cost less with the same upstream
HTTP layer. The figures show how much of the performance budget (DESIGN.md:
>= 0.5 x nginx requests/s at 32 connections, <= 150 us added p50 latency at 1
connection) each upstream HTTP layer leaves for aperture's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway as bg  # noqa: E402

_DROP = {b"host", b"connection", b"keep-alive", b"x-api-key", b"authorization",
         b"content-length", b"transfer-encoding"}
_DROP_BACK = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}


# ---------------------------------------------------------------------------
# The forwarders (run in a child process: `bench_floor.py --serve ...`)


def serve(port: int, upstream_port: int, mode: str) -> None:
    import h11
    import httptools
    import uvloop

    host = b"127.0.0.1:%d" % upstream_port
    pool: deque = deque()

    class Upstream(asyncio.Protocol):
        def __init__(self) -> None:
            self.client = None
            self.transport = None
            if mode == "h11":
                self.conn = h11.Connection(h11.CLIENT)
            else:
                self.parser = httptools.HttpResponseParser(self)

        def connection_made(self, transport) -> None:
            self.transport = transport

        def connection_lost(self, exc) -> None:
            if self in pool:
                pool.remove(self)
            if self.client is not None:
                self.client.upstream_failed()

        def send(self, client, method: bytes, target: bytes, headers: list, body: bytes) -> None:
            self.client = client
            if mode == "h11":
                c = self.conn
                # As in aperture: `_parsed=True` skips h11's per-header
                # validation (llhttp validated the client's headers).
                data = c.send(h11.Request(method=method, target=target, headers=headers,
                                          _parsed=True))
                data += c.send(h11.Data(data=body)) + c.send(h11.EndOfMessage())
            else:
                data = b"".join([b"%s %s HTTP/1.1\r\n" % (method, target)]
                                + [b"%s: %s\r\n" % kv for kv in headers] + [b"\r\n", body])
            self.transport.write(data)

        def data_received(self, data: bytes) -> None:
            if mode != "h11":
                self.parser.feed_data(data)
                return
            c = self.conn
            c.receive_data(data)
            while True:
                event = c.next_event()
                kind = type(event)
                if kind is h11.Response:
                    self.status, self.headers, self.body = event.status_code, event.headers, []
                elif kind is h11.Data:
                    self.body.append(event.data)
                elif kind is h11.EndOfMessage:
                    c.start_next_cycle()
                    self.done()
                    return
                else:
                    return

        # httptools callbacks
        def on_message_begin(self) -> None:
            self.headers, self.body = [], []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_body(self, data: bytes) -> None:
            self.body.append(data)

        def on_message_complete(self) -> None:
            self.status = self.parser.get_status_code()
            self.done()

        def done(self) -> None:
            client, self.client = self.client, None
            pool.append(self)
            client.respond(self.status, self.headers, b"".join(self.body))

    class Client(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_begin(self) -> None:
            self.headers, self.body = [], []

        def on_url(self, url: bytes) -> None:
            self.target = url

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() not in _DROP:
                self.headers.append((name, value))

        def on_body(self, data: bytes) -> None:
            self.body.append(data)

        def on_message_complete(self) -> None:
            body = b"".join(self.body)
            headers = self.headers + [(b"host", host), (b"x-api-key", b"sim-key"),
                                      (b"content-length", b"%d" % len(body))]
            method = self.parser.get_method()
            if pool:
                pool.pop().send(self, method, self.target, headers, body)
            else:
                asyncio.ensure_future(self.connect(method, headers, body))

        async def connect(self, method: bytes, headers: list, body: bytes) -> None:
            try:
                _, up = await asyncio.get_running_loop().create_connection(
                    Upstream, "127.0.0.1", upstream_port)
            except OSError:
                self.upstream_failed()
                return
            up.send(self, method, self.target, headers, body)

        def respond(self, status: int, headers, body: bytes) -> None:
            if self.transport.is_closing():
                return
            out = [b"HTTP/1.1 %d OK\r\n" % status]
            out += [b"%s: %s\r\n" % (n, v) for n, v in headers if n.lower() not in _DROP_BACK]
            out.append(b"content-length: %d\r\n\r\n" % len(body))
            out.append(body)
            self.transport.write(b"".join(out))

        def upstream_failed(self) -> None:
            self.transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            Client, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    uvloop.run(main())


# ---------------------------------------------------------------------------
# The benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all targets (median)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "UPSTREAM_PORT", "MODE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), int(args.serve[1]), args.serve[2])
        return
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if shutil.which("wrk") is None or not Path(nginx_bin).exists():
        raise SystemExit("wrk and nginx are needed: apt-get install wrk nginx-light")

    tmp = Path(tempfile.mkdtemp(prefix="aperture-floor-"))
    script = tmp / "post.lua"
    script.write_text(bg.LUA)
    aperture = [sys.executable, "-m", "aperture.cli"]
    sim_port, ap_port, ng_port, h11_port, ht_port = (bg.free_port() for _ in range(5))
    config = bg.write_configs(tmp, sim_port, ng_port)

    procs = []
    try:
        procs.append(bg.start(aperture + ["simulate", "--listen", "127.0.0.1:%d" % sim_port],
                              tmp / "sim.log"))
        procs.append(bg.start(aperture + ["serve", "--config", str(config), "--identity",
                                          "dev:bench@example.com", "--log-level", "warning",
                                          "--listen", "127.0.0.1:%d" % ap_port, "--no-capture"],
                              tmp / "ap.log"))
        procs.append(bg.start([nginx_bin, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                              tmp / "nginx.log"))
        for port, mode in ((h11_port, "h11"), (ht_port, "httptools")):
            procs.append(bg.start([sys.executable, __file__, "--serve", str(port), str(sim_port), mode],
                                  tmp / ("floor-%s.log" % mode)))
        for port in (sim_port, ap_port, ng_port, h11_port, ht_port):
            bg.wait_port(port)
        targets = {name: "http://127.0.0.1:%d/v1/messages" % port for name, port in (
            ("direct", sim_port), ("floor-httptools", ht_port), ("floor-h11", h11_port),
            ("aperture", ap_port), ("nginx", ng_port))}
        for url in targets.values():
            bg.run_wrk(url, 8, 2, script)  # warm-up
        c = "c%d" % args.connections
        runs = {name: {c: [], "c1": []} for name in targets}
        for _ in range(args.repeat):
            for name, url in targets.items():
                runs[name][c].append(bg.run_wrk(url, args.connections, args.duration, script))
                runs[name]["c1"].append(bg.run_wrk(url, 1, args.duration, script))
        results = {name: {k: bg.median_run(v) for k, v in r.items()} for name, r in runs.items()}
    finally:
        for p in procs:
            bg.stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    nginx_rps = results["nginx"][c]["rps"]
    direct_p50 = results["direct"]["c1"]["p50_us"]
    print("\n%-16s %10s %10s %10s %12s" % ("target", "req/s@%d" % args.connections, "x nginx",
                                           "p50@1", "added p50"))
    for name, r in results.items():
        bad = r[c]["non2xx"] + r["c1"]["non2xx"]
        print("%-16s %10.0f %10.2f %8.0fus %+10.0fus%s" % (
            name, r[c]["rps"], r[c]["rps"] / nginx_rps, r["c1"]["p50_us"],
            r["c1"]["p50_us"] - direct_p50, "  (%d non-2xx)" % bad if bad else ""))
    print("\nbudget: >= 0.50 x nginx at %d connections; <= +150us added p50 at 1 connection"
          % args.connections)


if __name__ == "__main__":
    main()
