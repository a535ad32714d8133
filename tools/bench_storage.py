"""Storage ratio of an agentic session: stored bytes / raw request bytes.

Generates a Claude-Code-like session (large system prompt and tool
definitions, a history that grows every turn, the cache marker on the newest
message), captures every request into a fresh store and reports:

- blocks: the bytes of the stored body blocks;
- stored: blocks plus the per-record capture entries (block lists, headers);
- file: growth of the LMDB data file (includes B-tree pages, indexes, slack).

    python tools/bench_storage.py [--turns 50] [--sessions 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aperture.capture.query import CaptureReader  # noqa: E402
from aperture.capture.store import CaptureStore  # noqa: E402
from tests.capture.helpers import claude_code_bodies, make_record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--sessions", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = CaptureStore(d, durable=False)
        data_file = os.path.join(d, "captures.lmdb", "data.mdb")
        store.flush()
        base = os.path.getsize(data_file)
        raw = 0
        ids = []
        t = time.perf_counter()
        for s in range(args.sessions):
            for body in claude_code_bodies(args.turns, seed=s, session=f"session-{s}"):
                rec = make_record(request_body=body, response_body=b"")
                ids.append((rec.id, body))
                raw += len(body)
                store.submit(rec)
        store.flush(300)
        elapsed = time.perf_counter() - t
        store.close()
        with CaptureReader(d) as reader:
            with reader._h.read() as txn:
                cap_bytes = 0
                with txn.cursor(db=reader._h.dbs["cap"]) as cur:
                    for _, v in cur:
                        cap_bytes += len(v)
                blk_bytes = 0
                with txn.cursor(db=reader._h.dbs["blk"]) as cur:
                    for _, v in cur:
                        blk_bytes += len(v)
            ok = all(reader.get(i)["request_body"] == b for i, b in ids)
        file_growth = os.path.getsize(data_file) - base
        n = args.sessions * args.turns
        print(f"{n} requests, raw request bodies {raw / 1e6:.2f} MB "
              f"(first {len(ids[0][1]) / 1e3:.0f} kB, last {len(ids[-1][1]) / 1e3:.0f} kB)")
        print(f"blocks  {blk_bytes / 1e6:8.3f} MB  ratio {blk_bytes / raw:.3f}")
        print(f"stored  {(blk_bytes + cap_bytes) / 1e6:8.3f} MB  ratio "
              f"{(blk_bytes + cap_bytes) / raw:.3f}   (target <= 0.200)")
        print(f"file    {file_growth / 1e6:8.3f} MB  ratio {file_growth / raw:.3f}")
        print(f"write   {elapsed:.2f} s, {n / elapsed:.0f} records/s, "
              f"{raw / elapsed / 1e6:.0f} MB/s of request bodies")
        print(f"rebuilt byte for byte: {ok}")


if __name__ == "__main__":
    main()
