"""How long captured content is kept (`database.retention.duration`).

Accepted values: Go-style durations, a sequence of decimal numbers each with a
unit, `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, plus `d` for days of 24 hours
(`720h`, `30d`, `1h30m`, `1.5h`); the window must be between 1 hour and 3650
days. `"0"` (or any zero duration) means zero retention: bodies, headers and
tool-call arguments are never written to disk. No value (None or "") keeps
everything.

The purge removes, for records older than the window, what was captured of the
exchange: headers, bodies (and the blocks no kept record uses) and tool-call
arguments. The record summary stays: time, user, node, provider, model, status,
every token count, tool names, session, durations, state, error. So usage
figures and session totals do not change when a purge runs.
"""

from __future__ import annotations

import re

import orjson

from . import blocks
from .schema import ts_bytes

MIN_RETENTION = 3600.0
MAX_RETENTION = 3650 * 86400.0

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration with `d` for days. Raises ValueError."""
    s = text.strip()
    if s in ("0", "+0"):
        return 0.0
    if s.startswith("+"):
        s = s[1:]
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r} (use forms like 90m, 720h, 30d)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def parse_retention(text: str | None) -> float | None:
    """The retention window in seconds: None keeps everything, 0 keeps no content."""
    if text is None or not str(text).strip():
        return None
    seconds = parse_duration(str(text))
    if seconds == 0:
        return 0.0
    if not MIN_RETENTION <= seconds <= MAX_RETENTION:
        raise ValueError(f"retention {text!r} must be between 1h and 3650d, or \"0\"")
    return seconds


PURGE_MARK = b"purged_until"


def purge_step(txn, dbs, cutoff: float, limit: int = 1000) -> tuple[int, int, bool]:
    """Purge up to `limit` records and blocks older than `cutoff` in `txn`.

    Returns (records purged, blocks deleted, done). The progress mark kept in
    the `meta` database makes each record's purge happen once, whichever
    process runs it.
    """
    meta, rec, cap, tools = dbs["meta"], dbs["rec"], dbs["cap"], dbs["tools"]
    end = ts_bytes(cutoff)
    mark = txn.get(PURGE_MARK, db=meta) or b""
    keys = []
    with txn.cursor(db=rec) as cur:
        if cur.set_range(mark):
            for key in cur.iternext(keys=True, values=False):
                if key >= end or len(keys) >= limit:
                    break
                keys.append(key)
    purged = 0
    for key in keys:
        rid = key[8:]
        if txn.delete(rid, db=cap):
            purged += 1
        txn.delete(rid, db=tools)
    records_done = len(keys) < limit
    if keys:
        new_mark = end if records_done else keys[-1] + b"\x00"
    else:
        new_mark = end
    if new_mark > mark:
        txn.put(PURGE_MARK, new_mark, db=meta)
    deleted, blocks_done = (0, True)
    if records_done:
        deleted, blocks_done = blocks.purge_blocks(txn, dbs, blocks.hour_of(cutoff), limit)
    return purged, deleted, records_done and blocks_done


def purge_response_ids(txn, dbs, cutoff: float, limit: int = 1000) -> bool:
    """Forget up to `limit` Responses API ids made before `cutoff` (the
    `resp` index, aperture.responses). Returns whether none older are left."""
    resp, resp_t = dbs["resp"], dbs["resp_t"]
    end = ts_bytes(cutoff)
    keys = []
    with txn.cursor(db=resp_t) as cur:
        if cur.first():
            for key in cur.iternext(keys=True, values=False):
                if key >= end or len(keys) >= limit:
                    break
                keys.append(key)
    for key in keys:
        txn.delete(key, db=resp_t)
        raw = txn.get(key[8:], db=resp)
        # A later record may have stored the same id again: keep its entry.
        if raw is not None and ts_bytes(orjson.loads(raw)[4]) == key[:8]:
            txn.delete(key[8:], db=resp)
    return len(keys) < limit
