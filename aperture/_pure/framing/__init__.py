"""Framings: how a response body is cut into events (twin of
`native/src/framing/`). Each framing counts events, hands each one to the
dialect's extractor, never raises on bad input, and reads the same however
the bytes are split into chunks."""

from __future__ import annotations

MAX_EVENT_BYTES = 16 * 1024 * 1024


def _framings() -> dict:
    from aperture._pure.framing.eventstream import EventStream
    from aperture._pure.framing.json_array import JsonArray
    from aperture._pure.framing.json_body import JsonBody
    from aperture._pure.framing.sse import Sse

    return {"sse": Sse, "eventstream": EventStream, "json_array": JsonArray, "json": JsonBody}
