"""Record ids: unique across processes, ordered by creation time, URL-safe.

An id is 26 characters of Crockford base32 (digits and upper-case letters
without I, L, O, U), like a ULID:

    TTTTTTTTTT SSSSSSSS CCCCCCCC
    48-bit ms   40-bit  40-bit
    since epoch salt    counter

- The first 10 characters encode the milliseconds since the epoch, so the
  lexicographic order of ids is their creation order to the millisecond.
- The salt is fixed per process: 22 bits of the pid and 18 random bits. Two
  processes alive at the same time have different pids, so they never share a
  salt.
- The counter starts at a random value and grows by one for every id the
  process makes, so ids of one process are strictly increasing even within one
  millisecond.

The salt and counter are drawn again in a forked child.
"""

from __future__ import annotations

import os
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(ALPHABET)}
for _c, _i in list(_DECODE.items()):
    _DECODE[_c.lower()] = _i

# Ten bits -> two characters, so 40 bits encode with four lookups.
_PAIRS = [ALPHABET[i >> 5] + ALPHABET[i & 31] for i in range(1024)]

ID_LENGTH = 26
_COUNTER_MASK = (1 << 40) - 1


def _encode40(value: int) -> str:
    pairs = _PAIRS
    return (pairs[(value >> 30) & 1023] + pairs[(value >> 20) & 1023]
            + pairs[(value >> 10) & 1023] + pairs[value & 1023])


def _encode_ms(ms: int) -> str:
    # 48 bits in 10 characters (50 bits; the first character is at most 7).
    return ALPHABET[(ms >> 45) & 31] + ALPHABET[(ms >> 40) & 31] + _encode40(ms & _COUNTER_MASK)


class _State:
    __slots__ = ("salt", "counter", "last_ms", "prefix", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reseed()

    def reseed(self) -> None:
        rnd = int.from_bytes(os.urandom(8), "big")
        self.salt = _encode40(((os.getpid() & 0x3FFFFF) << 18) | (rnd & 0x3FFFF))
        self.counter = (rnd >> 24) & _COUNTER_MASK
        self.last_ms = -1
        self.prefix = ""


_state = _State()
os.register_at_fork(after_in_child=_state.reseed)


def new_id() -> str:
    """A new id (see the module docstring)."""
    st = _state
    with st.lock:
        ms = time.time_ns() // 1_000_000
        if ms != st.last_ms:
            if ms < st.last_ms:  # the clock went back: keep ids increasing
                ms = st.last_ms
            else:
                st.last_ms = ms
                st.prefix = _encode_ms(ms) + st.salt
        st.counter = (st.counter + 1) & _COUNTER_MASK
        return st.prefix + _encode40(st.counter)


def id_time(id: str) -> float:
    """Seconds since the epoch encoded in an id (millisecond precision).

    Raises ValueError if `id` does not start with 10 base32 characters.
    """
    if len(id) < 10:
        raise ValueError(f"not an aperture id: {id!r}")
    ms = 0
    try:
        for c in id[:10]:
            ms = (ms << 5) | _DECODE[c]
    except KeyError:
        raise ValueError(f"not an aperture id: {id!r}") from None
    return ms / 1000.0


def id_floor(t: float) -> str:
    """The smallest id that can be made at time `t` (for range scans)."""
    return _encode_ms(max(0, int(t * 1000))) + "0" * 16
