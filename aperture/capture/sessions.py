"""Which session a request belongs to, and the running totals of each session.

The rule. A request belongs to the session its client names, when the client
names one: `Record.session_hint` set by the gateway, else the request headers
`x-claude-code-session-id`, `session_id` or `conversation_id` (Codex) and
`x-session-id`, else Claude Code's `metadata.user_id` in the body (the part
after `_session_` of `user_<hash>_account_<uuid>_session_<uuid>`, or the
`session_id` of a JSON-encoded user_id object); that id is the session id.
Otherwise a Responses API request that continues a stored response
(`previous_response_id`) joins the session of the request that made that
response (the `resp` index). Otherwise the request is grouped by conversation:
its message history (the
`messages` list of the Anthropic and OpenAI chat formats, Gemini's `contents`,
or the Responses API's `input` list, in order, with Anthropic `cache_control`
markers ignored) is compared with the histories of the same user's earlier
requests, and if an earlier request's history is a prefix of this one's (or
the same), the request joins that request's session. Otherwise it starts a new
session with a new id. Requests that carry no message history and no client
session id (for example `GET /v1/models`) each form their own one-request
session.

How. The history of a request is hashed message by message into a chain
`H_k = hash(H_{k-1}, hash(message_k))`, seeded with the user. The `conv`
database maps the chain hash of every stored request's full history to its
session, so finding the session of a new request is a few key lookups, from the
longest prefix down, never a scan.

Totals (requests, each token kind, summed duration, first and last time, tool
calls by name, models, providers, statuses and states seen, estimated cost in
nano-dollars and the number of requests without a price) live in the `ses` database
and are updated in the same write transaction as the request's record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import orjson

from .codec import (F_COST, F_DURATION, F_MODEL, F_PROVIDER, F_STATE, F_STATUS, F_TIME,
                    F_TOOLS, F_USAGE, F_USER)
from .schema import KEY_FIELD_MAX

MAX_SESSION_ID = 128
MAX_PARSED_BODY = 64 << 20
SESSION_HEADERS = ("x-claude-code-session-id", "session_id", "session-id", "conversation_id",
                   "conversation-id", "x-session-id")
_CLAUDE_USER_ID = re.compile(r"_session_([A-Za-z0-9][A-Za-z0-9_.:-]*)\s*$")
_HISTORY_KEYS = ("messages", "contents", "input")


def _clean(value: object) -> str:
    if not isinstance(value, str):
        return ""
    value = value.strip()
    if not value or any(ord(c) < 32 for c in value):
        return ""
    return value[:MAX_SESSION_ID]


_SESSION_HEADER_SET = frozenset(SESSION_HEADERS)


def client_session(session_hint: str, request_headers) -> str:
    """The session id from a hint or from (name, value) request headers, or ""."""
    if session_hint:
        sid = _clean(session_hint)
        if sid:
            return sid
    found = None
    for name, value in request_headers:
        lname = name.lower()
        if lname in _SESSION_HEADER_SET:
            if found is None:
                found = {}
            found.setdefault(lname, value)
    if found:
        for name in SESSION_HEADERS:
            sid = _clean(found.get(name))
            if sid:
                return sid
    return ""


def parse_body(body: bytes) -> dict | None:
    """The request body as a JSON object, or None."""
    if not body or len(body) > MAX_PARSED_BODY:
        return None
    if body[:1] != b"{":
        i = 0
        while i < len(body) and body[i] in b" \t\r\n":
            i += 1
        if i >= len(body) or body[i] != 0x7B:  # "{"
            return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def body_session(doc: dict) -> str:
    """Claude Code's session id from `metadata.user_id`, or ""."""
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return ""
    uid = meta.get("user_id")
    if isinstance(uid, dict):
        return _clean(uid.get("session_id"))
    if not isinstance(uid, str):
        return ""
    s = uid.strip()
    if s.startswith("{"):
        try:
            obj = orjson.loads(s)
        except orjson.JSONDecodeError:
            return ""
        return _clean(obj.get("session_id")) if isinstance(obj, dict) else ""
    m = _CLAUDE_USER_ID.search(s)
    return _clean(m.group(1)) if m else ""


_USER_ID_TEXT = re.compile(rb'"user_id"\s*:\s*"((?:[^"\\]|\\.){1,512})"')


def session_from_tail(tail: bytes) -> str:
    """Claude Code's session id from the raw end of a body too large to keep
    whole (`metadata` comes after `messages`, in the part that is cut off)."""
    m = None
    for m in _USER_ID_TEXT.finditer(tail):
        pass
    if m is None:
        return ""
    try:
        uid = orjson.loads(b'"' + m.group(1) + b'"')
    except orjson.JSONDecodeError:
        return ""
    return body_session({"metadata": {"user_id": uid}})


def history(doc: dict) -> list | None:
    for key in _HISTORY_KEYS:
        h = doc.get(key)
        if isinstance(h, list) and h:
            return h
    return None


def _strip_cache_control(msg: object) -> object:
    # Anthropic clients move `cache_control` to the newest blocks on every
    # turn; it is not part of the conversation.
    if not isinstance(msg, dict):
        return msg
    content = msg.get("content")
    if isinstance(content, list) and any(isinstance(b, dict) and "cache_control" in b
                                         for b in content):
        msg = dict(msg)
        msg["content"] = [{k: v for k, v in b.items() if k != "cache_control"}
                          if isinstance(b, dict) else b for b in content]
    if "cache_control" in msg:
        msg = {k: v for k, v in msg.items() if k != "cache_control"}
    return msg


_seeds: dict[str, bytes] = {}
# Copying a prepared hasher costs less than making one with keyword arguments.
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)


def _user_seed(user: str) -> bytes:
    seed = _seeds.get(user)
    if seed is None:
        if len(_seeds) > 4096:
            _seeds.clear()
        seed = _seeds[user] = hashlib.blake2b(user.encode("utf-8", "surrogatepass"),
                                              digest_size=16, person=b"aperture-conv").digest()
    return seed


def history_chain(user: str, messages: list) -> list[bytes]:
    """Chain hashes H_1..H_n of a message history (see the module docstring)."""
    prev = _user_seed(user)
    out = []
    blake = _BLAKE2B_16.copy
    for msg in messages:
        try:
            data = orjson.dumps(_strip_cache_control(msg))
        except TypeError:
            data = repr(msg).encode()
        h = blake()
        h.update(data)
        link = blake()
        link.update(prev)
        link.update(h.digest())
        prev = link.digest()
        out.append(prev)
    return out


class SessionHint:
    """What the writer knows about a request's session before its transaction."""

    __slots__ = ("client_id", "chain", "previous")

    def __init__(self, client_id: str, chain: Sequence[bytes], previous: bytes = b"") -> None:
        self.client_id = client_id
        self.chain = chain
        self.previous = previous  # a Responses API previous_response_id


_NO_HINT = SessionHint("", ())


def prepare(session_hint: str, request_headers, user: str, request_body: bytes) -> SessionHint:
    """Work done outside the write transaction: find a client id or hash the history."""
    sid = client_session(session_hint, request_headers)
    if sid:
        return SessionHint(sid, ())
    doc = parse_body(request_body)
    if doc is None:
        return _NO_HINT
    sid = body_session(doc)
    if sid:
        return SessionHint(sid, ())
    msgs = history(doc)
    chain = history_chain(user, msgs) if msgs else ()
    previous = doc.get("previous_response_id")
    if isinstance(previous, str) and previous:
        return SessionHint("", chain, previous.encode("utf-8", "surrogatepass")[:KEY_FIELD_MAX])
    return SessionHint("", chain) if chain else _NO_HINT


def resolve(conv, hint: SessionHint, new_id, resp=None) -> str:
    """The session id, looking up the indexes inside the write txn.

    `conv` and `resp` are cursors on the `conv` and `resp` databases of the
    write transaction.
    """
    chain = hint.chain
    sid = hint.client_id
    known = 0  # chain[:known] may already be in the index; chain[known:] is not
    if not sid and hint.previous and resp is not None:
        found = resp.get(hint.previous)
        if found is not None:
            sid = orjson.loads(found)[3]
    if not sid:
        for i in range(len(chain) - 1, -1, -1):
            found = conv.get(chain[i])
            if found is not None:
                sid = found.decode("utf-8", "replace")
                known = i + 1
                break
        if not sid:
            sid = new_id()
    if len(chain) > known:
        # Every prefix of this history points to the session, longest first,
        # down to the first one already known. Turns of one conversation that
        # reach LMDB out of order (from different workers) then still meet:
        # an earlier turn finds its own history among a later turn's prefixes.
        value = sid.encode("utf-8", "surrogatepass")
        for i in range(len(chain) - 1, known - 1, -1):
            if not conv.put(chain[i], value, overwrite=False):
                break
    return sid


def new_totals(sid: str, user: str, t: float) -> dict:
    return {"session": sid, "user": user, "first": t, "last": t, "requests": 0,
            "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "reasoning_tokens": 0, "tool_calls": 0,
            "duration_ms": 0.0, "tools": {}, "models": {}, "providers": {}, "statuses": {},
            "states": {}, "cost": 0, "unpriced": 0}


def add_to_totals(tot: dict, rows: list[list]) -> None:
    """Count records, in order, into the totals `tot` of their session.

    `rows` are the records' meta lists (see codec.record_entry). The sums are
    kept in locals over the rows and stored once; the duration is summed in
    the same order as one record at a time would.
    """
    ins = outs = cache_read = cache_write = reasoning = ncalls = cost = unpriced = 0
    duration = tot["duration_ms"]
    if "cost" not in tot:  # totals from before costs: their requests had no price
        tot["cost"], tot["unpriced"], tot["states"] = 0, tot["requests"], {}
    states = tot["states"]
    first, last, user = tot["first"], tot["last"], tot["user"]
    tools, models, providers, statuses = (tot["tools"], tot["models"], tot["providers"],
                                          tot["statuses"])
    for f in rows:
        u = f[F_USAGE]
        ins += u[0]
        outs += u[1]
        cache_read += u[2]
        cache_write += u[3]
        reasoning += u[4]
        duration += f[F_DURATION] or 0.0
        t = f[F_TIME]
        if t < first:
            first = t
        if t > last:
            last = t
        if not user:
            user = f[F_USER]
        calls = f[F_TOOLS]
        if calls:
            for tc in calls:
                name = tc[0]
                tools[name] = tools.get(name, 0) + 1
            ncalls += len(calls)
        model = f[F_MODEL]
        if model:
            models[model] = models.get(model, 0) + 1
        provider = f[F_PROVIDER]
        if provider:
            providers[provider] = providers.get(provider, 0) + 1
        st = str(f[F_STATUS])
        statuses[st] = statuses.get(st, 0) + 1
        state = f[F_STATE]
        states[state] = states.get(state, 0) + 1
        c = f[F_COST]
        if c is None:
            unpriced += 1
        else:
            cost += c
    tot["requests"] += len(rows)
    tot["input_tokens"] += ins
    tot["output_tokens"] += outs
    tot["cache_read_tokens"] += cache_read
    tot["cache_write_tokens"] += cache_write
    tot["reasoning_tokens"] += reasoning
    tot["tool_calls"] += ncalls
    tot["cost"] += cost
    tot["unpriced"] += unpriced
    tot["duration_ms"] = duration
    tot["first"], tot["last"], tot["user"] = first, last, user
