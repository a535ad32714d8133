"""A stand-in for tailscaled's LocalAPI: `GET /localapi/v0/whois` and `/localapi/v0/status` over a unix socket.

It answers the way tailscaled does (wire-formats.md §7.1–7.2): tab-indented JSON
with Go field names for known peers, `404 no match for IP:port` for unknown
ones, `403 invalid localapi request` when the Host is not `local-tailscaled.sock`
(or empty) or a Referer/Origin header is present, `400` for a missing `addr`.

Peers are looked up by "IP:PORT" first, then by "IP" (IPv6 without brackets).
`status` is the document `/localapi/v0/status` answers (the node's
`TailscaleIPs`, `TUN`, `Self`); tests change it while the fake runs.

In a test (thread):

    fake = FakeTailscaled(path, {"127.0.0.2": user("alice@example.com")})
    with fake.running():
        ...

As a subprocess:

    python tests/fakes/tailscaled.py --socket /tmp/ts.sock --peers peers.json

where peers.json maps addresses to WhoIs documents (build them with `user()` /
`tagged()`), or to {"user": LOGIN, ...} / {"tags": [...]} shorthands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import ipaddress
import itertools
import json
import os
import signal
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import h11

_ids = itertools.count(7000000000000001)


def user(
    login: str,
    display_name: str | None = None,
    *,
    node_name: str | None = None,
    node_id: str | None = None,
    groups: list[str] | None = None,
    computed_name: bool = True,
    cap_map: dict[str, list] | None = None,
) -> dict:
    """A WhoIs document for a node owned by a user."""
    uid = next(_ids)
    host = node_name or login.split("@", 1)[0] + "-laptop"
    node: dict[str, Any] = {
        "ID": uid,
        "StableID": node_id or f"n{uid % 100000}CNTRL",
        "Name": f"{host}.example-tailnet.ts.net.",
        "User": uid + 1,
        "Key": "nodekey:" + "0f" * 32,
        "Addresses": ["100.101.102.103/32"],
        "Hostinfo": {"OS": "linux", "Hostname": host},
        "Online": True,
        "MachineAuthorized": True,
    }
    if computed_name:
        node["ComputedName"] = host
        node["ComputedNameWithHost"] = host
    profile: dict[str, Any] = {
        "ID": uid + 1,
        "LoginName": login,
        "DisplayName": display_name if display_name is not None else login.split("@", 1)[0].title(),
        "ProfilePicURL": "https://example.com/pic.png",
    }
    if groups:
        profile["Groups"] = list(groups)
    return {"Node": node, "UserProfile": profile, "CapMap": dict(cap_map or {})}


def tagged(tags: list[str], *, node_name: str = "ci-runner", node_id: str | None = None,
           cap_map: dict[str, list] | None = None) -> dict:
    """A WhoIs document for a tagged node (owned by the control plane's tagged-devices profile)."""
    uid = next(_ids)
    return {
        "Node": {
            "ID": uid,
            "StableID": node_id or f"n{uid % 100000}TAGGD",
            "Name": f"{node_name}.example-tailnet.ts.net.",
            "User": 123456,
            "Key": "nodekey:" + "1e" * 32,
            "Addresses": ["100.101.102.104/32"],
            "Hostinfo": {"OS": "linux", "Hostname": node_name},
            "Tags": list(tags),
            "ComputedName": node_name,
        },
        "UserProfile": {"ID": 123456, "LoginName": "tagged-devices", "DisplayName": "Tagged Devices"},
        "CapMap": dict(cap_map or {}),
    }


def status(ips: list[str], *, tun: bool = True, state: str = "Running") -> dict:
    """A `/localapi/v0/status` document for a node with these Tailscale addresses."""
    return {
        "Version": "1.98.10",
        "TUN": tun,
        "BackendState": state,
        "TailscaleIPs": list(ips),
        "Self": {"ID": "nGATEWAY1CNTRL", "HostName": "aperture", "DNSName": "aperture.example-tailnet.ts.net.",
                 "TailscaleIPs": list(ips), "Online": True},
        "Peer": {},
    }


def _expand(spec: Any) -> dict:
    """Shorthands accepted in a peers file."""
    if isinstance(spec, dict) and "Node" not in spec:
        if "tags" in spec:
            return tagged(spec["tags"], node_name=spec.get("node_name", "ci-runner"))
        if "user" in spec:
            return user(
                spec["user"],
                spec.get("display_name"),
                node_name=spec.get("node_name"),
                groups=spec.get("groups"),
            )
    return spec


def _unbracket(addr: str) -> tuple[str, str]:
    """"IP:PORT" or "[v6]:PORT" or "IP" -> (ip, port or "")."""
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, rest.lstrip(":")
    if addr.count(":") == 1:
        host, _, port = addr.partition(":")
        return host, port
    return addr, ""


class FakeTailscaled:
    """LocalAPI stand-in; `peers` maps "IP" or "IP:PORT" to WhoIs documents."""

    def __init__(self, socket_path: str, peers: dict[str, Any] | None = None) -> None:
        self.socket_path = socket_path
        self.peers: dict[str, dict] = {k: _expand(v) for k, v in (peers or {}).items()}
        self.status: dict = status(["100.101.102.1", "fd7a:115c:a1e0::1"])
        self.delay = 0.0  # seconds before each answer
        self.mode = "normal"  # "normal" | "garbage" (not HTTP) | "badjson" | "hang" | "status:N"
        self.requests: list[dict] = []  # {"target", "headers", "addr"} per request
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # --- answering ---

    def answer(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; no I/O."""
        host = headers.get("host", "")
        if host not in ("", "local-tailscaled.sock") or "referer" in headers or "origin" in headers:
            return 403, "text/plain; charset=utf-8", b"invalid localapi request\n"
        url = urllib.parse.urlsplit(target)
        if url.path == "/localapi/v0/status" and method == "GET":
            return 200, "application/json", json.dumps(self.status, indent="\t").encode()
        if url.path != "/localapi/v0/whois":
            return 404, "text/plain; charset=utf-8", b"404 page not found\n"
        if method != "GET":
            return 405, "text/plain; charset=utf-8", b"want GET\n"
        query = urllib.parse.parse_qs(url.query)
        addr = (query.get("addr") or [""])[0]
        if not addr:
            return 400, "text/plain; charset=utf-8", b"missing 'addr' parameter\n"
        ip, port = _unbracket(addr)
        try:
            parsed = ipaddress.ip_address(ip)
            if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
                parsed = parsed.ipv4_mapped
            ip = parsed.compressed
        except ValueError:
            return 400, "text/plain; charset=utf-8", b"invalid 'addr' parameter\n"
        doc = self.peers.get(f"{ip}:{port}") or self.peers.get(ip)
        if doc is None:
            return 404, "text/plain; charset=utf-8", b"no match for IP:port\n"
        return 200, "application/json", json.dumps(doc, indent="\t").encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is h11.IDLE:
                        return
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    continue
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                target = event.target.decode()
                self.requests.append({"target": target, "headers": headers})
                while True:  # read to the end of the request (a GET has no body)
                    rest = conn.next_event()
                    if isinstance(rest, h11.EndOfMessage):
                        break
                    if rest is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                if self.delay:
                    await asyncio.sleep(self.delay)
                mode = self.mode
                if mode == "hang":
                    await asyncio.sleep(3600)
                if mode == "garbage":
                    writer.write(b"\x00\x01 this is not HTTP\r\n\r\n")
                    await writer.drain()
                    return
                status, ctype, body = self.answer(event.method.decode(), target, headers)
                if mode == "badjson" and status == 200:
                    body = b'{"Node": {"Name": '
                elif mode.startswith("status:"):
                    status, body = int(mode[7:]), b"whois access denied\n"
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=status,
                            reason=http.HTTPStatus(status).phrase.encode(),
                            headers=[("Content-Type", ctype), ("Content-Length", str(len(body)))],
                        )
                    )
                )
                writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    # --- running ---

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(self._handle, path=self.socket_path)
        os.chmod(self.socket_path, 0o666)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeTailscaled]:
        """Serve from a background thread with its own event loop."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-tailscaled", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake tailscaled did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._thread = None
            self._loop = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tailscaled LocalAPI whois stand-in")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--peers", required=True, help="JSON file: address -> WhoIs document or shorthand")
    args = parser.parse_args(argv)
    with open(args.peers) as f:
        peers = json.load(f)
    fake = FakeTailscaled(args.socket, peers)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await fake.start()
        print(f"fake tailscaled listening on {args.socket}", flush=True)
        try:
            await stop.wait()
        finally:
            await fake.close()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
