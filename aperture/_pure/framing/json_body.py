"""A whole JSON body; twin of `native/src/framing/json_body.rs`.

Kept up to `MAX_EVENT_BYTES` (a longer one is dropped: nothing counted from
it, one bad event at the end). At the end it is parsed: an object is one
event, read by the dialect's whole-body rules, and makes the response
complete; anything else is a bad event.
"""

from __future__ import annotations

from aperture._pure.extract import Tally
from aperture._pure.framing import MAX_EVENT_BYTES
from aperture._pure.jsonrules import loads_object


class JsonBody:
    __slots__ = ("_parts", "_size", "_over", "parsed")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._over = False
        self.parsed = False  # the body parsed as a JSON object

    def feed(self, data: bytes, d, t: Tally) -> None:
        if self._over:
            return
        self._size += len(data)
        if self._size > MAX_EVENT_BYTES:
            self._over = True
            self._parts = []
            return
        self._parts.append(data)

    def finish(self, d, t: Tally) -> None:
        body = b"".join(self._parts)
        self._parts = []
        if self._over:
            t.bad_events += 1
            return
        obj = loads_object(body)
        if obj is None:
            t.bad_events += 1
            return
        t.events += 1
        self.parsed = True
        d.body(obj, t)

    def complete(self, t: Tally) -> bool:
        return self.parsed
