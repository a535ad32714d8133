"""Bodies stored as content-addressed blocks, so repeated content is kept once.

Agentic clients resend the whole conversation on every turn: the system prompt,
the tool definitions and every earlier message come back, with a few new
messages and a moved cache marker. A body is cut into blocks at boundaries that
depend only on the bytes around them (content-defined chunking), so the blocks
of the unchanged parts are the same from one turn to the next wherever they
sit in the body; each block is stored once under its hash and a body is the
list of its block hashes. Reading concatenates the blocks: every body comes
back byte for byte, JSON or not.

Where to cut. Candidate boundaries are the ends of `},` (between JSON objects:
messages, content blocks, tool definitions), of `\\n` (an escaped newline
inside a JSON string: code, file contents) and of a raw newline (SSE events,
text). A block is at least MIN_BLOCK bytes; after that the first candidate
whose preceding 32 bytes hash to 0 modulo CUT_MODULUS ends it, and a block
never exceeds MAX_BLOCK bytes (bodies without candidates, such as binary data,
are cut every MAX_BLOCK bytes). Candidates are found with `bytes.find` (memchr
speed) and only those past MIN_BLOCK are looked at in Python, so a 200 kB body
is cut in well under a millisecond; hashing and compression run in C with the
GIL released.

Small bodies are kept inline in the capture (raw, or deflated when that is
smaller); blocks are deflated (codec.deflate) when that saves space.

Purging. Each block remembers the hour of the newest record that uses it
(`blkh`, with `blka` ordering blocks by that hour). A purge that removes the
bodies of records older than a cut-off can then remove every block whose hour
is older than the cut-off's hour: no kept record uses it.
"""

from __future__ import annotations

import hashlib
import zlib

from . import codec
from .schema import pack_u32

MIN_BLOCK = 1024
MAX_BLOCK = 64 * 1024
CUT_MODULUS = 8
INLINE_RAW_MAX = 1024  # bodies up to this size are stored inline, uncompressed
INLINE_MAX = 4096  # up to this size inline, deflated when smaller
HASH_SIZE = 16

_CANDIDATES = (b"},", b"\\n", b"\n")
_crc32 = zlib.crc32
_blake2b = hashlib.blake2b

STORED_RAW = b"\x00"
STORED_ZLIB = b"\x01"


def split(body: bytes) -> list[bytes]:
    """Cut `body` into blocks (see the module docstring)."""
    n = len(body)
    if n <= MIN_BLOCK:
        return [body]
    out = []
    find = body.find
    mask = CUT_MODULUS - 1
    # Next occurrence of each candidate pattern (n + 1: none left). bytes.find
    # runs at memchr speed; the regex engine is several times slower here.
    nxt = [0] * len(_CANDIDATES)
    start = 0
    while start < n:
        if n - start <= MIN_BLOCK:
            out.append(body[start:])
            break
        pos = start + MIN_BLOCK
        limit = min(n, start + MAX_BLOCK)
        cut = limit
        while True:
            e = n + 1
            for i, pat in enumerate(_CANDIDATES):
                p = nxt[i]
                if p < pos and p <= n:
                    p = find(pat, pos - len(pat))
                    p = n + 1 if p < 0 else p + len(pat)
                    nxt[i] = p
                if p < e:
                    e = p
            if e > limit:
                break
            if not (_crc32(body[e - 32:e]) & mask):
                cut = e
                break
            pos = e + 1
        out.append(body[start:cut])
        start = cut
    return out


def block_hash(block: bytes) -> bytes:
    return _blake2b(block, digest_size=HASH_SIZE).digest()


def pack_block(block: bytes) -> bytes:
    """The stored form of a block: deflated when that saves at least 1/8."""
    z = codec.deflate(block)
    if len(z) < len(block) - (len(block) >> 3):
        return STORED_ZLIB + z
    return STORED_RAW + block


def unpack_block(stored: bytes) -> bytes:
    if stored[:1] == STORED_ZLIB:
        return codec.inflate(stored[1:])
    return stored[1:]


Descriptor = tuple[int, int, bytes]  # (kind, original size, payload), see codec
_NO_BODY: Descriptor = (codec.BODY_NONE, 0, b"")


def prepare_body(body: bytes) -> tuple[Descriptor, tuple[tuple[bytes, bytes], ...]]:
    """A body made ready for storage outside the write transaction.

    Returns its descriptor and the (hash, raw block) pairs it is made of
    (none for a body kept inline).
    """
    n = len(body)
    if n == 0:
        return _NO_BODY, ()
    if n <= INLINE_RAW_MAX:
        return (codec.BODY_RAW, n, body), ()
    if n <= INLINE_MAX:
        z = codec.deflate(body)
        if len(z) < n:
            return (codec.BODY_ZLIB, n, z), ()
        return (codec.BODY_RAW, n, body), ()
    pairs = tuple((block_hash(b), b) for b in split(body))
    return (codec.BODY_BLOCKS, n, b"".join(h for h, _ in pairs)), pairs


def store_blocks(txn, dbs, blocks, hour: int,
                 packed: dict[bytes, bytes]) -> int:
    """Store the blocks not yet present and mark every one as used at `hour`.

    `packed` holds blocks already compressed outside the transaction. Returns
    the number of bytes newly stored.
    """
    blk, blkh, blka = dbs["blk"], dbs["blkh"], dbs["blka"]
    hour_b = pack_u32(hour)
    added = 0
    for h, raw in blocks:
        old = txn.get(h, db=blkh)
        if old is None:
            stored = packed.get(h)
            if stored is None:
                stored = pack_block(raw)
                packed[h] = stored
            txn.put(h, stored, db=blk)
            txn.put(h, hour_b, db=blkh)
            txn.put(hour_b + h, b"", db=blka)
            added += len(stored)
        elif old < hour_b:  # big-endian: byte order is numeric order
            txn.put(h, hour_b, db=blkh)
            txn.delete(old + h, db=blka)
            txn.put(hour_b + h, b"", db=blka)
    return added


def missing_blocks(txn, dbs, hashes) -> list[bytes]:
    blkh = dbs["blkh"]
    return [h for h in hashes if txn.get(h, db=blkh) is None]


def rebuild(txn, dbs, kind: int, payload: bytes) -> bytes | None:
    """The body bytes from a descriptor; None if a block is missing (purged)."""
    if kind == codec.BODY_NONE:
        return b""
    if kind == codec.BODY_RAW:
        return payload
    if kind == codec.BODY_ZLIB:
        return codec.inflate(payload)
    blk = dbs["blk"]
    parts = []
    for i in range(0, len(payload), HASH_SIZE):
        stored = txn.get(payload[i:i + HASH_SIZE], db=blk)
        if stored is None:
            return None
        parts.append(unpack_block(stored))
    return b"".join(parts)


def purge_blocks(txn, dbs, before_hour: int, limit: int) -> tuple[int, bool]:
    """Delete up to `limit` blocks last used before `before_hour`.

    Returns (deleted, done).
    """
    blk, blkh, blka = dbs["blk"], dbs["blkh"], dbs["blka"]
    end = pack_u32(before_hour)
    doomed = []
    with txn.cursor(db=blka) as cur:
        if cur.first():
            for key in cur.iternext(keys=True, values=False):
                if key[:4] >= end or len(doomed) >= limit:
                    break
                doomed.append(key)
    for key in doomed:
        h = key[4:]
        txn.delete(key, db=blka)
        txn.delete(h, db=blk)
        txn.delete(h, db=blkh)
    return len(doomed), len(doomed) < limit


def hour_of(t: float) -> int:
    return max(0, int(t // 3600))
