"""The dashboard (/ui/), its data endpoints (/api/...) and /metrics.

`install(gateway)` adds them to the gateway's route table. Pages are small
HTML shells (pages.py) whose script draws the data it fetches from the data
endpoints; the data come from the capture store through a reader process
(data.py), never on the event loop.

Who sees what (reference aperture.md §3): the caller is known as for every
other request (tailnet WhoIs), no login or cookie. A caller needs a role.
Users see their own data only: a `user` parameter naming someone else is a
403, and a session or capture of someone else is the same 404 as one that
does not exist. Admins see everyone's, open any user's dashboard
(/ui/dashboard/<login>), Adoption and Settings. /metrics needs the
`read_metrics` grant or the admin role.

Data endpoints (GET, JSON; `format=csv` where noted). Times are RFC 3339 or
durations back from now (`24h`, `7d`); bad parameters are a 400 naming the
parameter.

    /api/usage          since, until, user, model, provider, tool,
                        by (any of user,provider,model,tool), bucket (hour|day),
                        format (json|csv)
    /api/summary        since, until, user
    /api/sessions       since, until, user, model, provider, status, state,
                        tool, limit, cursor
    /api/sessions/ID    limit, cursor (the session's requests, oldest first)
    /api/captures/ID    one capture: fields, headers, cost, body descriptions
    /api/captures/ID/request_body, .../response_body
                        view (raw|pretty|events), offset, limit
    /api/models         the models the caller may use: provider, formats, price
    /api/users          since, until, format (admins)
    /api/active-users   since, until, bucket (admins)
"""

from __future__ import annotations

import csv
import io
import mimetypes
import time
from importlib import resources
from urllib.parse import parse_qsl, unquote

import orjson

from aperture import metrics
from aperture.capture.dashboard import BUCKETS, GROUPS, decode_cursor
from aperture.capture.query import parse_time
from aperture.capture.record import (CLIENT_DISCONNECTED, COMPLETE, INCOMPLETE, REFUSED,
                                     UPSTREAM_ERROR)
from aperture.errors import BadRequest, Forbidden, GatewayError, NotFound

from . import data, pages
from .guard import Guard, default_hosts

__all__ = ["install", "UI"]

STATES = (COMPLETE, REFUSED, UPSTREAM_ERROR, CLIENT_DISCONNECTED, INCOMPLETE)
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
         (b"x-content-type-options", b"nosniff")]
NO_ROLE = "access denied: no role granted"
ADMIN_ONLY = "access denied: admin role required"
OTHERS = "access denied: only admins see other users' data"
NO_CAPTURE = "no such capture"
NO_SESSION = "no such session"
MAX_HOUR_RANGE = 31 * 86400


class Params:
    """Query parameters, each parsed or refused with a 400 naming it."""

    def __init__(self, query: str, allowed: tuple[str, ...]) -> None:
        self.values: dict[str, str] = {}
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                              errors="strict", max_num_fields=64)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("query string: not valid") from None
        for name, value in pairs:
            if name not in allowed:
                raise BadRequest(f"{name}: unknown parameter (this endpoint takes "
                                 + ", ".join(allowed) + ")")
            if name in self.values:
                raise BadRequest(f"{name}: given more than once")
            self.values[name] = value
        self.now = time.time()

    def text(self, name: str, max_len: int = 256) -> str | None:
        v = self.values.get(name)
        if v is None or v == "":
            return None
        if len(v) > max_len or any(ord(c) < 32 for c in v):
            raise BadRequest(f"{name}: not a valid value")
        return v

    def time(self, name: str) -> float | None:
        v = self.text(name, 64)
        if v is None:
            return None
        try:
            return parse_time(v, self.now)
        except ValueError as e:
            raise BadRequest(f"{name}: {e}") from None

    def range(self) -> tuple[float | None, float | None]:
        since, until = self.time("since"), self.time("until")
        if since is not None and until is not None and since > until:
            raise BadRequest("since: later than until")
        return since, until

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.text(name, 20)
        if v is None:
            return default
        if not v.isdigit() or not lo <= int(v) <= hi:
            raise BadRequest(f"{name}: must be a whole number from {lo} to {hi}")
        return int(v)

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        v = self.text(name, 64)
        if v is None:
            return default
        if v not in choices:
            raise BadRequest(f"{name}: must be one of " + ", ".join(choices))
        return v

    def cursor(self) -> str | None:
        v = self.text("cursor", 1024)
        if v is not None:
            try:
                decode_cursor(v)
            except ValueError:
                raise BadRequest("cursor: not a cursor from a previous page") from None
        return v


class UI:
    def __init__(self, gateway) -> None:
        self.gw = gateway
        s = gateway.settings
        self.guard = Guard(s.ui_hosts or default_hosts(s.listen_host),
                           _exchange_handlers(gateway))
        self.reader = data.Reader(s.data_dir)

    def close(self) -> None:
        self.reader.close()

    # -- shared -------------------------------------------------------------------

    async def _caller(self, req):
        identity = await self.gw.identify(req)
        policy = self.gw.current().policy
        return identity, policy.role(identity), policy

    async def _read(self, op: str, *args):
        if self.gw.settings.data_dir is None:
            return data.call(op, "", *args)  # capture off: the empty store's answers
        return await self.reader(op, *args)

    def _send_json(self, resp, status: int, body) -> None:
        resp.send(status, _JSON, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))

    def _send_error(self, resp, exc: GatewayError) -> None:
        self._send_json(resp, exc.status, {"error": {"message": exc.message,
                                                     "status": exc.status}})

    async def refuse(self, req, resp, handler, reason: str) -> None:
        """The guard said no."""
        if req.path.startswith("/ui"):
            resp.send(403, pages.HTML_HEADERS, pages.error(403, reason))
        elif getattr(handler, "func", None) == self.gw._exchange:
            self.gw._error(resp, handler.args[0], Forbidden(reason))  # in the API's own format
        else:
            self._send_error(resp, Forbidden(reason))

    # -- pages ----------------------------------------------------------------------

    async def page(self, req, resp) -> None:
        path = req.path
        if path == "/ui":
            resp.send(308, [(b"location", b"/ui/")], b"")
            return
        try:
            identity, role, _ = await self._caller(req)
        except GatewayError as exc:
            resp.send(exc.status, pages.HTML_HEADERS, pages.error(exc.status, exc.message))
            return
        who = identity.principal or "?"
        rest = path[len("/ui/"):]
        parts = [unquote(p) for p in rest.split("/")]
        if parts and parts[-1] == "":
            parts.pop()
        if role is None:
            resp.send(403, pages.HTML_HEADERS, pages.error(403, NO_ROLE, who=who))
            return
        found = _route_page(parts)
        if found is None:
            resp.send(404, pages.HTML_HEADERS,
                      pages.error(404, f"no page at {path}", who=who, role=role))
            return
        page_id, subject, ident = found
        if page_id in ("adoption", "settings") and role != "admin":
            resp.send(403, pages.HTML_HEADERS, pages.error(
                403, f"{ADMIN_ONLY}: only admins see the {pages.TITLES[page_id]} page",
                who=who, role=role))
            return
        if page_id == "dashboard" and subject and subject != who and role != "admin":
            resp.send(403, pages.HTML_HEADERS, pages.error(
                403, f"{OTHERS}: you may see your own dashboard at /ui/", who=who, role=role))
            return
        title = pages.TITLES.get(page_id, "Logs")
        if page_id == "dashboard" and subject:
            title = f"Dashboard of {subject}"
        elif page_id == "session":
            title = "Session"
        elif page_id == "request":
            title = "Request"
        resp.send(200, pages.HTML_HEADERS, pages.page(page_id, title=title, who=who, role=role,
                                                      subject=subject, ident=ident))

    async def static(self, req, resp) -> None:
        name = req.path[len("/ui/static/"):]
        if not name or ".." in name or name.startswith("/") or "\\" in name:
            resp.send(404, [(b"content-type", b"text/plain")], b"not found\n")
            return
        try:
            body = resources.files(__name__).joinpath("static", *name.split("/")).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, OSError):
            resp.send(404, [(b"content-type", b"text/plain")], b"not found\n")
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/javascript":
            ctype += "; charset=utf-8"
        resp.send(200, [(b"content-type", ctype.encode()), (b"cache-control", b"no-cache"),
                        (b"x-content-type-options", b"nosniff")], body)

    # -- data endpoints ----------------------------------------------------------------

    async def api(self, req, resp) -> None:
        try:
            identity, role, policy = await self._caller(req)
            if role is None:
                raise Forbidden(NO_ROLE)
            me = identity.principal
            path = req.path
            if path == "/api/usage":
                await self._usage(req, resp, role, me)
            elif path == "/api/summary":
                p = Params(req.query, ("since", "until", "user"))
                since, until = p.range()
                q = {"since": since, "until": until, "user": self._user(p, role, me)}
                self._send_json(resp, 200, await self._read("summary", q))
            elif path == "/api/sessions":
                await self._sessions(req, resp, role, me)
            elif path.startswith("/api/sessions/"):
                await self._session(req, resp, role, me, unquote(path[len("/api/sessions/"):]))
            elif path.startswith("/api/captures/"):
                await self._capture(req, resp, role, me, path[len("/api/captures/"):])
            elif path == "/api/models":
                Params(req.query, ())
                self._send_json(resp, 200, {"models": _models(identity, self.gw.current())})
            elif path == "/api/users":
                if role != "admin":
                    raise Forbidden(ADMIN_ONLY)
                p = Params(req.query, ("since", "until", "format"))
                since, until = p.range()
                fmt = p.choice("format", ("json", "csv"), "json")
                out = await self._read("users", {"since": since, "until": until})
                if fmt == "csv":
                    fields = ("user", "requests", "input_tokens", "output_tokens",
                              "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
                              "tool_calls", "cost_usd", "unpriced_requests", "last_seen")
                    self._send_csv(resp, out["rows"], fields, "aperture-users.csv")
                else:
                    self._send_json(resp, 200, out)
            elif path == "/api/active-users":
                if role != "admin":
                    raise Forbidden(ADMIN_ONLY)
                p = Params(req.query, ("since", "until", "bucket"))
                since, until = p.range()
                bucket = p.choice("bucket", BUCKETS, "day")
                _check_hours(bucket, since, until, p.now)
                self._send_json(resp, 200, await self._read(
                    "active_users", {"since": since, "until": until, "bucket": bucket}))
            else:
                raise NotFound(f"no endpoint {path}")
        except GatewayError as exc:
            self._send_error(resp, exc)

    def _user(self, p: Params, role: str, me: str) -> str | None:
        user = p.text("user")
        if role == "admin":
            return user
        if user is not None and user != me:
            raise Forbidden(OTHERS)
        return me

    async def _usage(self, req, resp, role: str, me: str) -> None:
        p = Params(req.query, ("since", "until", "user", "model", "provider", "tool", "by",
                               "bucket", "format"))
        since, until = p.range()
        by = ()
        raw_by = p.text("by", 64)
        if raw_by is not None:
            by = tuple(raw_by.split(","))
            if any(b not in GROUPS for b in by) or len(set(by)) != len(by):
                raise BadRequest("by: must be a comma-separated list of " + ", ".join(GROUPS))
        bucket = p.choice("bucket", BUCKETS)
        _check_hours(bucket, since, until, p.now)
        fmt = p.choice("format", ("json", "csv"), "json")
        q = {"since": since, "until": until, "user": self._user(p, role, me),
             "model": p.text("model"), "provider": p.text("provider"), "tool": p.text("tool"),
             "group": by, "bucket": bucket}
        out = await self._read("usage", q)
        if fmt == "csv":
            fields = (("time",) if bucket else ()) + by + (
                "requests", "input_tokens", "output_tokens", "cache_read_tokens",
                "cache_write_tokens", "reasoning_tokens", "tool_calls", "cost_usd",
                "unpriced_requests")
            self._send_csv(resp, out["rows"], fields, "aperture-usage.csv")
            return
        self._send_json(resp, 200, out)

    def _send_csv(self, resp, rows: list[dict], fields, filename: str) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(fields)
        for r in rows:
            w.writerow(["" if r.get(f) is None else _csv_safe(r.get(f)) for f in fields])
        resp.send(200, [(b"content-type", b"text/csv; charset=utf-8"),
                        (b"content-disposition", b'attachment; filename="%s"' % filename.encode()),
                        (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")],
                  buf.getvalue().encode("utf-8"))

    async def _sessions(self, req, resp, role: str, me: str) -> None:
        p = Params(req.query, ("since", "until", "user", "model", "provider", "status",
                               "state", "tool", "limit", "cursor"))
        since, until = p.range()
        status = p.text("status", 3)
        if status is not None and (not status.isdigit() or not 100 <= int(status) <= 599):
            raise BadRequest("status: must be an HTTP status code from 100 to 599")
        q = {"since": since, "until": until, "user": self._user(p, role, me),
             "model": p.text("model"), "provider": p.text("provider"),
             "status": int(status) if status else None, "state": p.choice("state", STATES),
             "tool": p.text("tool")}
        limit = p.integer("limit", 50, 1, 500)
        self._send_json(resp, 200, await self._read("sessions", q, limit, p.cursor()))

    async def _session(self, req, resp, role: str, me: str, sid: str) -> None:
        p = Params(req.query, ("limit", "cursor"))
        limit = p.integer("limit", 100, 1, 500)
        if not sid or len(sid) > 200:
            raise NotFound(NO_SESSION)
        out = await self._read("session", sid, limit, p.cursor())
        if out is None or (role != "admin" and out["session"]["user"] != me):
            raise NotFound(NO_SESSION)
        self._send_json(resp, 200, out)

    async def _capture(self, req, resp, role: str, me: str, rest: str) -> None:
        ident, _, side = rest.partition("/")
        if side:
            if side not in ("request_body", "response_body"):
                raise NotFound(f"no endpoint {req.path}")
            p = Params(req.query, ("view", "offset", "limit"))
            view = p.choice("view", ("raw", "pretty", "events"), "raw")
            offset = p.integer("offset", 0, 0, 1 << 40)
            limit = p.integer("limit", 0, 1, 1 << 20) or None
            out = await self._read("body", ident, side[:-5], view, offset, limit)
            if out is None or (role != "admin" and out.pop("user") != me):
                raise NotFound(NO_CAPTURE)
            out.pop("user", None)
            self._send_json(resp, 200, out)
            return
        Params(req.query, ())
        out = await self._read("capture", ident)
        if out is None or (role != "admin" and out["user"] != me):
            raise NotFound(NO_CAPTURE)
        self._send_json(resp, 200, out)

    # -- /metrics ------------------------------------------------------------------------

    async def metrics(self, req, resp) -> None:
        try:
            identity, role, policy = await self._caller(req)
            if not policy.may_read_metrics(identity):
                raise Forbidden("access denied: /metrics needs the read_metrics grant or the "
                                "admin role")
            body = await metrics.scrape(self.gw)
        except GatewayError as exc:
            resp.send(exc.status, [(b"content-type", b"text/plain; charset=utf-8")],
                      exc.message.encode() + b"\n")
            return
        resp.send(200, [(b"content-type", metrics.CONTENT_TYPE),
                        (b"cache-control", b"no-store")], body)


def _models(identity, snapshot) -> list[dict]:
    """Every (provider, model) the caller may use, with formats and price."""
    out = []
    for provider, model in snapshot.policy.allowed_models(identity, snapshot.config.providers):
        price = snapshot.prices.price(provider.id, model)
        flags = sorted(provider.compatibility)
        out.append({"provider": provider.id, "provider_name": provider.name or provider.id,
                    "model": model, "formats": flags,
                    "compatibility": {f: True for f in flags},
                    "price": price.as_dict() if price is not None else None})
    return out


def _csv_safe(value) -> str:
    """A cell a spreadsheet will not run as a formula."""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_hours(bucket: str | None, since: float | None, until: float | None, now: float) -> None:
    if bucket == "hour" and (since is None or (until or now) - since > MAX_HOUR_RANGE):
        raise BadRequest("bucket: hour buckets need since, and a range of at most 31 days")


def _route_page(parts: list[str]) -> tuple[str, str, str] | None:
    """(page id, subject login, capture or session id) of /ui/... path parts."""
    if not parts:
        return "dashboard", "", ""
    head = parts[0]
    if head == "dashboard" and len(parts) == 2 and parts[1]:
        return "dashboard", parts[1], ""
    if head == "logs":
        if len(parts) == 1:
            return "logs", "", ""
        if len(parts) == 3 and parts[1] == "session" and parts[2]:
            return "session", "", parts[2]
        if len(parts) == 3 and parts[1] == "request" and parts[2]:
            return "request", "", parts[2]
        return None
    if len(parts) == 1 and head in ("tool-use", "adoption", "models", "settings"):
        return head, "", ""
    return None


# Management reads that clients make with whatever base URL they have (a
# health check, aperture-cli): like the API formats, checked for their Host
# only when a browser asks. /api/config is not among them.
CLIENT_READS = ("/v1/models", "/api/providers", "/api/whoami")


def _exchange_handlers(gateway) -> set[int]:
    """The route table's handlers of the API formats and CLIENT_READS (their ids)."""
    routes = gateway.routes
    handlers = list(routes._exact.values()) + [h for _p, _m, h in routes._prefixes]
    ids = {id(h) for h in handlers if getattr(h, "func", None) == gateway._exchange}
    for path in CLIENT_READS:
        h = routes.find("GET", path)
        if h is not None:
            ids.add(id(h))
    return ids


def install(gateway) -> UI:
    ui = UI(gateway)
    routes = gateway.routes
    routes.add("GET", "/ui", ui.page)
    routes.add("GET", "/ui/", ui.page, prefix=True)
    routes.add("GET", "/ui/static/", ui.static, prefix=True)
    for path in ("/api/usage", "/api/summary", "/api/sessions", "/api/users",
                 "/api/active-users", "/api/models"):
        routes.add("GET", path, ui.api)
    routes.add("GET", "/api/sessions/", ui.api, prefix=True)
    routes.add("GET", "/api/captures/", ui.api, prefix=True)
    routes.add("GET", "/metrics", ui.metrics)
    return ui
