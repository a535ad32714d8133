"""The dashboard's data, read from the capture store in a process of its own.

Every function here runs in the reader process (see `Reader`): reading and
summing hundreds of thousands of rollup keys is Python work, and in a thread
of the worker it would take the interpreter lock from the event loop that
relays streams. In a child process it takes none: the proxy never waits on
a dashboard. The child opens the store read-only (LMDB readers never block
the writers), answers one call at a time, and returns plain JSON-able values.

Access rules are applied by the caller (aperture.ui.api) before and after:
these functions take the user to filter on, and return the owner of
anything asked for by id so the caller can answer 404 for another user's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from typing import Any

from aperture.capture import dashboard as dash
from aperture.capture.query import (TOKEN_FIELDS, CaptureReader, Filter, NANO, cost_usd, rfc3339)

from . import bodies

_readers: dict[str, CaptureReader] = {}


def _reader(data_dir: str) -> CaptureReader:
    if not data_dir:  # capture is off: an empty store
        r = CaptureReader.__new__(CaptureReader)
        r._h, r.exists = None, False
        return r
    r = _readers.get(data_dir)
    if r is None or not r.exists:
        if r is not None:
            r.close()
        r = _readers[data_dir] = CaptureReader(data_dir)
    return r


def figures_row(v: list[int]) -> dict:
    row = {"requests": v[0]}
    for i, k in enumerate(TOKEN_FIELDS):
        row[k] = v[1 + i]
    row["tool_calls"] = v[6]
    row["duration_ms"] = v[7] / 1000
    row["cost_usd"] = cost_usd(v[8], v[9], v[0])
    row["unpriced_requests"] = v[9]
    return row


_ZERO = [0] * 10


def usage(data_dir: str, q: dict) -> dict:
    reader = _reader(data_dir)
    query = dash.Query(**q)
    acc = dash.aggregate(reader, query)
    rows = []
    total = list(_ZERO)
    for key, v in acc.items():
        row: dict[str, Any] = {}
        if query.bucket is not None:
            row["time"] = rfc3339(key[0])
        for name, value in zip(query.group, key[1:]):
            row[name] = value
        row.update(figures_row(v))
        rows.append(row)
        if "tool" not in query.group:
            for i in range(10):
                total[i] += v[i]
    if query.bucket is not None:
        rows.sort(key=lambda r: (r["time"], *(r[g] for g in query.group)))
    else:
        rows.sort(key=lambda r: (-(r["input_tokens"] + r["output_tokens"]
                                   + r["cache_read_tokens"] + r["cache_write_tokens"]),
                                 -r["requests"], *(r[g] for g in query.group)))
    out = {"rows": rows}
    if "tool" not in query.group:
        out["totals"] = figures_row(total)
    return out


def summary(data_dir: str, q: dict) -> dict:
    """Totals, active sessions and active users of a range (and user)."""
    reader = _reader(data_dir)
    totals = dash.aggregate(reader, dash.Query(since=q["since"], until=q["until"],
                                               user=q["user"])).get((None,), _ZERO)
    users = dash.aggregate(reader, dash.Query(since=q["since"], until=q["until"], user=q["user"],
                                              group=("user",)))
    return {"totals": figures_row(totals),
            "active_sessions": dash.count_sessions(reader, q["user"], q["since"]),
            "active_users": sum(1 for v in users.values() if v[0])}


def sessions(data_dir: str, q: dict, limit: int, cursor: str | None) -> dict:
    reader = _reader(data_dir)
    rows, nxt = dash.sessions_page(reader, dash.SessionQuery(**q), limit,
                                   dash.decode_cursor(cursor) if cursor else None)
    return {"sessions": rows, "next": nxt}


def session(data_dir: str, sid: str, limit: int, cursor: str | None) -> dict | None:
    reader = _reader(data_dir)
    tot = _session_totals(reader, sid)
    if tot is None:
        return None
    rows, nxt = dash.records_page(reader, Filter(session=sid), limit,
                                  dash.decode_cursor(cursor) if cursor else None,
                                  oldest_first=True)
    return {"session": dash.session_row(tot), "requests": rows, "next": nxt}


def _session_totals(reader: CaptureReader, sid: str) -> dict | None:
    import orjson

    if reader._h is None or reader._db("ses") is None:
        return None
    with reader._h.read() as txn:
        raw = txn.get(sid.encode("utf-8", "surrogatepass"), db=reader._db("ses"))
    return orjson.loads(raw) if raw is not None else None


def capture(data_dir: str, ident: str) -> dict | None:
    reader = _reader(data_dir)
    cap = _exact(reader, ident)
    if cap is None:
        return None
    for side in ("request", "response"):
        body = cap.pop(side + "_body")
        headers = cap[side + "_headers"]
        cap[side + "_body"] = bodies.describe(body, headers, cap[side + "_body_size"],
                                              cap[side + "_body_truncated"])
    return cap


def body(data_dir: str, ident: str, side: str, view: str, offset: int,
         limit: int) -> dict | None:
    reader = _reader(data_dir)
    cap = _exact(reader, ident)
    if cap is None:
        return None
    data = cap[side + "_body"]
    out = bodies.page(data, cap[side + "_headers"], view, offset, limit)
    out["user"] = cap["user"]
    return out


def _exact(reader: CaptureReader, ident: str) -> dict | None:
    """A capture by its whole id only (a prefix would tell ids apart)."""
    if len(ident) != 26 or not ident.isalnum():
        return None
    try:
        cap = reader.get(ident.upper())
    except LookupError:
        return None
    if cap is None or cap["id"] != ident.upper():
        return None
    return cap


def users(data_dir: str, q: dict) -> dict:
    reader = _reader(data_dir)
    acc = dash.aggregate(reader, dash.Query(since=q["since"], until=q["until"], group=("user",)))
    names = [k[1] for k in acc]
    seen = dash.user_last_seen(reader, names)
    rows = []
    for key, v in acc.items():
        row = {"user": key[1]}
        row.update(figures_row(v))
        row["last_seen"] = rfc3339(seen[key[1]]) if key[1] in seen else None
        rows.append(row)
    rows.sort(key=lambda r: (-r["requests"], r["user"]))
    return {"rows": rows}


def active_users(data_dir: str, q: dict) -> dict:
    reader = _reader(data_dir)
    acc = dash.aggregate(reader, dash.Query(since=q["since"], until=q["until"], group=("user",),
                                            bucket=q["bucket"]))
    per: dict[float, int] = {}
    for key, v in acc.items():
        if v[0]:
            per[key[0]] = per.get(key[0], 0) + 1
    return {"rows": [{"time": rfc3339(t), "users": n} for t, n in sorted(per.items())]}


OPS = {"usage": usage, "summary": summary, "sessions": sessions, "session": session,
       "capture": capture, "body": body, "users": users, "active_users": active_users}


def call(op: str, data_dir: str, *args) -> Any:
    """The entry point in the reader process."""
    return OPS[op](data_dir, *args)


class Reader:
    """Runs `call` in a child process, started on first use and restarted if
    it dies (see the module docstring)."""

    def __init__(self, data_dir: str | None) -> None:
        self.data_dir = data_dir
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    async def __call__(self, op: str, *args) -> Any:
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            pool = self._executor()
            try:
                return await loop.run_in_executor(pool, call, op, self.data_dir, *args)
            except concurrent.futures.process.BrokenProcessPool:
                self._pool = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the reader process now (a worker that exits would otherwise
        wait for it)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(5)


__all__ = ["Reader", "call", "OPS", "NANO", "time"]
