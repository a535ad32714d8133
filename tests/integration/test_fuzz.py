"""Hostile bytes into a running gateway, from both sides (STYLE.md, habit 13).

Client side: valid requests (lengths, chunked bodies, pipelining, Expect),
mutated byte by byte, and plain random bytes. Every input ends in well-formed
HTTP responses (each error a JSON body) and, for what cannot be read, a
close: never a response cut short, never a hang.

Upstream side: the generated responses of the reader tests (valid and
broken, tests/upstream/strategies.py), each sent by a scripted upstream that
then closes. What the client gets is predicted by the h11 reader, aperture's
own oracle, fed the same bytes: the relayed status and body for a response
that reads to its end; a 502 when the reading fails before any body byte;
the body bytes before the failure and then a close otherwise.

After each module: nothing in flight, no connection open, the event loop's
task count back to its resting value (the `/metrics` gauges), and no
traceback or error line in the gateway's log.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture.errors import BadGateway
from aperture.upstream.events import END, ResponseHead
from aperture.upstream.h11_reader import H11Reader

from ..upstream.strategies import responses
from .conftest import launch_gateway, wait_for
from .raw_upstream import OK_RESPONSE, Conn, RawUpstream
from .test_capture import LOGIN, read_records

FUZZ = settings(max_examples=60, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MODEL = "claude-sonnet-4-6"


class Exchange:
    """What the scripted upstream answers (the same to every connection)."""

    def __init__(self) -> None:
        self.response = OK_RESPONSE

    def serve(self, conn: Conn) -> None:
        while conn.read_request() is not None:
            if not conn.send(self.response):
                return
            if self.response is not OK_RESPONSE:
                conn.sock.shutdown(socket.SHUT_WR)  # the generated response ends here
                conn.wait_closed(10)
                return


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    answer = Exchange()
    up = RawUpstream(default=answer.serve)
    config = {"providers": {"up": {
        "baseurl": up.url, "apikey": "sk-up", "authorization": "x-api-key", "models": [MODEL],
        "compatibility": {"anthropic_messages": True, "openai_chat": True}}},
        "grants": [{"src": ["*"], "app": {"tailscale.com/cap/aperture": [
            {"role": "admin"}, {"models": "**"}]}}]}
    gw = launch_gateway(tmp_path_factory.mktemp("fuzz"), config, "--header-timeout", "0.3",
                        "--body-timeout", "0.3", "--first-byte-timeout", "2", "--idle-timeout", "2",
                        identity="serve-headers")
    resting = gauges(gw)
    yield gw, answer, up
    # Quiescence: every exchange, connection and task the inputs made is gone.
    wait_for(lambda: gauges(gw)["tasks"] == resting["tasks"] and
             gauges(gw)["client_connections"] == 1, timeout=10)  # 1: the scrape's own
    final = gauges(gw)
    assert (final["in_flight"], final["upstream_active"]) == (0, 0), final
    gw.stop()
    up.close()
    log = gw.log()
    assert "Traceback" not in log, log[-3000:]
    assert not re.search(r" (ERROR|CRITICAL) ", log), log[-3000:]


def gauges(gw) -> dict:
    with socket.create_connection(("127.0.0.1", gw.port), 5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  b"Tailscale-User-Login: admin@example.com\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    text = data.decode()

    def value(name: str) -> float:
        return float(re.search(r"^%s (\S+)$" % re.escape(name), text, re.M).group(1))

    return {"tasks": value("aperture_event_loop_tasks"),
            "in_flight": value("aperture_in_flight_requests"),
            "client_connections": value("aperture_client_connections"),
            "upstream_active": value('aperture_upstream_connections{state="active"}')}


# -- reading what the gateway sent --------------------------------------------------------


def parse_responses(data: bytes, *, closed: bool) -> tuple[list[tuple[int, dict, bytes]], bytes]:
    """The whole responses at the start of `data` as (status, fields, body), and what
    is left over (the start of a response cut short). A response without
    Content-Length or chunking runs to the close."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return out, data
        lines = head.split(b"\r\n")
        m = re.fullmatch(rb"HTTP/1\.1 ([1-5]\d\d) [\x20-\x7e]*", lines[0])
        assert m, lines[0][:100]
        status = int(m.group(1))
        fields = {}
        for line in lines[1:]:
            assert re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+: [\x20-\x7e\x80-\xff\t]*", line), line[:100]
            name, _, value = line.partition(b": ")
            name = name.lower()
            if name in (b"content-length", b"transfer-encoding", b"connection"):
                assert name not in fields, line  # one framing, stated once
            fields.setdefault(name, value)
        if status < 200 or status in (204, 304):
            out.append((status, fields, b""))
            data = rest
            continue
        if b"content-length" in fields:
            n = int(fields[b"content-length"])
            if len(rest) < n:
                return out, data
            out.append((status, fields, rest[:n]))
            data = rest[n:]
        elif fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, sep, after = rest.partition(b"\r\n")
                if not sep:
                    return out, data
                size = int(size_line, 16)
                if len(after) < size + 2:
                    return out, data
                assert after[size:size + 2] == b"\r\n"
                body += after[:size]
                rest = after[size + 2:]
                if size == 0:
                    break
            out.append((status, fields, body))
            data = rest
        else:
            if not closed:
                return out, data
            out.append((status, fields, rest))
            data = b""
    return out, b""


def exchange(gw, data: bytes, *, limit: float = 8.0) -> tuple[list[tuple[int, dict, bytes]], bytes, bool]:
    """Send `data`; read until the gateway closes, or until what came is whole
    responses and nothing more comes for a while. (responses, left over, closed)."""
    got = b""
    closed = False
    t0 = time.monotonic()
    last = t0
    with socket.create_connection(("127.0.0.1", gw.port), 5) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the gateway may close before reading everything
        s.settimeout(0.1)
        while True:
            now = time.monotonic()
            assert now - t0 < limit, "no end after %.0fs: %r" % (limit, got[-200:])
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if got and now - last > 0.6 and parse_responses(got, closed=False)[1] == b"":
                    break
                if not got and now - last > 1.5:  # a request still open for more
                    break
                continue
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
            last = time.monotonic()
    done, left = parse_responses(got, closed=closed)
    return done, left, closed


def check_errors_name_the_problem(done: list[tuple[int, dict, bytes]]) -> None:
    """An error from an API route is JSON in its format; one found before a
    route could be known (the HTTP framing itself) is a line of text."""
    for status, fields, body in done:
        if status < 400:
            continue
        kind = fields.get(b"content-type", b"")
        if kind == b"application/json":
            doc = json.loads(body)
            assert isinstance(doc, dict) and ("error" in doc or "message" in doc), doc
        else:
            assert kind == b"text/plain; charset=utf-8", fields
            assert body.endswith(b"\n") and len(body) > 5, body


# -- client side ----------------------------------------------------------------------------


def body_for(model: str) -> bytes:
    return json.dumps({"model": model, "max_tokens": 5,
                       "messages": [{"role": "user", "content": "fuzz"}]}).encode()


def chunked(body: bytes, cuts: list[int]) -> bytes:
    out = b""
    prev = 0
    for c in [*sorted(set(cuts)), len(body)]:
        if c > prev:
            out += b"%x\r\n%s\r\n" % (c - prev, body[prev:c])
            prev = c
    return out + b"0\r\n\r\n"


@st.composite
def client_requests(draw) -> bytes:
    body = body_for(draw(st.sampled_from([MODEL, "unknown-model", ""])))
    path = draw(st.sampled_from([b"/v1/messages", b"/v1/chat/completions", b"/v1/models",
                                 b"/v1/messages?key=x", b"/nowhere", b"*", b"http://ai/v1/messages"]))
    method = draw(st.sampled_from([b"POST", b"GET", b"PUT", b"CONNECT", b"OPTIONS"]))  # HEAD: no body to read
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    head = [b"%s %s %s" % (method, path, version), b"Host: ai", b"Content-Type: application/json",
            LOGIN.encode() + b": fuzz@example.com"]
    extra = draw(st.lists(st.sampled_from([
        b"Connection: close", b"Connection: keep-alive", b"Expect: 100-continue",
        b"Transfer-Encoding: chunked", b"Content-Length: 3", b"Host: other", b"X-Pad: " + b"a" * 100,
        b"Transfer-Encoding: identity", b"Content-Length: 99999999999999999999"]), max_size=3))
    if draw(st.booleans()):
        head.append(b"Transfer-Encoding: chunked")
        payload = chunked(body, draw(st.lists(st.integers(0, len(body)), max_size=4)))
    else:
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    head += extra
    data = b"\r\n".join(head) + b"\r\n\r\n" + payload
    if draw(st.booleans()):
        data += draw(st.sampled_from([data, b"GET /v1/models HTTP/1.1\r\nHost: ai\r\n\r\n", b"\r\n",
                                      b"garbage"]))
    return data


MUTATIONS = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b"\x0b", b":", b";", b"0", b"f" * 17,
             b"-1", b"\r\n\r\n", b"0\r\n\r\n", b"Transfer-Encoding: chunked\r\n",
             b"Content-Length: 5\r\n", b"\xff", b"\x7f", b" chunked", b"HTTP/1.1"]


@st.composite
def mutated_requests(draw) -> bytes:
    data = bytearray(draw(client_requests()))
    for _ in range(draw(st.integers(0, 4))):
        k = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        if op == "insert":
            data[k:k] = draw(st.sampled_from(MUTATIONS))
        elif op == "truncate":
            del data[k:]
        elif k < len(data):
            if op == "flip":
                data[k] = draw(st.integers(0, 255))
            elif op == "delete":
                del data[k:k + draw(st.integers(1, 8))]
            else:
                j = draw(st.integers(k, len(data)))
                data[j:j] = data[k:j]
    return bytes(data)


@FUZZ
@given(data=mutated_requests() | st.binary(min_size=1, max_size=300))
def test_hostile_client_bytes_end_in_whole_answers_or_a_close(fuzzed, data):
    gw, answer, _ = fuzzed
    answer.response = OK_RESPONSE
    done, left, closed = exchange(gw, data)
    assert left == b"", (data[:300], left[:300])  # no response cut short
    check_errors_name_the_problem(done)


# -- upstream side ----------------------------------------------------------------------------


def oracle(raw: bytes):
    """(head, body before the end or the failure, ended) as the h11 reader
    reads `raw` followed by the upstream's close."""
    reader = H11Reader()
    reader.start(b"POST")
    events = []
    try:
        events += reader.feed(raw)
        events += reader.feed_eof()
    except BadGateway:  # after the events returned before it
        pass
    head = next((e for e in events if isinstance(e, ResponseHead)), None)
    body = b"".join(e.data for e in events if e is not END and not isinstance(e, ResponseHead))
    return head, body, END in events


counter = iter(range(10**9))


@settings(FUZZ, max_examples=300)
@given(generated=responses())
def test_hostile_upstream_bytes_are_relayed_or_refused_as_the_oracle_reads_them(fuzzed, generated):
    gw, answer, _ = fuzzed
    _, raw = generated
    answer.response = raw
    head, body, ended = oracle(raw)
    user = "upfuzz-%d@example.com" % next(counter)
    request = (b"POST /v1/messages HTTP/1.1\r\nHost: ai\r\nContent-Type: application/json\r\n"
               b"%s: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
               % (LOGIN.encode(), user.encode(), len(body_for(MODEL))) + body_for(MODEL))
    done, left, closed = exchange(gw, request)
    assert closed
    if head is not None and ended:
        assert left == b"" and len(done) == 1
        status, _, got = done[0]
        assert status == head.status
        if head.status not in (204, 304):
            assert got == body
    elif head is None or not body:
        assert left == b"" and [status for status, _, _ in done] == [502]
        assert "upstream" in json.loads(done[0][2])["error"]["message"]
    else:  # a cut after the body bytes read before the failure
        assert done == []
        assert left.startswith(b"HTTP/1.1 %d " % head.status)
        assert dechunked_prefix(left) == body


def dechunked_prefix(data: bytes) -> bytes:
    """The body bytes of a response cut short (chunked, or with a length)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return rest
    body = b""
    while True:
        size_line, sep, after = rest.partition(b"\r\n")
        if not sep:
            return body
        size = int(size_line, 16)
        body += after[:size]
        if len(after) < size + 2:
            return body
        rest = after[size + 2:]


def test_every_upstream_fuzz_exchange_is_recorded(fuzzed):
    """Runs after the upstream fuzz (file order): one record per request."""
    gw, _, _ = fuzzed
    sent = next(counter)
    assert sent > 0
    wait_for(lambda: len([r for r in read_records(gw.data_dir) if r["user"].startswith("upfuzz-")])
             >= sent, timeout=20)
    assert len([r for r in read_records(gw.data_dir) if r["user"].startswith("upfuzz-")]) == sent
