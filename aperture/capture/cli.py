"""`aperture query`: read the capture store from the command line.

    aperture query [filters] [--limit N] [--format F]     one row per request, newest first
    aperture query show ID [--format text|json]           one whole capture
    aperture query usage --by user|model|provider|day|session|tool [filters] [--format F]
    aperture query sessions [filters] [--limit N] [--format F]

Filters: --user, --model, --provider, --session, --status, --since, --until.
Times are RFC 3339 (`2025-05-01T12:00:00Z`; a date alone is midnight UTC; no
offset means UTC) or a duration back from now (`90m`, `1h`, `7d`). Options
given before a subcommand apply to it too. The store is read directly, in
read-only transactions, so this works while the gateway is running.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import time
import unicodedata
from collections.abc import Iterator
from datetime import datetime

import click
import orjson

from .query import (RECORD_FIELDS, SESSION_FIELDS, USAGE_BY, USAGE_FIELDS, AmbiguousId,
                    CaptureReader, Filter, parse_time)
from .schema import StoreError

DEFAULT_DATA_DIR = "./aperture-data"
ENV_DATA_DIR = "APERTURE_DATA_DIR"
FORMATS = ("table", "json", "jsonl", "csv")
TABLE_WIDTH = 80


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return parse_time(str(value), time.time())
        except ValueError as e:
            self.fail(str(e), param, ctx)


TIME = TimeParam()


def _common(fn):
    """The options shared by the listing, usage and sessions commands."""
    opts = [
        click.option("--data-dir", envvar=ENV_DATA_DIR, default=None,
                     type=click.Path(file_okay=False),
                     help=f"Data directory [default: {DEFAULT_DATA_DIR}; env {ENV_DATA_DIR}]."),
        click.option("--user", default=None, help="Only this user (login)."),
        click.option("--model", default=None, help="Only this model."),
        click.option("--provider", default=None, help="Only this provider id."),
        click.option("--session", default=None, help="Only this session id."),
        click.option("--status", default=None, type=click.IntRange(0, 999),
                     help="Only this HTTP status."),
        click.option("--since", default=None, type=TIME,
                     help="From this time (RFC 3339, or 90m, 1h, 7d ago)."),
        click.option("--until", default=None, type=TIME, help="Up to this time."),
        click.option("--format", "fmt", default=None, type=click.Choice(FORMATS),
                     help="Output format [default: table]."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


_LIMIT = click.option("--limit", default=None, type=click.IntRange(min=0),
                      help="At most N rows [default: 50].")
_SHARED = ("data_dir", "user", "model", "provider", "session", "status", "since", "until",
           "fmt", "limit")


def _settings(ctx: click.Context, given: dict) -> dict:
    """This command's options, falling back to those given before the subcommand."""
    parent = (ctx.parent.obj or {}) if ctx.parent is not None else {}
    out = {}
    for k in _SHARED:
        v = given.get(k)
        out[k] = v if v is not None else parent.get(k)
    out["data_dir"] = out["data_dir"] or DEFAULT_DATA_DIR
    out["fmt"] = out["fmt"] or "table"
    if out["limit"] is None:
        out["limit"] = 50
    if out["since"] is not None and out["until"] is not None and out["since"] > out["until"]:
        raise click.UsageError("--since is after --until", ctx)
    return out


@contextlib.contextmanager
def _reader(data_dir: str) -> Iterator[CaptureReader]:
    """A reader whose store errors become a clean message and exit status 1."""
    try:
        with CaptureReader(data_dir) as reader:
            yield reader
    except StoreError as e:
        raise click.ClickException(str(e)) from None


def _filter(s: dict) -> Filter:
    return Filter(user=s["user"], model=s["model"], provider=s["provider"],
                  session=s["session"], status=s["status"], since=s["since"],
                  until=s["until"])


@click.group("query", invoke_without_command=True)
@_common
@_LIMIT
@click.pass_context
def query(ctx: click.Context, **given) -> None:
    """List captured requests, newest first (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = dict(given)
        return
    s = _settings(ctx, given)
    with _reader(s["data_dir"]) as reader:
        rows = reader.records(_filter(s), s["limit"])
    _emit(rows, RECORD_FIELDS, s["fmt"], _records_table)


@query.command("show")
@click.argument("capture_id", metavar="ID")
@click.option("--data-dir", envvar=ENV_DATA_DIR, default=None, type=click.Path(file_okay=False),
              help=f"Data directory [default: {DEFAULT_DATA_DIR}; env {ENV_DATA_DIR}].")
@click.option("--format", "fmt", default="text", show_default=True,
              type=click.Choice(("text", "json")))
@click.pass_context
def show(ctx: click.Context, capture_id: str, data_dir: str | None, fmt: str) -> None:
    """One whole capture: fields, headers and bodies (base64 when not UTF-8)."""
    parent = (ctx.parent.obj or {}) if ctx.parent is not None else {}
    data_dir = data_dir or parent.get("data_dir") or DEFAULT_DATA_DIR
    with _reader(data_dir) as reader:
        try:
            cap = reader.get(capture_id)
        except AmbiguousId:
            raise click.ClickException(f"{capture_id!r} matches several captures; "
                                       "give more of the id") from None
    if cap is None:
        raise click.ClickException(f"no capture with id {capture_id!r}")
    if fmt == "json":
        out = dict(cap)
        for which in ("request_body", "response_body"):
            out[which], out[which + "_encoding"] = _body_text(cap[which])
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(_show_text(cap), nl=False)


@query.command("usage")
@click.option("--by", "by", default="user", show_default=True, type=click.Choice(USAGE_BY))
@_common
@click.pass_context
def usage(ctx: click.Context, by: str, **given) -> None:
    """Requests, tokens and estimated cost per user, model, provider, day (UTC),
    session or tool (cost_usd sums the requests with a price; unpriced_requests
    counts the others)."""
    s = _settings(ctx, given)
    with _reader(s["data_dir"]) as reader:
        rows = reader.usage(by, _filter(s))
    _emit(rows, (by,) + USAGE_FIELDS, s["fmt"], lambda r: _usage_table(r, by))


@query.command("sessions")
@_common
@_LIMIT
@click.pass_context
def sessions(ctx: click.Context, **given) -> None:
    """Sessions with activity in the range, latest first, with their totals."""
    s = _settings(ctx, given)
    with _reader(s["data_dir"]) as reader:
        rows = reader.sessions(_filter(s), s["limit"])
    _emit(rows, SESSION_FIELDS, s["fmt"], _sessions_table)


# ---------------------------------------------------------------------------
# Output


def _emit(rows: list[dict], fields, fmt: str, table) -> None:
    if fmt == "json":
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    elif fmt == "jsonl":
        for r in rows:
            click.echo(orjson.dumps(r).decode())
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(fields)
        for r in rows:
            w.writerow([_csv_cell(r.get(f)) for f in fields])
        click.echo(buf.getvalue(), nl=False)
    else:
        click.echo(table(rows), nl=False)


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(x["name"] if isinstance(x, dict) else str(x) for x in v)
    if isinstance(v, dict):
        return ",".join(f"{k}:{n}" for k, n in v.items())
    return str(v)


def _human(n: int | float) -> str:
    """At most 5 characters: 12345, 167k, 4.2M, 418M, 1.3G."""
    n = int(n)
    if n < 100_000:
        return str(n)
    for unit, div in (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
        v = n / div
        if v < 9.95:
            return f"{v:.1f}{unit}"
        if v < 999.5:
            return f"{v:.0f}{unit}"
    return f"{n / 1e15:.0f}P"


def _money(usd: float | None) -> str:
    """At most 8 characters: $0.00012, $12.34, $1234.5k; "no price" for None."""
    if usd is None:
        return "no price"
    if usd < 0.01:
        return f"${usd:.5f}" if usd else "$0"
    if usd < 10_000:
        return f"${usd:.2f}"
    return f"${usd / 1000:.0f}k"


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _fit(s: str, w: int) -> str:
    s = "".join(c if c.isprintable() else "?" for c in s)
    if _width(s) <= w:
        return s
    out = ""
    for c in s:
        if _width(out + c) > w - 1:
            break
        out += c
    return out + "…"


def _table(columns: list[tuple[str, int, bool, bool]], rows: list[list[str]]) -> str:
    """columns: (header, width it may shrink to, right-aligned, shrinkable)."""
    widths = [max([_width(h)] + [_width(r[i]) for r in rows]) for i, (h, *_ ) in enumerate(columns)]
    total = sum(widths) + len(widths) - 1
    # Shrink the widest shrinkable column until the table fits.
    while total > TABLE_WIDTH - 1:
        cands = [i for i, c in enumerate(columns) if c[3] and widths[i] > c[1]]
        if not cands:
            break
        i = max(cands, key=lambda j: widths[j])
        widths[i] -= 1
        total -= 1
    lines = []
    for cells in [[c[0] for c in columns]] + rows:
        parts = []
        for i, cell in enumerate(cells):
            cell = _fit(cell, widths[i])
            pad = " " * (widths[i] - _width(cell))
            parts.append(pad + cell if columns[i][2] else cell + pad)
        lines.append(" ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def _local(ts: str) -> str:
    d = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone()
    return d.strftime("%m-%d %H:%M")


def _records_table(rows: list[dict]) -> str:
    # Durations and tool calls are in the json/csv formats; 80 columns hold the rest.
    cols = [("ID", 26, False, False), ("TIME", 11, False, False), ("USER", 6, False, True),
            ("MODEL", 8, False, True), ("ST", 3, True, False), ("IN", 2, True, False),
            ("OUT", 3, True, False), ("COST", 4, True, False)]
    body = [[r["id"], _local(r["time"]), r["user"], r["model"] or "-", str(r["status"]),
             _human(r["input_tokens"]), _human(r["output_tokens"]), _money(r["cost_usd"])]
            for r in rows]
    return _table(cols, body)


def _usage_table(rows: list[dict], by: str) -> str:
    cols = [(by.upper(), 8, False, True), ("REQS", 4, True, False), ("INPUT", 5, True, False),
            ("OUTPUT", 6, True, False), ("C.READ", 6, True, False),
            ("C.WRITE", 7, True, False), ("REASON", 6, True, False), ("CALLS", 5, True, False),
            ("COST", 4, True, False)]
    body = [[r[by] or "-", _human(r["requests"]), _human(r["input_tokens"]),
             _human(r["output_tokens"]), _human(r["cache_read_tokens"]),
             _human(r["cache_write_tokens"]), _human(r["reasoning_tokens"]),
             _human(r["tool_calls"]), _money(r["cost_usd"])] for r in rows]
    return _table(cols, body)


def _sessions_table(rows: list[dict]) -> str:
    cols = [("SESSION", 30, False, True), ("USER", 6, False, True), ("LAST", 11, False, False),
            ("REQS", 4, True, False), ("IN", 2, True, False), ("OUT", 3, True, False),
            ("COST", 4, True, False), ("TOOLS", 5, False, True)]
    body = []
    for r in rows:
        tools = " ".join(f"{k}:{n}" for k, n in r["tools"].items()) or "-"
        body.append([r["session"], r["user"], _local(r["last"]), str(r["requests"]),
                     _human(r["input_tokens"]), _human(r["output_tokens"]),
                     _money(r["cost_usd"]), tools])
    return _table(cols, body)


def _body_text(body: bytes | None) -> tuple[str | None, str | None]:
    if body is None:
        return None, None
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def _show_text(c: dict) -> str:
    out = io.StringIO()
    w = out.write
    node = c["node"] + (f" ({c['node_id']})" if c.get("node_id") else "")
    fields = [
        ("id", c["id"]), ("time", c["time"]), ("user", c["user"]), ("node", node),
        ("tags", ", ".join(c["tags"])), ("provider", c["provider"]), ("model", c["model"]),
        ("api", c["api"]), ("request", f"{c['method']} {c['path']}"),
        ("status", f"{c['status']} ({c['state']})" + (", stream" if c["stream"] else "")),
        ("tokens", f"input {c['input_tokens']}, output {c['output_tokens']}, cache read "
                   f"{c['cache_read_tokens']}, cache write {c['cache_write_tokens']}, "
                   f"reasoning {c['reasoning_tokens']}"),
        ("cost", "no price" if c["cost_usd"] is None else f"${c['cost_usd']:.6f} (estimated)"),
        ("session", c["session"]),
        ("duration", f"{c['duration_ms']} ms" + (f" (first byte {c['ttfb_ms']} ms)"
                                                  if c["ttfb_ms"] is not None else "")),
    ]
    if c["error"]:
        fields.append(("error", c["error"]))
    for k, v in fields:
        w(f"{k:<10}{v}\n")
    if c["tool_calls"]:
        w("tool calls\n")
        for t in c["tool_calls"]:
            w(f"  {t['name']} {t['arguments']}\n")
    for side in ("request", "response"):
        w(f"\n--- {side} headers ---\n")
        for k, v in c[f"{side}_headers"]:
            w(f"{k}: {v}\n")
        body = c[f"{side}_body"]
        size = c[f"{side}_body_size"]
        if body is None:
            w(f"\n--- {side} body: not kept (retention) ---\n")
            continue
        text, enc = _body_text(body)
        note = f"{size} bytes" + (", base64" if enc == "base64" else "")
        w(f"\n--- {side} body ({note}) ---\n")
        if text:
            w(text)
            if not text.endswith("\n"):
                w("\n")
        if c[f"{side}_body_truncated"]:
            w(f"[truncated: only the first {size} bytes were kept]\n")
    return out.getvalue()
