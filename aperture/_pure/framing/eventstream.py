"""AWS event-stream framing (Bedrock's streams); twin of
`native/src/framing/eventstream.rs`, whose module doc is the theory of
operation.

A message is `total u32 | headers_length u32 | prelude_crc u32 | headers |
payload | message_crc u32` (big-endian, IEEE CRC-32). A prelude that cannot
be trusted (CRC, impossible lengths) is one bad event and ends the reading; a
whole message with a bad CRC or a malformed header section is one bad event
and the next message is read. By `:message-type`: `event` `chunk` payloads
wrap base64 bytes that go to the extractor unnamed; other events go to it
named by `:event-type`; `exception` and `error` messages set the error.
"""

from __future__ import annotations

import binascii
import struct
import zlib

from aperture._pure.extract import Tally
from aperture._pure.jsonrules import loads_object

PRELUDE = 12
OVERHEAD = 16
MAX_HEADERS = 128 * 1024
MAX_PAYLOAD = 24 * 1024 * 1024

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
# Value bytes of the fixed-size header types (0/1 bool, 2 byte, 3 int16,
# 4 int32, 5 int64, 8 timestamp, 9 uuid); 6 (bytes) and 7 (string) carry a
# u16 length.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_WANTED = frozenset((":message-type", ":event-type", ":exception-type", ":error-code", ":error-message"))


class _Malformed(Exception):
    pass


def prelude(p: bytes) -> int | None:
    """The total length of the message whose prelude is `p`, or None when the
    prelude cannot be trusted."""
    total, headers, crc = _PRELUDE.unpack_from(p)
    if zlib.crc32(p[:8]) != crc:
        return None
    if total < OVERHEAD or headers > total - OVERHEAD or headers > MAX_HEADERS:
        return None
    if total - OVERHEAD - headers > MAX_PAYLOAD:
        return None
    return total


def headers(h: bytes) -> dict[str, str | None]:
    """The standard headers' string values (the last occurrence wins; a
    non-string value makes it absent); raises _Malformed."""
    out: dict[str, str | None] = {}
    i, n = 0, len(h)
    try:
        while i < n:
            ln = h[i]
            if n - i - 1 < ln + 1:
                raise _Malformed
            name = h[i + 1 : i + 1 + ln].decode("utf-8")
            kind = h[i + 1 + ln]
            i += ln + 2
            value = None
            if kind == 6 or kind == 7:
                if n - i < 2:
                    raise _Malformed
                size = _U16.unpack_from(h, i)[0]
                if n - i - 2 < size:
                    raise _Malformed
                if kind == 7:
                    value = h[i + 2 : i + 2 + size].decode("utf-8")
                i += 2 + size
            else:
                size = _FIXED.get(kind)
                if size is None or n - i < size:
                    raise _Malformed
                i += size
            if name in _WANTED:
                out[name] = value
    except UnicodeDecodeError as e:
        raise _Malformed from e
    return out


def chunk_bytes(payload: bytes) -> bytes | None:
    """The bytes a `chunk` payload wraps (`{"bytes": "<base64>", ...}`):
    standard base64, padded, canonical; None for anything else."""
    m = loads_object(payload)
    b64 = m.get("bytes") if m is not None else None
    if not isinstance(b64, str) or not b64.isascii():
        return None
    raw = b64.encode("ascii")
    try:
        out = binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        return None
    # canonical only (padding present, zero trailing bits), as the native
    # decoder requires
    if binascii.b2a_base64(out, newline=False) != raw:
        return None
    return out


def message(msg: bytes, d, t: Tally) -> None:
    """One whole message (its prelude already checked)."""
    t.events += 1
    end = len(msg) - 4
    if zlib.crc32(msg[:end]) != _U32.unpack_from(msg, end)[0]:
        t.bad_events += 1
        return
    split = PRELUDE + _U32.unpack_from(msg, 4)[0]
    try:
        h = headers(msg[PRELUDE:split])
    except _Malformed:
        t.bad_events += 1
        return
    payload = msg[split:end]
    kind = h.get(":message-type")
    if kind == "event":
        name = h.get(":event-type")
        if name == "chunk":
            inner = chunk_bytes(payload)
            if inner is None:
                t.bad_events += 1
            else:
                d.event(b"", inner, t)
        else:
            d.event((name or "").encode("utf-8"), payload, t)
    elif kind == "exception":
        exc = h.get(":exception-type") or "exception"
        body = loads_object(payload)
        text = body.get("message") if body is not None else None
        t.error = f"{exc}: {text}" if isinstance(text, str) else exc
    elif kind == "error":
        code = h.get(":error-code")
        text = h.get(":error-message")
        t.error = f"{code if code is not None else 'error'}: {text if text is not None else ''}"


class EventStream:
    __slots__ = ("_buf", "_total", "_broken")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._total = 0  # length of the message being carried; 0 while its prelude is
        self._broken = False  # a prelude could not be trusted: nothing more is read

    def feed(self, data: bytes, d, t: Tally) -> None:
        i, n = 0, len(data)
        while i < n and not self._broken:
            buf = self._buf
            if not buf:
                # nothing carried: read whole messages in place
                if n - i < PRELUDE:
                    buf += data[i:]
                    return
                total = prelude(data[i : i + PRELUDE])
                if total is None:
                    return self._lose_framing(t)
                if n - i >= total:
                    message(data[i : i + total], d, t)
                    i += total
                    continue
                self._total = total
                buf += data[i:]
                return
            if not self._total:
                take = min(PRELUDE - len(buf), n - i)
                buf += data[i : i + take]
                i += take
                if len(buf) < PRELUDE:
                    return
                total = prelude(bytes(buf))
                if total is None:
                    return self._lose_framing(t)
                self._total = total
            take = min(self._total - len(buf), n - i)
            buf += data[i : i + take]
            i += take
            if len(buf) == self._total:
                self._buf = bytearray()
                self._total = 0
                message(bytes(buf), d, t)

    def _lose_framing(self, t: Tally) -> None:
        t.bad_events += 1
        self._broken = True
        self._buf = bytearray()

    def finish(self, d, t: Tally) -> None:
        pass  # a message left incomplete is not read

    def complete(self, t: Tally) -> bool:
        return t.complete
