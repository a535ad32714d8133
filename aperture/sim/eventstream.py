"""The AWS event-stream binary framing, written (reference/wire-formats.md §6.4).

Bedrock's streaming operations answer with `application/vnd.amazon.eventstream`:
a sequence of self-delimiting messages, each

    total_length u32 | headers_length u32 | prelude_crc u32
    | headers | payload | message_crc u32

all integers big-endian, both CRCs the IEEE CRC-32 (zlib's), the message CRC
over every byte before it. A header is `name_len u8 | name | type u8 | value`;
the simulator writes string headers (type 7: `u16 length | UTF-8`) only, which
is all Bedrock sends. Reading these messages is the gateway's business
(`aperture.accel.Meter` with the "eventstream" framing); this module only
writes them, for the simulator and for tests.
"""

from __future__ import annotations

import struct
import zlib

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_STRING = 7


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    out = []
    for name, value in headers:
        raw_name = name.encode("utf-8")
        raw_value = value.encode("utf-8")
        out.append(bytes((len(raw_name),)) + raw_name + bytes((_STRING,))
                   + struct.pack(">H", len(raw_value)) + raw_value)
    return b"".join(out)


def encode_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with string `headers` and `payload`."""
    head = encode_headers(headers)
    prelude = _PRELUDE.pack(16 + len(head) + len(payload), len(head))
    prelude += _U32.pack(zlib.crc32(prelude))
    body = prelude + head + payload
    return body + _U32.pack(zlib.crc32(body))


def event(event_type: str, payload: bytes) -> bytes:
    """An `event` message, as Bedrock sends each stream member."""
    return encode_message([(":event-type", event_type), (":content-type", "application/json"),
                           (":message-type", "event")], payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    """An `exception` message (a modeled error inside the stream)."""
    return encode_message([(":exception-type", exception_type),
                           (":content-type", "application/json"),
                           (":message-type", "exception")], payload)
