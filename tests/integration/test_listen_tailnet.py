"""`aperture serve --listen tailnet[:PORT]` against the LocalAPI stand-in's status.

Kernel networking is played with loopback addresses: Linux answers on all of
127.0.0.0/8, so a status naming 127.0.0.2 as the node's Tailscale address lets
a test see that aperture listens there and not on 127.0.0.1, and then follows
the address when the status changes. The real tailnet (tests/tailnet) covers
userspace networking end to end.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from aperture.ingress.tailnet import listen_addresses, parse_tailnet_listen
from tests.fakes.tailscaled import FakeTailscaled, status, user
from tests.integration.conftest import free_port, provider_config, wait_for

PEERS = {"127.0.0.2": user("alice@example.com", "Alice"),
         "127.0.0.3": user("alice@example.com", "Alice")}


@pytest.mark.parametrize("text,port", [("tailnet", 80), ("tailnet:8080", 8080),
                                       ("127.0.0.1:80", None), ("tailnetx:80", None)])
def test_parse_tailnet_listen(text, port):
    assert parse_tailnet_listen(text) == port


@pytest.mark.parametrize("text", ["tailnet:", "tailnet:0", "tailnet:65536", "tailnet:http"])
def test_parse_tailnet_listen_bad_port(text):
    with pytest.raises(ValueError, match="tailnet or tailnet:PORT"):
        parse_tailnet_listen(text)


def test_listen_addresses():
    assert listen_addresses(status(["100.64.0.1", "fd7a:115c:a1e0::1"])) == (
        ("100.64.0.1", "fd7a:115c:a1e0::1"), False)
    assert listen_addresses(status(["100.64.0.1"], tun=False)) == (("127.0.0.1",), True)
    assert listen_addresses(status([])) == ((), False)
    only_self = status(["100.64.0.5"])
    del only_self["TailscaleIPs"]
    assert listen_addresses(only_self) == (("100.64.0.5",), False)
    for bad in ([], {"TailscaleIPs": "100.64.0.1"}, {"TailscaleIPs": ["nope"]},
                {"TailscaleIPs": ["100.64.0.1"], "TUN": "yes"}):
        with pytest.raises(ValueError):
            listen_addresses(bad)


@pytest.fixture
def short_dir():
    path = tempfile.mkdtemp(prefix="ts-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


class Served:
    """`aperture serve --listen tailnet:PORT` against the stand-in at `fake_socket`."""

    def __init__(self, short_dir: Path, fake_socket: str, port: int, *extra: str) -> None:
        self.port = port
        self.log_path = short_dir / "aperture.log"
        config = short_dir / "aperture.json"
        config.write_text(json.dumps(provider_config("http://127.0.0.1:9")))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aperture", "serve", "--listen", "tailnet:%d" % port,
                 "--identity", "tailscale", "--tailscaled-socket", fake_socket,
                 "--tailnet-poll", "0.2", "--no-capture", "--config", str(config), *extra],
                stdout=subprocess.DEVNULL, stderr=log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@contextlib.contextmanager
def serving(short_dir: Path, addresses: list[str], *extra: str, mode: str = "normal",
            tun: bool = True):
    """A stand-in tailscaled whose node has `addresses` (answering in `mode`),
    and `aperture serve --listen tailnet:PORT` against it: (fake, served, port)."""
    fake = FakeTailscaled(str(short_dir / "ts.sock"), PEERS)
    fake.status = status(addresses, tun=tun)
    fake.mode = mode
    port = free_port()
    with fake.running():
        served = Served(short_dir, fake.socket_path, port, *extra)
        try:
            yield fake, served, port
        finally:
            served.stop()


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def whoami(host: str, port: int) -> tuple[int, bytes]:
    """GET /api/whoami from `host` (the source address) to host:port."""
    with socket.create_connection((host, port), timeout=5, source_address=(host, 0)) as s:
        s.sendall(b"GET /api/whoami HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                  % host.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_kernel_networking_binds_the_tailscale_addresses_and_follows_them(short_dir):
    with serving(short_dir, ["127.0.0.2"]) as (fake, served, port):
        wait_for(lambda: answers("127.0.0.2", port), timeout=20)
        assert not answers("127.0.0.1", port)
        assert not answers("127.0.0.3", port)
        code, body = whoami("127.0.0.2", port)
        assert code == 200 and b'"login":"alice@example.com"' in body
        assert "tailscaled uses kernel networking" in served.log()
        # The node's address changes: the new one is bound, the old one closed.
        fake.status = status(["127.0.0.3"])
        wait_for(lambda: answers("127.0.0.3", port) and not answers("127.0.0.2", port),
                 timeout=10)
        assert "127.0.0.2 is no longer an address of this node" in served.log()
        # Logged out: no address, no listener.
        fake.status = status([], state="NeedsLogin")
        wait_for(lambda: not answers("127.0.0.3", port), timeout=10)
        assert "reports no Tailscale address" in served.log()


def test_userspace_networking_binds_loopback_and_says_so(short_dir):
    addresses = ["100.101.102.1", "fd7a:115c:a1e0::1"]
    with serving(short_dir, addresses, tun=False) as (_, served, port):
        wait_for(lambda: answers("127.0.0.1", port), timeout=20)
        assert not answers("127.0.0.2", port)
        wait_for(lambda: "userspace networking" in served.log())
        assert ("tailscaled uses userspace networking and forwards tailnet connections to "
                "127.0.0.1:%d; listening there" % port) in served.log()
        # A local program is not a tailnet peer.
        code, body = whoami("127.0.0.1", port)
        assert code == 403 and b"not a tailnet peer" in body


def test_nothing_is_bound_until_tailscaled_answers(short_dir):
    sock = str(short_dir / "ts.sock")
    port = free_port()
    served = Served(short_dir, sock, port)
    try:
        wait_for(lambda: "gives no status" in served.log(), timeout=20)
        assert "not listening yet" in served.log()
        assert not answers("127.0.0.2", port) and not answers("127.0.0.1", port)
        assert served.proc.poll() is None
        fake = FakeTailscaled(sock, PEERS)
        fake.status = status(["127.0.0.2"])
        with fake.running():
            wait_for(lambda: answers("127.0.0.2", port), timeout=10)
            assert "tailscaled answers again" in served.log()
        # tailscaled gone again: the listener stays.
        time.sleep(0.5)
        assert answers("127.0.0.2", port)
    finally:
        served.stop()


def test_garbage_status_binds_nothing(short_dir):
    with serving(short_dir, ["127.0.0.2"], mode="badjson") as (fake, served, port):
        wait_for(lambda: "gives no status" in served.log(), timeout=20)
        assert not answers("127.0.0.2", port)
        fake.mode = "normal"
        wait_for(lambda: answers("127.0.0.2", port), timeout=10)


def test_several_workers_share_the_tailnet_port(short_dir):
    with serving(short_dir, ["127.0.0.2"], "--workers", "2") as (_, served, port):
        wait_for(lambda: served.log().count("listening on http://127.0.0.2:%d" % port) == 2,
                 timeout=30)
        assert whoami("127.0.0.2", port)[0] == 200
        assert not answers("127.0.0.1", port)
