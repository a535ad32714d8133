"""A real tailnet on one machine: headscale, tailscaled nodes, and clients that speak through them.

`Tailnet` starts, in the given network (aperture's tests use a private network
namespace, tests/tailnet/netns.py):

* headscale with sqlite, its embedded DERP and STUN on 127.0.0.1 and no other
  DERP map, MagicDNS with `override_local_dns: false`, and a policy file;
* one tailscaled per node in userspace networking (`--tun=userspace-networking`,
  a state directory, a LocalAPI socket, `--port=0`, a SOCKS5 proxy on
  127.0.0.1), with plain-HTTP DERP and no port mapping, joined with
  `tailscale up --login-server=... --authkey=...` (a tagged node with a
  pre-auth key made with `--tags`).

`Client` is one TCP connection from a node to an address on the tailnet through
that node's SOCKS5 proxy (or a plain local connection), speaking HTTP/1.1 with
h11 and keeping the connection alive between requests.

Every process is started with its PID recorded; `close()` stops them by PID,
children first, and `leftovers()` lists any process still running that was
started for this tailnet.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11
import psutil

from tests.integration.conftest import Reply
from tests.tailnet.netns import Loopback, Netns

TS_ENV = {
    "TS_DEBUG_USE_DERP_HTTP": "1",  # the embedded DERP speaks plain HTTP here
    "TS_ASSUME_NETWORK_UP_FOR_TEST": "1",  # only loopback: not "offline"
    "TS_DISABLE_PORTMAPPER": "1",
    "TS_PANIC_IF_HIT_MAIN_CONTROL": "1",  # never Tailscale's own control server
}


class TailnetError(RuntimeError):
    pass


@dataclass
class Node:
    name: str
    dir: Path
    socket: str
    socks_port: int
    proc: subprocess.Popen | None = None
    status: dict = field(default_factory=dict)
    tun: str | None = None

    @property
    def ipv4(self) -> str:
        return next(ip for ip in self.status["TailscaleIPs"] if ":" not in ip)

    @property
    def ipv6(self) -> str:
        return next(ip for ip in self.status["TailscaleIPs"] if ":" in ip)

    @property
    def stable_id(self) -> str:
        return self.status["Self"]["ID"]


class Client:
    """One connection, kept alive between requests."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    def request(self, method: str, path: str, body: bytes | dict | None = None,
                headers: list[tuple[str, str]] = ()) -> Reply:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = [("content-type", "application/json"), *headers]
        hdrs = [("host", self.host), *headers]
        if body is not None:
            hdrs.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=path, headers=hdrs))
        if body is not None:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        self.sock.sendall(data)
        status, rheaders, chunks = 0, {}, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                rheaders = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return Reply(status, rheaders, b"".join(chunks))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def socks5_connect(sock: socket.socket, ip: str, port: int) -> None:
    """The SOCKS5 handshake (RFC 1928, no authentication) for a CONNECT to ip:port."""
    sock.sendall(b"\x05\x01\x00")
    if _recv_exactly(sock, 2) != b"\x05\x00":
        raise TailnetError("SOCKS5 proxy refused the no-authentication method")
    packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    atyp = b"\x04" if ":" in ip else b"\x01"
    sock.sendall(b"\x05\x01\x00" + atyp + packed + struct.pack(">H", port))
    head = _recv_exactly(sock, 4)
    if head[1] != 0:
        raise TailnetError("SOCKS5 CONNECT to %s:%d failed with reply %d" % (ip, port, head[1]))
    _recv_exactly(sock, {1: 4, 4: 16}.get(head[3], 0) + 2)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise TailnetError("connection closed during the SOCKS5 handshake")
        data += chunk
    return data


class Tailnet:
    def __init__(self, network: Netns | Loopback, workdir: Path, binaries: dict[str, Path],
                 policy: dict) -> None:
        self.net = network
        self.dir = workdir
        self.bin = binaries
        self.policy = policy
        self.procs: list[subprocess.Popen] = []
        self.nodes: dict[str, Node] = {}
        self.hs_port = network.port()
        self.hs_dir = workdir / "headscale"
        self.hs_dir.mkdir()
        self.hs_socket = str(self.hs_dir / "hs.sock")

    # --- processes --------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.dir / (name + ".log"), "ab")
        try:
            proc = self.net.spawn([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                  cwd=cwd or self.dir, start_new_session=True)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], env: dict | None = None, timeout: float = 60) -> str:
        """Run a command to its end (in the network); its stdout, or TailnetError."""
        proc = self.net.spawn([str(a) for a in argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              env={**os.environ, **(env or {})}, cwd=self.dir)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise TailnetError("%s timed out: %s" % (" ".join(map(str, argv)), err.decode()[-2000:]))
        if proc.returncode != 0:
            raise TailnetError("%s failed (%d): %s" % (" ".join(map(str, argv)), proc.returncode,
                                                     (err or out).decode()[-2000:]))
        return out.decode()

    def log(self, name: str) -> str:
        path = self.dir / (name + ".log")
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Stop every process started here by PID, newest first, with its children."""
        for proc in reversed(self.procs):
            if proc.poll() is not None:
                continue
            try:
                children = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for child in children:
                try:
                    child.wait(5)
                except psutil.TimeoutExpired:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
        self.net.close()

    def leftovers(self) -> list[str]:
        """Processes still running that belong to this tailnet (by PID or by its directory)."""
        pids = {p.pid for p in self.procs}
        if getattr(self.net, "holder_pid", None):
            pids.add(self.net.holder_pid)
        out = []
        mark = str(self.dir)
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if p.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                cmd = " ".join(p.info["cmdline"] or ())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if p.info["pid"] in pids or mark in cmd:
                out.append("%d %s" % (p.info["pid"], cmd[:200]))
        return out

    # --- headscale ---------------------------------------------------------------

    def headscale_config(self) -> dict:
        d = self.hs_dir
        return {
            "server_url": "http://127.0.0.1:%d" % self.hs_port,
            "listen_addr": "127.0.0.1:%d" % self.hs_port,
            "metrics_listen_addr": "127.0.0.1:%d" % self.net.port(),
            "grpc_listen_addr": "127.0.0.1:%d" % self.net.port(),
            "grpc_allow_insecure": False,
            "noise": {"private_key_path": str(d / "noise_private.key")},
            "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48",
                         "allocation": "sequential"},
            "derp": {
                "server": {"enabled": True, "region_id": 999, "region_code": "test",
                           "region_name": "test DERP on loopback", "verify_clients": True,
                           "stun_listen_addr": "127.0.0.1:%d" % self.net.port(),
                           "private_key_path": str(d / "derp_server_private.key"),
                           "automatically_add_embedded_derp_region": True,
                           "ipv4": "127.0.0.1"},
                "urls": [], "paths": [], "auto_update_enabled": False,
                "update_frequency": "24h",
            },
            "disable_check_updates": True,
            "ephemeral_node_inactivity_timeout": "30m",
            "database": {"type": "sqlite",
                         "sqlite": {"path": str(d / "db.sqlite"), "write_ahead_log": True}},
            "log": {"level": "info", "format": "text"},
            "policy": {"mode": "file", "path": str(d / "policy.json")},
            "dns": {"magic_dns": True, "base_domain": "tailnet.test", "override_local_dns": False,
                    "nameservers": {"global": [], "split": {}}, "search_domains": [],
                    "extra_records": []},
            "unix_socket": self.hs_socket,
            "unix_socket_permission": "0770",
            "logtail": {"enabled": False},
            "taildrop": {"enabled": False},
        }

    def headscale(self, *args: str) -> str:
        return self.run([self.bin["headscale"], "--config", self.hs_dir / "config.yaml", *args])

    def start_headscale(self) -> None:
        (self.hs_dir / "policy.json").write_text(json.dumps(self.policy, indent=2))
        # JSON is YAML: headscale reads it as its config file.
        (self.hs_dir / "config.yaml").write_text(json.dumps(self.headscale_config(), indent=2))
        proc = self.spawn("headscale", [self.bin["headscale"], "--config",
                                        self.hs_dir / "config.yaml", "serve"])
        self._wait(lambda: os.path.exists(self.hs_socket) and self._port_open(self.hs_port),
                   "headscale to listen", proc, "headscale")

    def create_user(self, name: str, email: str, display_name: str) -> int:
        out = self.headscale("users", "create", name, "--email", email, "--display-name",
                             display_name, "-o", "json")
        return int(json.loads(out)["id"])

    def preauth_key(self, *, user: int | None = None, tags: list[str] = ()) -> str:
        args = ["preauthkeys", "create", "--expiration", "1h", "-o", "json"]
        if user is not None:
            args += ["--user", str(user)]
        if tags:
            args += ["--tags", ",".join(tags)]
        return json.loads(self.headscale(*args))["key"]

    # --- nodes -------------------------------------------------------------------

    def start_node(self, name: str, tun: str | None = None) -> Node:
        """tailscaled for a node: userspace networking, or with a TUN device named `tun`
        (kernel networking: root in the network namespace, /dev/net/tun)."""
        d = self.dir / ("node-" + name)
        (d / "logs").mkdir(parents=True)  # must exist, or tailscaled logs to /var/lib/tailscale
        node = Node(name=name, dir=d, socket=str(d / "ts.sock"), socks_port=self.net.port(),
                    tun=tun)
        env = {**TS_ENV, "TS_LOGS_DIR": str(d / "logs"),
               "TS_NETCHECK_GENERATE_204_URL": "http://127.0.0.1:%d/generate_204" % self.hs_port}
        node.proc = self.spawn("tailscaled-" + name, [
            self.bin["tailscaled"], "--tun=%s" % (tun or "userspace-networking"),
            "--statedir=%s" % (d / "state"),
            "--socket=%s" % node.socket, "--port=0",
            "--socks5-server=127.0.0.1:%d" % node.socks_port, "--no-logs-no-support"], env=env)
        self.nodes[name] = node
        return node

    def join(self, joins: dict[str, str]) -> None:
        """`tailscale up` on each node named in `joins` (name -> auth key), all at once."""
        for name in joins:
            node = self.nodes[name]
            self._wait(lambda: os.path.exists(node.socket), "tailscaled %s to start" % name,
                       node.proc, "tailscaled-" + name)
        ups = {name: self.net.spawn([str(self.bin["tailscale"]), "--socket", self.nodes[name].socket,
                                     "up", "--login-server", "http://127.0.0.1:%d" % self.hs_port,
                                     "--authkey", key, "--hostname", name, "--accept-dns=false",
                                     "--timeout", "60s"]
                                    # kernel networking: routes only, no firewall rules
                                    + (["--netfilter-mode=off"] if self.nodes[name].tun else []),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.dir)
               for name, key in joins.items()}
        failed = []
        for name, proc in ups.items():
            try:
                out, _ = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                failed.append("%s: %s" % (name, out.decode(errors="replace")[-2000:]))
        if failed:
            raise TailnetError("tailscale up failed on " + "\n".join(failed))

    def node_status(self, node: Node) -> dict:
        node.status = json.loads(self.run([self.bin["tailscale"], "--socket", node.socket,
                                           "status", "--json"]))
        return node.status

    def wait_running(self, node: Node, peers: int) -> None:
        def ready() -> bool:
            st = self.node_status(node)
            online = [p for p in (st.get("Peer") or {}).values() if p.get("Online")]
            return st.get("BackendState") == "Running" and bool(st.get("TailscaleIPs")) \
                and len(online) >= peers
        self._wait(ready, "node %s to run and see %d peers online" % (node.name, peers),
                   node.proc, "tailscaled-" + node.name, timeout=60)

    # --- reaching the tailnet ------------------------------------------------------

    def via(self, node: Node, ip: str, port: int, timeout: float = 20.0) -> Client:
        """A connection from `node` to ip:port over the tailnet (the node's SOCKS5 proxy)."""
        sock = self.net.connect("127.0.0.1", node.socks_port, timeout=timeout)
        try:
            socks5_connect(sock, ip, port)
        except BaseException:
            sock.close()
            raise
        return Client(sock, ip)

    def local(self, port: int, host: str = "127.0.0.1") -> Client:
        """A plain local connection to host:port, not through the tailnet."""
        return Client(self.net.connect(host, port), host)

    # --- helpers -------------------------------------------------------------------

    def _port_open(self, port: int) -> bool:
        try:
            self.net.connect("127.0.0.1", port, timeout=1).close()
            return True
        except OSError:
            return False

    def _wait(self, predicate, what: str, proc: subprocess.Popen | None = None,
              log: str | None = None, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise TailnetError("waiting for %s: the process exited (%s)\n%s"
                                   % (what, proc.returncode, self.log(log)[-4000:] if log else ""))
            try:
                if predicate():
                    return
            except (OSError, TailnetError, ValueError, KeyError) as e:
                last = e
            time.sleep(0.1)
        raise TailnetError("timed out waiting for %s (last error: %s)\n%s"
                           % (what, last, self.log(log)[-4000:] if log else ""))
