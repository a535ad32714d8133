"""Byte formats of the capture side: journal frames, record summaries, captures.

Journal frame (one `os.writev` per record, see journal.py):

    b"APJ1" | u32 payload length | u32 crc32(payload) | payload
    payload = u32 meta length | u32 request body length | u32 response body length
              | meta (orjson list of every Record field but the bodies; the
                      headers as one string, see headers.for_journal)
              | request body | response body

Record summary (`rec` database): an orjson list, positions named by the `R_*`
constants below. It holds what listings and usage need, nothing bulky.

Capture content (`cap` database):

    u8 version (1) | u32 headers length | headers
    headers = b"j" orjson [request headers, response headers]  (small)
            | b"d" raw deflate of the same                     (larger)
    | body | body           (request, then response)
    body = u8 kind | u32 original size | u32 payload length | payload
    kind: 0 none, 1 raw bytes, 2 raw deflate, 3 block hashes (16 bytes each)

Compression is raw deflate with a 4 kB window and small state (`deflate`):
zlib's default setup costs more than compressing a small payload.
"""

from __future__ import annotations

import struct
import zlib

import orjson

from aperture.headers import for_journal, for_record, journal_pairs

from .record import Record

JOURNAL_MAGIC = b"APJ1"
_FRAME = struct.Struct("<4sII")
_LENS = struct.Struct("<III")
FRAME_HEADER = _FRAME.size
MAX_FRAME = 1 << 31


# ---------------------------------------------------------------------------
# Journal frames


def journal_parts(rec: Record) -> list[bytes]:
    """The frame for `rec` as a list of buffers for one `os.writev`."""
    fields, req, resp = record_entry(rec, for_journal)
    meta = orjson.dumps(fields)
    lens = _LENS.pack(len(meta), len(req), len(resp))
    crc = zlib.crc32(resp, zlib.crc32(req, zlib.crc32(meta, zlib.crc32(lens))))
    head = _FRAME.pack(JOURNAL_MAGIC, _LENS.size + len(meta) + len(req) + len(resp), crc)
    return [head, lens, meta, req, resp] if (req or resp) else [head + lens + meta]


# The meta list of a journal frame, by position: every Record field but the
# bodies, usage as a list of its five counts, tool calls as [name, arguments].
(F_ID, F_TIME, F_USER, F_NODE, F_NODE_ID, F_TAGS, F_PROVIDER, F_MODEL, F_API, F_METHOD,
 F_PATH, F_STATUS, F_STREAM, F_USAGE, F_TOOLS, F_DURATION, F_TTFB, F_STATE, F_ERROR,
 F_REQ_HEADERS, F_RESP_HEADERS, F_SESSION_HINT, F_REQ_TRUNC, F_RESP_TRUNC,
 F_RESPONSE_ID, F_COST) = range(26)
N_FIELDS = 26
#: journals written before F_RESPONSE_ID existed have this many fields (and
#: before F_COST, 25): the missing ones read as "" and None
_OLD_FIELDS = 24

# A record as the writer takes it: (meta list, request body, response body).
# The drain process reads these straight from journal frames, without building
# Record objects; the writer thread makes them from Records (record_entry).
Entry = tuple[list, bytes, bytes]


def record_entry(rec: Record, headers=for_record) -> Entry:
    """`rec` in the journal's layout (the meta list `journal_parts` encodes).
    `headers` masks and decodes its headers: for_record's pairs, or in a
    journal frame for_journal's string, which decode_journal_entry turns
    back into pairs."""
    u = rec.usage
    q, r = rec.request_body, rec.response_body
    return ([
        rec.id, rec.time, rec.user, rec.node_name, rec.node_id, rec.tags, rec.provider,
        rec.model, rec.api, rec.method, rec.path, rec.status, rec.stream,
        (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
         u.reasoning_tokens),
        [(t.name, t.arguments) for t in rec.tool_calls] if rec.tool_calls else (),
        rec.duration_ms, rec.ttfb_ms, rec.state, rec.error, headers(rec.request_headers),
        headers(rec.response_headers), rec.session_hint, rec.request_body_truncated,
        rec.response_body_truncated, rec.response_id, rec.cost,
    ], q if type(q) is bytes else bytes(q), r if type(r) is bytes else bytes(r))


def decode_journal_entry(payload: bytes) -> Entry:
    """The entry in one frame's payload. Raises ValueError if it is malformed."""
    mlen, qlen, rlen = _LENS.unpack_from(payload, 0)
    o = _LENS.size
    m = orjson.loads(payload[o:o + mlen])
    if type(m) is not list or len(m) < _OLD_FIELDS:
        raise ValueError("journal frame: not a record")
    if len(m) == _OLD_FIELDS:
        m.append("")  # no response id
    if len(m) < N_FIELDS:
        m.append(None)  # no cost estimate
    m[F_REQ_HEADERS] = journal_pairs(m[F_REQ_HEADERS])
    m[F_RESP_HEADERS] = journal_pairs(m[F_RESP_HEADERS])
    o += mlen
    return m, payload[o:o + qlen], payload[o + qlen:o + qlen + rlen]


def no_pace() -> None:
    pass


def read_frames(data: bytes, pace=no_pace) -> tuple[list[bytes], list[tuple[int, int]]]:
    """The payloads of the whole frames in `data`, and the damaged spans
    skipped, as (offset, length).

    A frame that is incomplete or damaged (a write cut short by a kill, a
    disk error, a flipped bit) does not end the reading: it resumes at the
    next frame magic after the damage whose frame checks out, so only the
    damaged frame is lost, not the records after it. Payloads are decoded
    later, a batch at a time, by the writer (decode_journal_entry): bytes
    cost the garbage collector nothing to hold, while a whole journal of
    decoded records would be scanned again and again. `pace` is called
    before each frame (the writer's _Pacer).
    """
    out: list[bytes] = []
    damaged: list[tuple[int, int]] = []
    pos = 0
    n = len(data)
    bad = -1  # start of the damaged span being skipped, if any
    while pos + FRAME_HEADER <= n:
        pace()
        magic, length, crc = _FRAME.unpack_from(data, pos)
        end = pos + FRAME_HEADER + length
        if magic == JOURNAL_MAGIC and length >= _LENS.size and end <= n:
            payload = data[pos + FRAME_HEADER:end]
            if zlib.crc32(payload) == crc:
                if bad >= 0:
                    damaged.append((bad, pos - bad))
                    bad = -1
                out.append(payload)
                pos = end
                continue
        if bad < 0:
            bad = pos
        pos = data.find(JOURNAL_MAGIC, pos + 1)  # resynchronise
        if pos < 0:
            pos = n
    if pos < n or bad >= 0:
        start = bad if bad >= 0 else pos
        damaged.append((start, n - start))
    return out, damaged


# ---------------------------------------------------------------------------
# Record summaries

(R_ID, R_TIME, R_USER, R_NODE, R_NODE_ID, R_TAGS, R_PROVIDER, R_MODEL, R_API, R_METHOD,
 R_PATH, R_STATUS, R_STREAM, R_IN, R_OUT, R_CREAD, R_CWRITE, R_REASON, R_TOOLS, R_SESSION,
 R_DURATION, R_TTFB, R_STATE, R_ERROR, R_REQ_SIZE, R_RESP_SIZE, R_REQ_TRUNC,
 R_RESP_TRUNC, R_COST) = range(29)
#: summaries written before R_COST existed are this long (their cost reads as None)
OLD_SUMMARY = 28


def summary_cost(s: list) -> int | None:
    """A summary's estimated cost in nano-dollars, or None (no price)."""
    return s[R_COST] if len(s) > R_COST else None


def summary(f: list, session: str, req_size: int, resp_size: int) -> bytes:
    """The `rec` value of a record given as its meta list (see record_entry).

    The first 13 positions (R_ID .. R_STREAM) are those of the meta list, and
    R_DURATION .. R_ERROR follow F_DURATION .. F_ERROR: both runs are copied
    as slices.
    """
    calls = f[F_TOOLS]
    return orjson.dumps([
        *f[:F_USAGE], *f[F_USAGE], [t[0] for t in calls] if calls else [], session,
        *f[F_DURATION:F_REQ_HEADERS], req_size, resp_size, f[F_REQ_TRUNC], f[F_RESP_TRUNC],
        f[F_COST],
    ])


def encode_tools(tool_calls) -> bytes:
    """`tool_calls`: (name, arguments) pairs."""
    return orjson.dumps(tool_calls)


# ---------------------------------------------------------------------------
# Capture content

BODY_NONE, BODY_RAW, BODY_ZLIB, BODY_BLOCKS = 0, 1, 2, 3
_BODY = struct.Struct("<BII")
_U32 = struct.Struct("<I")
_CAP_HEAD = struct.Struct("<BI")  # version, headers length


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, -12, 4)
    return c.compress(data) + c.flush()


def inflate(data: bytes) -> bytes:
    return zlib.decompress(data, -15)


HEADERS_RAW_MAX = 256


def encode_headers(req_headers, resp_headers) -> bytes:
    raw = orjson.dumps([req_headers, resp_headers])
    if len(raw) <= HEADERS_RAW_MAX:
        return b"j" + raw
    return b"d" + deflate(raw)


def decode_headers(blob: bytes) -> tuple[list, list]:
    if not blob:
        return [], []
    raw = blob[1:] if blob[:1] == b"j" else inflate(blob[1:])
    req, resp = orjson.loads(raw)
    return req, resp


def encode_capture(headers: bytes, req_body: tuple[int, int, bytes],
                   resp_body: tuple[int, int, bytes]) -> bytes:
    """`*_body` = (kind, original size, payload)."""
    qkind, qsize, qpayload = req_body
    rkind, rsize, rpayload = resp_body
    return b"".join((_CAP_HEAD.pack(1, len(headers)), headers,
                     _BODY.pack(qkind, qsize, len(qpayload)), qpayload,
                     _BODY.pack(rkind, rsize, len(rpayload)), rpayload))


def decode_capture(blob: bytes) -> tuple[bytes, tuple[int, int, bytes], tuple[int, int, bytes]]:
    if blob[:1] != b"\x01":
        raise ValueError("unknown capture format")
    (hlen,) = _U32.unpack_from(blob, 1)
    o = 5
    headers = blob[o:o + hlen]
    o += hlen
    bodies = []
    for _ in range(2):
        kind, size, plen = _BODY.unpack_from(blob, o)
        o += _BODY.size
        bodies.append((kind, size, blob[o:o + plen]))
        o += plen
    return headers, bodies[0], bodies[1]
