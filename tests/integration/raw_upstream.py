"""A scripted upstream on raw sockets: each accepted connection is served by a
function of the test, which writes exactly the bytes (and the resets) the
case needs, in a thread of its own. It counts accepts and the requests each
connection carried, so a test can tell a fresh connection from a reused one.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

OK_BODY = (b'{"id":"msg_ok","type":"message","role":"assistant","model":"claude-sonnet-4-6",'
           b'"content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn",'
           b'"usage":{"input_tokens":3,"output_tokens":1}}')
OK_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(OK_BODY) + OK_BODY)


def reset(sock: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Conn:
    """One accepted connection, as a script sees it."""

    def __init__(self, upstream: "RawUpstream", sock: socket.socket, index: int) -> None:
        self.upstream = upstream
        self.sock = sock
        self.index = index
        self.requests: list[bytes] = []
        self.closed_by_peer = threading.Event()
        self._buf = b""

    def read_request(self, timeout: float = 10.0) -> bytes | None:
        """One request (head and Content-Length or chunked body), or None at EOF."""
        self.sock.settimeout(timeout)
        try:
            while b"\r\n\r\n" not in self._buf:
                if not self._fill():
                    return None
            head, _, rest = self._buf.partition(b"\r\n\r\n")
            lower = head.lower()
            if b"content-length:" in lower:
                n = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                while len(rest) < n:
                    if not self._fill_into():
                        return None
                    rest = self._buf.partition(b"\r\n\r\n")[2]
                body, self._buf = rest[:n], rest[n:]
            else:
                while b"0\r\n\r\n" not in rest:
                    if not self._fill_into():
                        return None
                    rest = self._buf.partition(b"\r\n\r\n")[2]
                end = rest.index(b"0\r\n\r\n") + 5
                body, self._buf = rest[:end], rest[end:]
        except OSError:
            return None
        request = head + b"\r\n\r\n" + body
        self.requests.append(request)
        return request

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed_by_peer.set()
            return False
        self._buf += chunk
        return True

    _fill_into = _fill

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed_by_peer.set()
            return False

    def wait_closed(self, timeout: float) -> bool:
        """Whether the peer closed this connection within `timeout` seconds
        (reads and drops whatever else arrives)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    self.closed_by_peer.set()
                    return True
            except socket.timeout:
                return False
            except OSError:
                self.closed_by_peer.set()
                return True
        return False

    def serve_ok(self) -> None:
        """Answer every request on this connection with a small JSON 200."""
        while self.read_request() is not None:
            if not self.send(OK_RESPONSE):
                return


class RawUpstream:
    """Listens on 127.0.0.1; `scripts[i]` serves the i-th accepted connection
    (`default` serves the ones past the list)."""

    def __init__(self, scripts=(), default=Conn.serve_ok) -> None:
        self.scripts = list(scripts)
        self.default = default
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    @property
    def accepts(self) -> int:
        return len(self.conns)

    def requests_per_connection(self) -> list[int]:
        return [len(c.requests) for c in self.conns]

    def _accept(self) -> None:
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            conn = Conn(self, sock, len(self.conns))
            self.conns.append(conn)
            script = self.scripts[conn.index] if conn.index < len(self.scripts) else self.default
            threading.Thread(target=self._run, args=(script, conn), daemon=True).start()

    def _run(self, script, conn: Conn) -> None:
        try:
            script(conn)
        except OSError:
            pass  # the gateway closed the connection: what many cases expect
        except BaseException as exc:  # a broken script: the test reports it
            self.errors.append(exc)
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        for conn in self.conns:
            try:
                conn.sock.close()
            except OSError:
                pass
