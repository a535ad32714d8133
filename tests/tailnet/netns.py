"""A private network namespace for the test tailnet, or plain loopback when the machine refuses one.

`unshare -n` (as root) or `unshare -rn` (as another user, in a user namespace of
its own) starts a holder process in a new network namespace that has nothing
but `lo`, which the holder brings up. Nothing started in it can reach beyond the
machine, and its ports cannot clash with anything else running here.

* `spawn(argv)` starts a program inside it with `nsenter`; the PID returned is
  the program's own (nsenter execs it), so tear-down is by that PID.
* `connect(host, port)` returns a TCP socket connected from inside it: the
  holder makes the connection and hands the descriptor over a unix socket
  (SCM_RIGHTS), so the tests speak to the tailnet from this process.

`Loopback` has the same interface for machines without namespaces (a container
that forbids unshare): processes run here and ports are picked free.

Run as `python netns.py HOLDER_SOCKET` the module is the holder itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Loopback:
    """Everything on this machine's loopback."""

    isolated = False
    holder_pid = None

    def spawn(self, argv: list[str], **popen) -> subprocess.Popen:
        return subprocess.Popen(argv, **popen)

    def connect(self, host: str, port: int, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((host, port), timeout=timeout)

    def port(self) -> int:
        return free_port()

    def close(self) -> None:
        pass


class Netns:
    """A network namespace kept alive by a holder process."""

    isolated = True

    def __init__(self, workdir: Path) -> None:
        self.control = str(workdir / "netns.sock")
        self.user_ns = os.geteuid() != 0
        flags = "-rn" if self.user_ns else "-n"
        self.log = workdir / "netns.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["unshare", flags, sys.executable, __file__, self.control],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.control):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise OSError("network namespace holder did not start: "
                              + self.log.read_text(errors="replace"))
            time.sleep(0.02)
        self.holder_pid = self.proc.pid
        self._ports = iter(range(20000, 30000))

    def spawn(self, argv: list[str], **popen) -> subprocess.Popen:
        enter = ["nsenter", "--target", str(self.holder_pid), "--net"]
        if self.user_ns:
            enter += ["--user", "--preserve-credentials"]
        return subprocess.Popen(enter + ["--"] + list(argv), **popen)

    def connect(self, host: str, port: int, timeout: float = 10.0) -> socket.socket:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
            ctl.settimeout(timeout + 5)
            ctl.connect(self.control)
            ctl.sendall(("%s %d %g\n" % (host, port, timeout)).encode())
            msg, fds, _flags, _addr = socket.recv_fds(ctl, 4096, 1)
        if not fds:
            # "ERRNO message" from the holder: the same OSError subclass as here
            # (ConnectionRefusedError for ECONNREFUSED).
            code, _, text = msg.decode(errors="replace").partition(" ")
            raise OSError(int(code) if code.isdigit() else 0, text or "holder gave no socket")
        sock = socket.socket(fileno=fds[0])
        sock.settimeout(timeout)
        return sock

    def port(self) -> int:
        # The namespace is new: every port is free in it.
        return next(self._ports)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.control)


def open_network(workdir: Path) -> tuple[Netns | Loopback, str]:
    """A namespace when the machine permits one, else loopback; and why."""
    if os.environ.get("APERTURE_TAILNET_NETNS", "1") == "0":
        return Loopback(), "APERTURE_TAILNET_NETNS=0: on this machine's loopback"
    for tool in ("unshare", "nsenter"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/bin"]):
            return Loopback(), "no %s here: on this machine's loopback" % tool
    flags = "-rn" if os.geteuid() != 0 else "-n"
    probe = subprocess.run(["unshare", flags, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return Loopback(), "unshare %s refused (%s): on this machine's loopback" % (
            flags, probe.stderr.strip())
    return Netns(workdir), "in a private network namespace (unshare %s)" % flags


# --- the holder -------------------------------------------------------------------


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _holder(control: str) -> None:
    _lo_up()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = control + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    server.bind(tmp)
    server.listen(64)
    os.rename(tmp, control)  # appears only once it accepts
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                host, port, timeout = conn.recv(4096).decode().split()
                out = socket.create_connection((host, int(port)), timeout=float(timeout))
            except (OSError, ValueError) as e:
                with contextlib.suppress(OSError):
                    conn.sendall(("%d %s" % (getattr(e, "errno", None) or 0,
                                             getattr(e, "strerror", None) or e)).encode())
                continue
            with out:
                socket.send_fds(conn, [b"+"], [out.fileno()])


if __name__ == "__main__":
    _holder(sys.argv[1])
