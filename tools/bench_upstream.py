"""Measure the upstream response readers alone: CPU µs per response, llhttp
(aperture's default) against the h11 twin, without sockets.

    python tools/bench_upstream.py [--n 10000]

Each figure is one whole cycle of a reader: `start(method)`, the response fed
as it would arrive, every event taken. Responses:

* small JSON: a Messages API answer of ~500 bytes with a provider's dozen
  headers, Content-Length, in one read (the common case);
* small JSON, 3 reads: the same cut into head / half the body / the rest;
* SSE stream: a chunked event stream of 12 events, one read per event.

Also shown: writing the request head (http1.encode_request), and what the
previous upstream code paid for the same small response with one h11
connection kept across cycles (`start_next_cycle`), for comparison.
"""

from __future__ import annotations

import argparse
import json
import time

import h11

from aperture.upstream.h11_reader import H11Reader
from aperture.upstream.http1 import encode_request
from aperture.upstream.llhttp_reader import LlhttpReader

BODY = json.dumps({
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
    "model": "claude-sonnet-4-6", "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
              "output_tokens": 9}}).encode()
HEAD = (b"HTTP/1.1 200 OK\r\nDate: Tue, 03 Mar 2026 10:00:00 GMT\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: keep-alive\r\nanthropic-ratelimit-requests-limit: 4000\r\n"
        b"anthropic-ratelimit-requests-remaining: 3999\r\n"
        b"anthropic-ratelimit-requests-reset: 2026-03-03T10:00:01Z\r\n"
        b"anthropic-ratelimit-tokens-limit: 400000\r\nanthropic-ratelimit-tokens-remaining: 399000\r\n"
        b"request-id: req_011CQ5kXyZabcdefghijk\r\nanthropic-organization-id: 0f3a-uuid\r\n"
        b"via: 1.1 google\r\ncf-cache-status: DYNAMIC\r\nServer: cloudflare\r\n\r\n" % len(BODY))
SMALL = HEAD + BODY
EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,' \
        b'"delta":{"type":"text_delta","text":"word "}}\n\n'
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nrequest-id: req_1\r\n\r\n")
SSE = [SSE_HEAD] + [b"%x\r\n%s\r\n" % (len(EVENT), EVENT)] * 12 + [b"0\r\n\r\n"]

REQUEST_HEADERS = [(b"host", b"api.anthropic.com"), (b"content-type", b"application/json"),
                   (b"anthropic-version", b"2023-06-01"), (b"user-agent", b"claude-cli/2.1"),
                   (b"accept", b"application/json"), (b"accept-encoding", b"identity"),
                   (b"x-api-key", b"sk-ant-api03-xxxxxxxxxxxxxxxx")]


def per_op_us(fn, n: int, repeat: int = 5) -> float:
    """The best of `repeat` runs (the machine is shared: the least disturbed
    run is the closest to the code's own cost)."""
    fn(max(1, n // 10))  # warm up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn(n)
        best = min(best, (time.perf_counter_ns() - start) / n / 1000)
    return best


def reader_loop(cls, reads: list[bytes]):
    reader = cls()

    def run(n: int) -> None:
        for _ in range(n):
            reader.start(b"POST")
            for data in reads:
                reader.feed(data)
            assert reader.reusable

    return run


def old_h11_loop(reads: list[bytes]):
    """The previous connection.py: one h11 connection across cycles, the
    request serialized by h11 too (with `_parsed=True`)."""
    conn = h11.Connection(h11.CLIENT)

    def run(n: int) -> None:
        for _ in range(n):
            conn.send(h11.Request(method=b"POST", target=b"/v1/messages", headers=REQUEST_HEADERS
                                  + [(b"content-length", b"2")], _parsed=True))
            conn.send(h11.Data(data=b"{}"))
            conn.send(h11.EndOfMessage())
            for data in reads:
                conn.receive_data(data)
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA or type(event) is h11.EndOfMessage:
                        break
            conn.start_next_cycle()

    return run


def encode_loop(n: int) -> None:
    for _ in range(n):
        encode_request(b"POST", b"/v1/messages?beta=true", REQUEST_HEADERS, 2, b"{}", True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="responses per run (best of 5 runs)")
    args = ap.parse_args()
    n = args.n
    cut = len(HEAD) + len(BODY) // 2
    cases = {
        "small JSON, 1 read": [SMALL],
        "small JSON, 3 reads": [HEAD, SMALL[len(HEAD):cut], SMALL[cut:]],
        "SSE, 14 reads": SSE,
    }
    print("%-22s %10s %10s %8s" % ("response", "llhttp us", "h11 us", "ratio"))
    for name, reads in cases.items():
        native = per_op_us(reader_loop(LlhttpReader, reads), n)
        twin = per_op_us(reader_loop(H11Reader, reads), n // 4)
        print("%-22s %10.1f %10.1f %7.1fx" % (name, native, twin, twin / native))
    print("\nrequest head, encode_request: %.1f us" % per_op_us(encode_loop, n))
    print("before (one h11 connection kept across cycles, request and small JSON): %.1f us"
          % per_op_us(old_h11_loop([SMALL]), n // 4))


if __name__ == "__main__":
    main()
