"""The read side the dashboard needs beyond `aperture query`: sums grouped by
any of user, provider, model and tool, in time buckets; pages of sessions and
of records that continue where the previous page stopped.

Sums come from the rollups (see store.py): the narrowest dimension that
answers the question (totals; one user, model, provider or tool; the
combinations (user, provider, model) and (user, provider, model, tool)),
whole days and hours of the range from the daily and hourly rollups, the
leftover edges from the records themselves. A store written before the
combination rollups existed has none for its older records
(`meta/combo_since`): that part of the range is summed from the records.
Hour buckets read hourly rollups only; day buckets are UTC days.

Every figure is a list of ROLL_FIGURES integers: requests, input, output,
cache read, cache write and reasoning tokens, tool calls, duration in
microseconds, estimated cost in nano-dollars, requests without a price.

Pages walk an index newest first from a cursor (the index key where the
previous page stopped, opaque to callers) and stop after `limit` matches or
after examining `budget` entries, whichever comes first; the cursor returned
continues from there (None at the end), so a rare filter costs bounded time
per page.
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass

import orjson

from .codec import R_MODEL, R_PROVIDER, R_STATE, R_STATUS, R_TIME, R_TOOLS, R_USER
from .query import CaptureReader, Filter, _decompose, _session_row, summary_figures
from .schema import (COMBO_CAPS, DIM_COMBO, DIM_MODEL, DIM_PROVIDER, DIM_TOOL,
                     DIM_TOOL_COMBO, DIM_TOTAL, DIM_USER, ROLL_FIGURES, SEP, add_counts,
                     combo_field, key_field, rollup_values, ts_bytes, ts_value)
from .store import COMBO_SINCE, LEVEL_DAY, LEVEL_HOUR

GROUPS = ("user", "provider", "model", "tool")
BUCKETS = ("hour", "day")
_BUCKET_SECONDS = {"hour": 3600, "day": 86400}
_SINGLE = {"user": DIM_USER, "model": DIM_MODEL, "provider": DIM_PROVIDER, "tool": DIM_TOOL}


@dataclass(frozen=True, slots=True)
class Query:
    """What to sum: a time range, equality filters and the grouping."""

    since: float | None = None
    until: float | None = None  # inclusive
    user: str | None = None
    provider: str | None = None
    model: str | None = None
    tool: str | None = None
    group: tuple[str, ...] = ()  # of GROUPS
    bucket: str | None = None  # of BUCKETS

    def filters(self) -> dict[str, str]:
        return {k: v for k in GROUPS if (v := getattr(self, k)) is not None}


def aggregate(reader: CaptureReader, q: Query) -> dict[tuple, list[int]]:
    """{(bucket start or None, *group values): figures}."""
    acc: dict[tuple, list[int]] = {}
    h = reader._h
    if h is None:
        return acc
    lo = q.since if q.since is not None else 0.0
    hi = (q.until + 1e-6) if q.until is not None else math.inf  # half-open [lo, hi)
    if hi <= lo:
        return acc
    wanted = set(q.group) | set(q.filters())
    if "tool" in wanted:
        dim = DIM_TOOL if wanted == {"tool"} else DIM_TOOL_COMBO
    elif not wanted:
        dim = DIM_TOTAL
    elif len(wanted) == 1:
        dim = _SINGLE[next(iter(wanted))]
    else:
        dim = DIM_COMBO
    combo = dim in (DIM_COMBO, DIM_TOOL_COMBO)
    with h.read() as txn:
        if reader._db("roll") is None:
            return acc
        if combo:
            raw = txn.get(COMBO_SINCE, db=reader._db("meta"))
            if raw is None:  # no record was written with combinations yet
                cut = math.inf
            else:
                since = ts_value(raw)
                cut = 0.0 if since == 0 else math.floor(since / 3600 + 1) * 3600
            if cut > lo:
                _from_records(reader, txn, q, lo, min(hi, cut), acc)
                lo = min(hi, cut)
                if lo >= hi:
                    return acc
        pieces, edges = _pieces(lo, hi, q.bucket)
        _from_rollups(reader, txn, q, dim, pieces, acc)
        for a, b in edges:
            _from_records(reader, txn, q, a, b, acc)
    return acc


def _pieces(lo: float, hi: float, bucket: str | None):
    if bucket != "hour":
        return _decompose(lo, hi)
    h0 = math.ceil(lo / 3600)
    h1 = 0xFFFFFFFF if hi == math.inf else math.floor(hi / 3600)
    if h0 >= h1:
        return [], [(lo, hi)]
    edges = []
    if lo < h0 * 3600:
        edges.append((lo, h0 * 3600.0))
    if hi != math.inf and h1 * 3600 < hi:
        edges.append((h1 * 3600.0, hi))
    return [(LEVEL_HOUR, h0, h1)], edges


def _bucket_of(t: float, bucket: str | None):
    if bucket is None:
        return None
    size = _BUCKET_SECONDS[bucket]
    return int(t // size) * size


_FIELD_INDEX = {"user": 0, "provider": 1, "model": 2, "tool": 3}


def _from_rollups(reader, txn, q: Query, dim: bytes, pieces, acc: dict) -> None:
    filters = q.filters()
    if dim in (DIM_COMBO, DIM_TOOL_COMBO):
        want = {_FIELD_INDEX[k]: combo_field(v, _FIELD_INDEX[k]) for k, v in filters.items()}
        take = [_FIELD_INDEX[g] for g in q.group]
    elif dim == DIM_TOTAL:
        want, take = {}, []
    else:
        want = {0: key_field(v) for v in filters.values()}
        take = [0] * len(q.group)
    roll = reader._db("roll")
    unpack = struct.unpack
    # Combination keys start with the user after the bucket: with a user
    # filter, each bucket's keys of that user are one seek away.
    user_prefix = want.get(0) + SEP if dim in (DIM_COMBO, DIM_TOOL_COMBO) and 0 in want else None
    with txn.cursor(db=roll) as cur:
        for level, b0, b1 in pieces:
            prefix = dim + level
            seconds = 86400 if level == LEVEL_DAY else 3600
            if user_prefix is not None:
                spans = _user_spans(cur, prefix, b0, b1, user_prefix)
            elif cur.set_range(prefix + struct.pack(">I", b0)):
                spans = (cur.iternext(),)
            else:
                continue
            for items in spans:
                for key, value in items:
                    if not key.startswith(prefix):
                        break
                    b = unpack(">I", key[2:6])[0]
                    if b >= b1:
                        break
                    if want or take:
                        parts = (key[6:].split(SEP) if dim in (DIM_COMBO, DIM_TOOL_COMBO)
                                 else [key[6:]])
                        if any(parts[i] != v for i, v in want.items()):
                            if user_prefix is not None and parts[0] != want[0]:
                                break  # past this user's keys in this bucket
                            continue
                        values = tuple(parts[i].decode("utf-8", "replace") for i in take)
                    else:
                        values = ()
                    group = (_bucket_of(b * seconds, q.bucket),) + values
                    add_counts(acc, group, rollup_values(value))


def _user_spans(cur, prefix: bytes, b0: int, b1: int, user_prefix: bytes):
    """For each bucket in [b0, b1) that has keys: an iterator from the first
    key of the user in it (the caller stops at the user's last)."""
    b = b0
    while b < b1:
        if not cur.set_range(prefix + struct.pack(">I", b) + user_prefix):
            return
        key = cur.key()
        if not key.startswith(prefix):
            return
        kb = struct.unpack(">I", key[2:6])[0]
        if kb != b:  # this bucket has no key of the user: go on from the next one present
            b = kb
            continue
        yield cur.iternext()
        b += 1


def _from_records(reader, txn, q: Query, lo: float, hi: float, acc: dict) -> None:
    """Sum the records in [lo, hi) one by one."""
    f = Filter(user=q.user, model=q.model, provider=q.provider, since=lo,
               until=None if hi == math.inf else hi)
    caps = {g: COMBO_CAPS[_FIELD_INDEX[g]] for g in GROUPS}
    by_tool = "tool" in q.group or q.tool is not None
    for s in reader._scan(txn, f):
        t = s[R_TIME]
        if t >= hi:
            continue
        vals = summary_figures(s)
        b = _bucket_of(t, q.bucket)
        base = {"user": s[R_USER], "provider": s[R_PROVIDER], "model": s[R_MODEL]}
        if not by_tool:
            group = (b,) + tuple(_cap(base[g], caps[g]) for g in q.group)
            add_counts(acc, group, vals)
            continue
        counts: dict[str, int] = {}
        for name in s[R_TOOLS]:
            counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            if q.tool is not None and name != q.tool:
                continue
            base["tool"] = name
            v = list(vals)
            v[6] = n
            group = (b,) + tuple(_cap(base[g], caps[g]) for g in q.group)
            add_counts(acc, group, v)


def _cap(value: str, cap: int) -> str:
    return key_field(value)[:cap].decode("utf-8", "replace")


# --- pages ------------------------------------------------------------------------------


def _encode_cursor(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> bytes:
    """Raises ValueError when `text` is not a cursor."""
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (ValueError, TypeError):
        raise ValueError("not a cursor") from None
    if not key:
        raise ValueError("not a cursor")
    return key


@dataclass(frozen=True, slots=True)
class SessionQuery:
    since: float | None = None
    until: float | None = None
    user: str | None = None
    provider: str | None = None
    model: str | None = None
    status: int | None = None
    state: str | None = None
    tool: str | None = None

    def matches(self, tot: dict) -> bool:
        return ((self.user is None or tot["user"] == self.user)
                and (self.model is None or self.model in tot["models"])
                and (self.provider is None or self.provider in tot["providers"])
                and (self.status is None or str(self.status) in tot["statuses"])
                and (self.state is None or self.state in tot.get("states", ()))
                and (self.tool is None or self.tool in tot["tools"])
                and (self.since is None or tot["last"] >= self.since)
                and (self.until is None or tot["first"] <= self.until))


def session_row(tot: dict) -> dict:
    row = _session_row(tot)
    row["providers"] = sorted(tot.get("providers", ()))
    row["statuses"] = dict(sorted(tot.get("statuses", {}).items()))
    row["states"] = dict(sorted(tot.get("states", {}).items()))
    return row


def sessions_page(reader: CaptureReader, q: SessionQuery, limit: int, cursor: bytes | None = None,
                  budget: int = 20_000) -> tuple[list[dict], str | None]:
    """Sessions with activity in the range, latest activity first."""
    h = reader._h
    out: list[dict] = []
    if h is None or limit <= 0:
        return out, None
    with h.read() as txn:
        ses = reader._db("ses")
        if q.user is not None:
            db, prefix = reader._db("ses_u"), key_field(q.user) + SEP
        else:
            db, prefix = reader._db("ses_t"), b""
        if ses is None or db is None:
            return out, None
        lo = prefix + (ts_bytes(q.since) if q.since is not None else b"")
        top = prefix + (ts_bytes(q.until) + b"\xff" if q.until is not None else b"\xff" * 9)
        start = cursor if cursor is not None and cursor.startswith(prefix) and cursor < top else top
        seen = 0
        with txn.cursor(db=db) as cur:
            ok = cur.prev() if cur.set_range(start) else cur.last()
            if not ok:
                return out, None
            for key in cur.iterprev(keys=True, values=False):
                if key < lo or not key.startswith(prefix):
                    return out, None
                if key >= start:
                    continue
                seen += 1
                raw = txn.get(key[len(prefix) + 8:], db=ses)
                if raw is not None:
                    tot = orjson.loads(raw)
                    if q.matches(tot):
                        out.append(session_row(tot))
                        if len(out) >= limit:
                            return out, _encode_cursor(key)
                if seen >= budget:
                    return out, _encode_cursor(key)
    return out, None


def records_page(reader: CaptureReader, f: Filter, limit: int, cursor: bytes | None = None,
                 state: str | None = None, budget: int = 50_000,
                 oldest_first: bool = False) -> tuple[list[dict], str | None]:
    """Records matching `f` (and `state`), newest first (or oldest first)."""
    h = reader._h
    out: list[dict] = []
    if h is None or limit <= 0:
        return out, None
    rec_db = reader._db("rec")
    if rec_db is None:
        return out, None
    for name, value in (("ix_s", f.session), ("ix_u", f.user), ("ix_m", f.model),
                        ("ix_p", f.provider)):
        if value is not None:
            db, prefix = reader._db(name), key_field(value) + SEP
            break
    else:
        db, prefix = rec_db, b""
    if db is None:
        return out, None
    lo = prefix + (ts_bytes(f.since) if f.since is not None else b"")
    hi = prefix + (ts_bytes(f.until) + b"\xff" if f.until is not None else b"\xff" * 9)
    seen = 0
    with h.read() as txn, txn.cursor(db=db) as cur:
        if oldest_first:
            start = cursor if cursor is not None and cursor.startswith(prefix) and cursor > lo else lo
            if not cur.set_range(start):
                return out, None
            items = cur.iternext(keys=True, values=True)
        else:
            start = cursor if cursor is not None and cursor.startswith(prefix) and cursor < hi else hi
            ok = cur.prev() if cur.set_range(start) else cur.last()
            if not ok:
                return out, None
            items = cur.iterprev(keys=True, values=True)
        for key, value in items:
            if not key.startswith(prefix) or key < lo or key > hi:
                return out, None
            if key == start and cursor is not None:
                continue
            seen += 1
            if db is not rec_db:
                value = txn.get(key[len(prefix):], db=rec_db)
                if value is None:
                    continue
            s = orjson.loads(value)
            if f.matches(s) and (state is None or s[R_STATE] == state):
                out.append(reader._row(txn, s))
                if len(out) >= limit:
                    return out, _encode_cursor(key)
            if seen >= budget:
                return out, _encode_cursor(key)
    return out, None


def count_sessions(reader: CaptureReader, user: str | None, since: float | None,
                   cap: int = 1_000_000) -> int:
    """Sessions (of `user`) with activity since `since`; counting stops at `cap`."""
    h = reader._h
    if h is None:
        return 0
    with h.read() as txn:
        if user is not None:
            db, prefix = reader._db("ses_u"), key_field(user) + SEP
        else:
            db, prefix = reader._db("ses_t"), b""
        if db is None:
            return 0
        lo = prefix + (ts_bytes(since) if since is not None else b"")
        n = 0
        with txn.cursor(db=db) as cur:
            if not cur.set_range(lo):
                return 0
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                n += 1
                if n >= cap:
                    break
        return n


def user_last_seen(reader: CaptureReader, users: list[str]) -> dict[str, float]:
    """The last activity of each user (from their newest session)."""
    h = reader._h
    out: dict[str, float] = {}
    if h is None:
        return out
    with h.read() as txn:
        db = reader._db("ses_u")
        if db is None:
            return out
        with txn.cursor(db=db) as cur:
            for user in users:
                prefix = key_field(user) + SEP
                ok = cur.prev() if cur.set_range(prefix + b"\xff" * 9) else cur.last()
                if ok and cur.key().startswith(prefix):
                    out[user] = ts_value(cur.key()[len(prefix):len(prefix) + 8])
    return out


def status_class(status: int) -> str:
    return "%dxx" % (status // 100) if status else "none"


__all__ = ["Query", "SessionQuery", "aggregate", "sessions_page", "records_page",
           "count_sessions", "user_last_seen", "decode_cursor", "GROUPS", "BUCKETS",
           "ROLL_FIGURES", "R_STATUS"]
