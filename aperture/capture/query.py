"""The read side of the capture store: listings, one capture, usage, sessions.

Everything here reads in LMDB read-only transactions, which never block and
are never blocked by the gateway's writers; each call sees one consistent
snapshot.

How filters use the indexes. A listing walks, newest first, the most selective
index that a filter names (session, then user, then model, then provider,
else the time-ordered records themselves), from the `until` bound down to the
`since` bound, and stops after `limit` matches; other filters are checked on
each record's summary. Usage by user, model, provider, day or tool with at
most a time filter is summed from hourly and daily rollups (exact: the parts
of the range that do not cover a whole hour are summed from the records
themselves); with other filters it is summed over the matching records.
Sessions come from their running totals, newest activity first.
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from . import blocks, codec
from .codec import (R_API, R_CREAD, R_CWRITE, R_DURATION, R_ERROR, R_ID, R_IN, R_METHOD,
                    R_MODEL, R_NODE, R_NODE_ID, R_OUT, R_PATH, R_PROVIDER, R_REASON,
                    R_REQ_SIZE, R_REQ_TRUNC, R_RESP_SIZE, R_RESP_TRUNC, R_SESSION, R_STATE,
                    R_STATUS, R_STREAM, R_TAGS, R_TIME, R_TOOLS, R_TTFB, R_USER, summary_cost)
from .retention import parse_duration
from .schema import (DIM_MODEL, DIM_PROVIDER, DIM_TOOL, DIM_TOTAL, DIM_USER, SEP, add_counts,
                     key_field, open_env, release_env, rollup_values, ts_bytes)
from .store import LEVEL_DAY, LEVEL_HOUR

RECORD_FIELDS = ("id", "time", "user", "node", "tags", "provider", "model", "api", "method",
                 "path", "status", "stream", "input_tokens", "output_tokens",
                 "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
                 "tool_calls", "session", "duration_ms", "ttfb_ms", "state", "error")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens")
#: cost_usd sums the requests that have a price; unpriced_requests counts the
#: others; cost_usd is null when no request of the group has a price
USAGE_FIELDS = ("requests",) + TOKEN_FIELDS + ("tool_calls", "duration_ms", "cost_usd",
                                               "unpriced_requests")
USAGE_BY = ("user", "model", "provider", "day", "session", "tool")
SESSION_FIELDS = ("session", "user", "first", "last", "requests") + TOKEN_FIELDS + (
    "tool_calls", "duration_ms", "cost_usd", "unpriced_requests", "tools", "models")
NANO = 1_000_000_000


def cost_usd(nano: int, unpriced: int, requests: int) -> float | None:
    """Dollars of a sum of estimates; None ("no price") when none of the
    `requests` had a price."""
    if requests and unpriced >= requests:
        return None
    return nano / NANO


class AmbiguousId(LookupError):
    """An id prefix that matches several records."""


@dataclass(frozen=True, slots=True)
class Filter:
    user: str | None = None
    model: str | None = None
    provider: str | None = None
    session: str | None = None
    status: int | None = None
    since: float | None = None  # seconds since the epoch, inclusive
    until: float | None = None  # inclusive

    def matches(self, s: list) -> bool:
        return ((self.user is None or s[R_USER] == self.user)
                and (self.model is None or s[R_MODEL] == self.model)
                and (self.provider is None or s[R_PROVIDER] == self.provider)
                and (self.session is None or s[R_SESSION] == self.session)
                and (self.status is None or s[R_STATUS] == self.status)
                and (self.since is None or s[R_TIME] >= self.since)
                and (self.until is None or s[R_TIME] <= self.until))

    @property
    def only_time(self) -> bool:
        return (self.user is None and self.model is None and self.provider is None
                and self.session is None and self.status is None)


# ---------------------------------------------------------------------------
# Times


def rfc3339(t: float) -> str:
    return (_dt.datetime.fromtimestamp(t, _dt.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def utc_day(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d")


def parse_time(text: str, now: float) -> float:
    """RFC 3339 (`2025-05-01T12:00:00Z`, a date alone is midnight UTC, no
    offset means UTC), `now`, or a duration before now (`90m`, `1h`, `7d`)."""
    s = text.strip()
    if s == "now":
        return now
    if s and (s[0].isdigit() or s[0] == ".") and s[-1].isalpha() and "-" not in s and ":" not in s:
        return now - parse_duration(s)
    try:
        d = _dt.datetime.fromisoformat(s.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise ValueError(f"invalid time {text!r} (use RFC 3339 or a duration such as "
                         "90m, 7d)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d.timestamp()


# ---------------------------------------------------------------------------
# Reader


class CaptureReader:
    """Read access to the store under `data_dir` (an absent store reads as empty)."""

    def __init__(self, data_dir: str) -> None:
        self._h = open_env(data_dir, readonly=True)
        self.exists = self._h is not None

    def close(self) -> None:
        if self._h is not None:
            release_env(self._h)
            self._h = None

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _db(self, name: str):
        return self._h.dbs.get(name) if self._h is not None else None

    # -- listings -------------------------------------------------------

    def records(self, f: Filter = Filter(), limit: int | None = 50) -> list[dict]:
        """Matching records, newest first, as dicts with RECORD_FIELDS."""
        if self._h is None or limit == 0:
            return []
        out = []
        with self._h.read() as txn:
            for s in self._scan(txn, f):
                out.append(self._row(txn, s))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _scan(self, txn, f: Filter) -> Iterator[list]:
        """Summaries matching `f`, newest first, through the best index."""
        rec_db = self._db("rec")
        if rec_db is None:
            return
        for name, value in (("ix_s", f.session), ("ix_u", f.user), ("ix_m", f.model),
                            ("ix_p", f.provider)):
            if value is not None:
                db = self._db(name)
                prefix = key_field(value) + SEP
                break
        else:
            db, prefix = rec_db, b""
        if db is None:
            return
        lo = prefix + (ts_bytes(f.since) if f.since is not None else b"")
        hi = prefix + (ts_bytes(f.until) + b"\xff" if f.until is not None else b"\xff" * 9)
        loads = orjson.loads
        with txn.cursor(db=db) as cur:
            if cur.set_range(hi):
                ok = cur.prev()
            else:
                ok = cur.last()
            if not ok:
                return
            for key, value in cur.iterprev():
                if key < lo or not key.startswith(prefix):
                    break
                if db is not rec_db:
                    value = txn.get(key[len(prefix):], db=rec_db)
                    if value is None:
                        continue
                s = loads(value)
                if f.matches(s):
                    yield s

    def _row(self, txn, s: list) -> dict:
        tools = s[R_TOOLS]
        if tools:
            raw = txn.get(s[R_ID].encode(), db=self._db("tools"))
            calls = ([{"name": n, "arguments": a} for n, a in orjson.loads(raw)] if raw
                     else [{"name": n, "arguments": ""} for n in tools])
        else:
            calls = []
        return {
            "id": s[R_ID], "time": rfc3339(s[R_TIME]), "user": s[R_USER], "node": s[R_NODE],
            "tags": s[R_TAGS], "provider": s[R_PROVIDER], "model": s[R_MODEL],
            "api": s[R_API], "method": s[R_METHOD], "path": s[R_PATH], "status": s[R_STATUS],
            "stream": s[R_STREAM], "input_tokens": s[R_IN], "output_tokens": s[R_OUT],
            "cache_read_tokens": s[R_CREAD], "cache_write_tokens": s[R_CWRITE],
            "reasoning_tokens": s[R_REASON], "cost_usd": _usd(summary_cost(s)),
            "tool_calls": calls, "session": s[R_SESSION],
            "duration_ms": s[R_DURATION], "ttfb_ms": s[R_TTFB], "state": s[R_STATE],
            "error": s[R_ERROR],
        }

    # -- one capture ------------------------------------------------------

    def resolve_id(self, txn, ident: str) -> bytes | None:
        ids = self._db("ids")
        if ids is None or not ident:
            return None
        key = ident.encode("utf-8", "replace")
        if txn.get(key, db=ids) is not None:
            return key
        key = key.upper()
        found = []
        with txn.cursor(db=ids) as cur:
            if cur.set_range(key):
                for k in cur.iternext(keys=True, values=False):
                    if not k.startswith(key) or len(found) > 1:
                        break
                    found.append(k)
        if len(found) > 1:
            raise AmbiguousId(ident)
        return found[0] if found else None

    def get(self, ident: str) -> dict | None:
        """One whole capture: the record fields plus node_id, headers and bodies.

        `ident` is an id or an unambiguous prefix of one. Bodies are bytes, or
        None when they were not kept (retention) or purged.
        """
        if self._h is None:
            return None
        with self._h.read() as txn:
            idb = self.resolve_id(txn, ident)
            if idb is None:
                return None
            ts = txn.get(idb, db=self._db("ids"))
            raw = txn.get(ts + idb, db=self._db("rec"))
            if raw is None:
                return None
            s = orjson.loads(raw)
            row = self._row(txn, s)
            row["node_id"] = s[R_NODE_ID]
            row["request_body_size"] = s[R_REQ_SIZE]
            row["response_body_size"] = s[R_RESP_SIZE]
            row["request_body_truncated"] = s[R_REQ_TRUNC]
            row["response_body_truncated"] = s[R_RESP_TRUNC]
            cap = txn.get(idb, db=self._db("cap"))
            if cap is None:
                row.update(captured=False, request_headers=[], response_headers=[],
                           request_body=None, response_body=None)
                return row
            hdr, req, resp = codec.decode_capture(cap)
            qh, rh = codec.decode_headers(hdr)
            row.update(captured=True, request_headers=[list(h) for h in qh],
                       response_headers=[list(h) for h in rh],
                       request_body=blocks.rebuild(txn, self._h.dbs, req[0], req[2]),
                       response_body=blocks.rebuild(txn, self._h.dbs, resp[0], resp[2]))
            return row

    # -- usage ------------------------------------------------------------

    def usage(self, by: str, f: Filter = Filter()) -> list[dict]:
        """Per group: requests, each token kind, tool calls, summed duration."""
        if by not in USAGE_BY:
            raise ValueError(f"cannot group usage by {by!r}")
        if self._h is None:
            return []
        acc: dict[str, list] = {}
        with self._h.read() as txn:
            if by == "session" and f.since is None and f.until is None and f.model is None \
                    and f.provider is None and f.status is None:
                for tot in self._session_totals(txn, f):
                    acc[tot["session"]] = [tot["requests"]] + [tot[k] for k in TOKEN_FIELDS] + [
                        tot["tool_calls"], int(tot["duration_ms"] * 1000), tot.get("cost", 0),
                        tot.get("unpriced", tot["requests"])]
            elif by != "session" and f.only_time and self._db("roll") is not None:
                self._usage_from_rollups(txn, by, f, acc)
            else:
                for s in self._scan(txn, f):
                    _add_summary(acc, by, s)
        rows = []
        for group, v in acc.items():
            rows.append(_usage_row(by, group, v))
        if by == "day":
            rows.sort(key=lambda r: r["day"])
        else:
            rows.sort(key=lambda r: (-(r["input_tokens"] + r["output_tokens"]
                                       + r["cache_read_tokens"] + r["cache_write_tokens"]),
                                     -r["requests"], r[by]))
        return rows

    def _usage_from_rollups(self, txn, by: str, f: Filter, acc: dict) -> None:
        dim = {"user": DIM_USER, "model": DIM_MODEL, "provider": DIM_PROVIDER,
               "day": DIM_TOTAL, "tool": DIM_TOOL}[by]
        lo = f.since if f.since is not None else 0.0
        hi = (f.until + 1e-6) if f.until is not None else math.inf  # half-open [lo, hi)
        pieces, edges = _decompose(lo, hi)
        roll = self._db("roll")
        with txn.cursor(db=roll) as cur:
            for level, b0, b1 in pieces:
                prefix = dim + level
                if not cur.set_range(prefix + struct.pack(">I", b0)):
                    continue
                for key, value in cur.iternext():
                    if not key.startswith(prefix):
                        break
                    bucket = struct.unpack(">I", key[2:6])[0]
                    if bucket >= b1:
                        break
                    if by == "day":
                        t = bucket * (86400 if level == LEVEL_DAY else 3600)
                        group = utc_day(t)
                    else:
                        group = key[6:].decode("utf-8", "replace")
                    add_counts(acc, group, rollup_values(value))
        for a, b in edges:
            sub = Filter(since=a, until=b)
            for s in self._scan(txn, sub):
                if s[R_TIME] < b:
                    _add_summary(acc, by, s)

    # -- sessions -----------------------------------------------------------

    def sessions(self, f: Filter = Filter(), limit: int | None = 50) -> list[dict]:
        """Sessions with activity in the time range, latest activity first."""
        if self._h is None or limit == 0:
            return []
        out = []
        with self._h.read() as txn:
            for tot in self._session_totals(txn, f):
                out.append(_session_row(tot))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _session_totals(self, txn, f: Filter) -> Iterator[dict]:
        ses = self._db("ses")
        if ses is None:
            return
        if f.session is not None:
            raw = txn.get(f.session.encode("utf-8", "surrogatepass"), db=ses)
            if raw is not None:
                tot = orjson.loads(raw)
                if _session_matches(tot, f):
                    yield tot
            return
        if f.user is not None:
            db, prefix = self._db("ses_u"), key_field(f.user) + SEP
        else:
            db, prefix = self._db("ses_t"), b""
        if db is None:
            return
        lo = prefix + (ts_bytes(f.since) if f.since is not None else b"")
        with txn.cursor(db=db) as cur:
            if cur.set_range(prefix + b"\xff" * 9):
                ok = cur.prev()
            else:
                ok = cur.last()
            if not ok:
                return
            for key in cur.iterprev(keys=True, values=False):
                if key < lo or not key.startswith(prefix):
                    break
                sid = key[len(prefix) + 8:]
                raw = txn.get(sid, db=ses)
                if raw is None:
                    continue
                tot = orjson.loads(raw)
                if _session_matches(tot, f):
                    yield tot


def _session_matches(tot: dict, f: Filter) -> bool:
    return ((f.user is None or tot["user"] == f.user)
            and (f.model is None or f.model in tot["models"])
            and (f.provider is None or f.provider in tot["providers"])
            and (f.status is None or str(f.status) in tot["statuses"])
            and (f.since is None or tot["last"] >= f.since)
            and (f.until is None or tot["first"] <= f.until))


def _session_row(tot: dict) -> dict:
    row = {"session": tot["session"], "user": tot["user"], "first": rfc3339(tot["first"]),
           "last": rfc3339(tot["last"]), "requests": tot["requests"]}
    for k in TOKEN_FIELDS:
        row[k] = tot[k]
    row["tool_calls"] = tot["tool_calls"]
    row["duration_ms"] = round(tot["duration_ms"], 3)
    unpriced = tot.get("unpriced", tot["requests"])
    row["cost_usd"] = cost_usd(tot.get("cost", 0), unpriced, tot["requests"])
    row["unpriced_requests"] = unpriced
    row["tools"] = dict(sorted(tot["tools"].items(), key=lambda kv: (-kv[1], kv[0])))
    row["models"] = sorted(tot["models"])
    return row


def _usd(nano: int | None) -> float | None:
    return None if nano is None else nano / NANO


def _usage_row(by: str, group, v: list) -> dict:
    row = {by: group}
    row.update(zip(USAGE_FIELDS, v))
    row["duration_ms"] = v[7] / 1000
    row["cost_usd"] = cost_usd(v[8], v[9], v[0])
    row["unpriced_requests"] = v[9]
    return row


def summary_figures(s: list) -> list:
    """A record summary as the ten rollup figures."""
    cost = summary_cost(s)
    return [1, s[R_IN], s[R_OUT], s[R_CREAD], s[R_CWRITE], s[R_REASON], len(s[R_TOOLS]),
            int((s[R_DURATION] or 0) * 1000), cost or 0, 1 if cost is None else 0]


def _add_summary(acc: dict, by: str, s: list) -> None:
    vals = summary_figures(s)
    if by == "tool":
        counts: dict[str, int] = {}
        for name in s[R_TOOLS]:
            counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            vals[6] = n
            add_counts(acc, name, vals)
        return
    if by == "day":
        group = utc_day(s[R_TIME])
    else:
        group = s[{"user": R_USER, "model": R_MODEL, "provider": R_PROVIDER,
                   "session": R_SESSION}[by]]
    add_counts(acc, group, vals)


def _decompose(lo: float, hi: float):
    """Split [lo, hi) into whole days, whole hours and leftover edges.

    Returns ([(level, first bucket, end bucket)], [(edge start, edge end)]).
    """
    top = 0xFFFFFFFF
    pieces = []
    edges = []
    h0 = math.ceil(lo / 3600)
    h1 = top if hi == math.inf else math.floor(hi / 3600)
    if h0 >= h1:
        return [], [(lo, hi)]
    if lo < h0 * 3600:
        edges.append((lo, h0 * 3600.0))
    if hi != math.inf and h1 * 3600 < hi:
        edges.append((h1 * 3600.0, hi))
    d0 = math.ceil(h0 / 24)
    d1 = top if h1 == top else h1 // 24
    if d0 < d1:
        pieces.append((LEVEL_DAY, d0, d1))
        if h0 < d0 * 24:
            pieces.append((LEVEL_HOUR, h0, d0 * 24))
        if h1 != top and d1 * 24 < h1:
            pieces.append((LEVEL_HOUR, d1 * 24, h1))
    else:
        pieces.append((LEVEL_HOUR, h0, h1))
    return pieces, edges
