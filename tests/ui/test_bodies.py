"""Captured bodies, described and paged for the Logs page."""

from __future__ import annotations

import base64
import json

from aperture.sim.eventstream import encode_message
from aperture.ui import bodies

SSE = [("content-type", "text/event-stream")]
JSON = [("content-type", "application/json")]


def test_sse_event_by_event_with_pages():
    body = b"".join(b"event: e%d\ndata: {\"n\": %d}\n\n" % (i, i) for i in range(7)) + b": bye\n\n"
    assert bodies.describe(body, SSE, len(body), False)["views"] == ["raw", "events"]
    page = bodies.page(body, SSE, "events", 0, 3)
    assert [e["event"] for e in page["events"]] == ["e0", "e1", "e2"] and page["next_offset"] == 3
    assert page["events"][1]["data"] == {"n": 1} and page["total"] == 8
    last = bodies.page(body, SSE, "events", 6, 3)
    assert last["next_offset"] is None and last["events"][1]["other"] == [": bye"]


def test_raw_pages_never_split_a_character():
    body = ("é" * 10).encode()
    first = bodies.page(body, [], "raw", 0, 5)
    assert first["text"] == "éé" and first["next_offset"] == 4
    rest = bodies.page(body, [], "raw", 4, 100)
    assert rest["text"] == "é" * 8 and rest["next_offset"] is None


def test_pretty_json_and_arrays_of_events():
    body = json.dumps({"messages": [{"content": "<script>x</script>"}]}).encode()
    page = bodies.page(body, JSON, "pretty", 0, None)
    assert json.loads(page["text"])["messages"][0]["content"] == "<script>x</script>"
    assert "\n  " in page["text"]
    arr = b'[{"a":1},\n{"a":2}]'
    assert bodies.describe(arr, JSON, len(arr), False)["kind"] == "json-array"
    assert [e["data"] for e in bodies.page(arr, JSON, "events", 0, None)["events"]] == [{"a": 1}, {"a": 2}]


def test_bedrock_event_stream_chunks_are_decoded():
    inner = json.dumps({"type": "message_start"}).encode()
    msg = encode_message([(":message-type", "event"), (":event-type", "chunk"),
                          (":content-type", "application/json")],
                         json.dumps({"bytes": base64.b64encode(inner).decode()}).encode())
    headers = [("content-type", "application/vnd.amazon.eventstream")]
    page = bodies.page(msg * 3, headers, "events", 0, None)
    assert page["total"] == 3 and page["events"][0]["event"] == "chunk"
    assert page["events"][0]["decoded"] == {"type": "message_start"}
    raw = bodies.page(msg, headers, "raw", 0, None)
    assert raw["encoding"] == "base64" and base64.b64decode(raw["text"]) == msg
    assert bodies.page(msg[:20], headers, "events", 0, None)["events"][0]["error"]


def test_bodies_not_kept():
    assert bodies.describe(None, [], 120, False) == {"kept": False, "size": 120, "truncated": False}
    assert bodies.page(None, [], "raw", 0, None) == {"kept": False}
