"""Captured bodies as the Logs page shows them, a page at a time.

A body is described by its kind (from its content type, else by looking at
it): `json`, `sse` (text/event-stream), `eventstream` (AWS event-stream,
Bedrock), `json-array` (a streamed JSON array, Gemini), `text` or `binary`.
Views:

* `raw`: the bytes as UTF-8 text (invalid sequences replaced; binary bodies
  and AWS event-streams as base64), paged by byte offset, never cutting a
  character in two;
* `pretty`: JSON indented, paged the same way over the indented text;
* `events`: one entry per server-sent event, event-stream message or array
  element (with its JSON data parsed when it is JSON; a Bedrock `chunk`'s
  base64 `bytes` decoded), paged by event index.

Everything is returned as data for the page to render as text: nothing in a
body is ever interpreted as HTML.
"""

from __future__ import annotations

import base64
import binascii
import struct

import orjson

VIEWS = ("raw", "pretty", "events")
DEFAULT_BYTES = 64 * 1024
MAX_BYTES = 1024 * 1024
DEFAULT_EVENTS = 50
MAX_EVENTS = 500


def _content_type(headers) -> str:
    for name, value in headers or ():
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def kind_of(body: bytes, headers) -> str:
    ctype = _content_type(headers)
    if ctype == "text/event-stream":
        return "sse"
    if ctype == "application/vnd.amazon.eventstream":
        return "eventstream"
    head = body[:64].lstrip()
    if head[:1] in (b"{", b"[") or "json" in ctype:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, list) and doc and all(isinstance(e, dict) for e in doc[:3]) \
                and head[:1] == b"[":
            return "json-array"
        if doc is not None:
            return "json"
    try:
        body.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary"


def describe(body: bytes | None, headers, size: int, truncated: bool) -> dict:
    if body is None:
        return {"kept": False, "size": size, "truncated": truncated}
    kind = kind_of(body, headers)
    views = ["raw"]
    if kind in ("json", "json-array"):
        views.append("pretty")
    if kind in ("sse", "eventstream", "json-array"):
        views.append("events")
    return {"kept": True, "size": size, "stored": len(body), "truncated": truncated,
            "kind": kind, "content_type": _content_type(headers), "views": views}


def page(body: bytes | None, headers, view: str, offset: int, limit: int | None) -> dict:
    if body is None:
        return {"kept": False}
    kind = kind_of(body, headers)
    if view == "events":
        events = list(_events(body, kind))
        n = min(limit or DEFAULT_EVENTS, MAX_EVENTS)
        chunk = events[offset:offset + n]
        end = offset + len(chunk)
        return {"kept": True, "view": "events", "kind": kind, "offset": offset,
                "events": chunk, "total": len(events),
                "next_offset": end if end < len(events) else None}
    if view == "pretty" and kind in ("json", "json-array"):
        data = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
        binary = False
    else:
        view = "raw"
        data, binary = body, kind in ("binary", "eventstream")
    n = min(limit or DEFAULT_BYTES, MAX_BYTES)
    end = min(len(data), offset + n)
    if not binary:
        # Never end inside a UTF-8 sequence: back up over continuation bytes.
        while end < len(data) and end > offset and (data[end] & 0xC0) == 0x80:
            end -= 1
        text = data[offset:end].decode("utf-8", "replace")
    else:
        end -= (end - offset) % 3 if end < len(data) else 0
        text = base64.b64encode(data[offset:end]).decode("ascii")
    return {"kept": True, "view": view, "kind": kind, "offset": offset, "text": text,
            "encoding": "base64" if binary else "utf-8", "total": len(data),
            "next_offset": end if end < len(data) else None}


def _json_or_text(data: bytes):
    try:
        return orjson.loads(data), True
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace"), False


def _events(body: bytes, kind: str):
    if kind == "sse":
        yield from _sse(body)
    elif kind == "eventstream":
        yield from _eventstream(body)
    elif kind == "json-array":
        for i, element in enumerate(orjson.loads(body)):
            yield {"index": i, "data": element, "json": True}
    else:
        return


def _sse(body: bytes):
    text = body.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    index = 0
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data, other = None, [], []
        for line in block.split("\n"):
            if line.startswith(":"):
                other.append(line)
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            else:
                other.append(line)
        joined = "\n".join(data)
        parsed, is_json = _json_or_text(joined.encode()) if joined else (joined, False)
        item = {"index": index, "event": event, "data": parsed, "json": is_json}
        if other:
            item["other"] = other
        index += 1
        yield item


_PRELUDE = struct.Struct(">III")


def _eventstream(body: bytes):
    """AWS event-stream messages, for display (CRCs are the meter's concern)."""
    pos = index = 0
    while pos + 16 <= len(body):
        total, hlen, _crc = _PRELUDE.unpack_from(body, pos)
        if total < 16 or pos + total > len(body) or hlen > total - 16:
            yield {"index": index, "error": "damaged message at byte %d" % pos,
                   "data": base64.b64encode(body[pos:pos + 256]).decode(), "json": False}
            return
        headers = _headers(body[pos + 12:pos + 12 + hlen])
        payload = body[pos + 12 + hlen:pos + total - 4]
        data, is_json = _json_or_text(payload)
        item = {"index": index, "event": headers.get(":event-type") or headers.get(
            ":exception-type") or headers.get(":message-type"), "headers": headers,
            "data": data, "json": is_json}
        if is_json and isinstance(data, dict) and isinstance(data.get("bytes"), str):
            try:  # Bedrock InvokeModel: the provider's event, base64-encoded
                inner = base64.b64decode(data["bytes"], validate=True)
                item["decoded"], _ = _json_or_text(inner)
            except (binascii.Error, ValueError):
                pass
        yield item
        index += 1
        pos += total


def _headers(raw: bytes) -> dict:
    out = {}
    i = 0
    fixed = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
    while i < len(raw):
        n = raw[i]
        name = raw[i + 1:i + 1 + n].decode("utf-8", "replace")
        i += 1 + n
        if i >= len(raw):
            break
        t = raw[i]
        i += 1
        if t in (6, 7):
            (ln,) = struct.unpack_from(">H", raw, i)
            value = raw[i + 2:i + 2 + ln]
            out[name] = value.decode("utf-8", "replace") if t == 7 else base64.b64encode(
                value).decode()
            i += 2 + ln
        elif t in fixed:
            size = fixed[t]
            v = raw[i:i + size]
            out[name] = (t == 0) if t in (0, 1) else int.from_bytes(v, "big", signed=True) \
                if t != 9 else v.hex()
            i += size
        else:
            break
    return out
