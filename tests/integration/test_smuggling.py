"""Request smuggling: desync vectors (tests/integration/data/smuggling.json)
sent to aperture with a recording upstream behind it.

Each vector is a POST of one chat completion whose bytes try to make aperture
see a different request boundary than a front proxy would; many hide a second
request (its body says `"smuggled": true`) where another reading of the
framing would find it. Its one expected outcome is in the data file, with the
reason: a status (400, 417, 501, 505: the refusal, the connection closed after
it, nothing upstream) or "forwarded" (the upstream got exactly one request,
with the intended body, and the client its answer). The smuggled request never
reaches the upstream.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from .conftest import launch_gateway, provider_config, serve_simulator

VECTORS = json.loads((Path(__file__).parent / "data" / "smuggling.json").read_text())
BODY = b'{"model":"gpt-5.4","messages":[]}'


@pytest.fixture(scope="module")
def sim(loop_thread):
    with serve_simulator(loop_thread) as sim:
        yield sim


@pytest.fixture(scope="module")
def gw(tmp_path_factory, sim):
    gateway = launch_gateway(tmp_path_factory.mktemp("smuggling"), provider_config(sim.url),
                             capture=False)
    yield gateway
    gateway.stop()


def exchange(port: int, raw: bytes, *, wait_close: bool) -> tuple[list[int], bool]:
    """The statuses of the responses to `raw` up to the first final one, and
    (with `wait_close`) whether aperture then closed the connection."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(raw)
        data = b""
        statuses: list[int] = []
        closed = False
        while True:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) >= length:
                    statuses.append(status)
                    data = rest[length:]
                    if status >= 200:
                        break
                    continue
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return statuses, True
            data += chunk
        if wait_close:
            try:
                closed = s.recv(1) == b""
            except ConnectionResetError:
                closed = True
    return statuses, closed


def test_the_corpus_covers_the_kinds_of_desync():
    assert len(VECTORS) >= 50
    names = {v["name"] for v in VECTORS}
    for kind in ("cl-te", "te-cl", "te-xchunked", "te-vertical-tab", "cl-two-differing", "cl-plus",
                 "chunk-size-overflow", "chunk-size-leading-zeros", "bare-lf-head", "bare-cr-in-head",
                 "obs-fold", "nul-in-name", "http10-te-then-request", "garbage-after-body",
                 "expect-unknown", "absolute-form", "asterisk-form", "host-twice"):
        assert kind in names, kind


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_no_vector_smuggles_a_second_request(gw, sim, vector):
    before = len(sim.sim.seen)
    forwarded = vector["expect"] == "forwarded"
    statuses, closed = exchange(gw.port, vector["raw"].encode("latin-1"), wait_close=not forwarded)
    time.sleep(0.05)  # anything smuggled would have reached the simulator by now
    bodies = [s.body for s in list(sim.sim.seen)[before:]]
    if forwarded:
        assert bodies == [BODY], vector["why"]
        assert statuses[-1] == 200, vector["why"]
    else:
        assert bodies == [], vector["why"]
        assert statuses == [vector["expect"]] and closed, vector["why"]
