"""Pure-Python twin of the request model scanner (`native/src/scan.rs`).

Every rule here is mirrored byte for byte in the native code: statuses,
offsets, error messages.

ModelScanner — theory of operation
----------------------------------
A resumable RFC 8259 state machine. Its whole state lives in attributes, so a
body may be fed in chunks split anywhere (even one byte at a time) and the
outcome does not depend on the split. One state names what the scanner waits
for next (a key, a colon, a value, a comma or a close, string content, the rest
of a number or of a literal); a stack of `{` / `[` bytes remembers the open
containers (at most `_MAX_DEPTH`).

Strings come in three modes. Most are *skipped*: their content is passed over
in bulk (a regex here, a SIMD search in the native code) and only the grammar
is checked (no raw byte below 0x20, valid escapes); their non-ASCII bytes are
not UTF-8 validated. Keys of the top-level object are *decoded* (escapes
resolved, UTF-8 validated, `\\uXXXX` surrogate pairs joined, a lone surrogate is
an error) and compared with `model`. The value of that key is decoded the same
way and becomes `model`.

Scanning goes on after the model is found, so the rest of the document is
still validated: a second top-level `"model"` is DUPLICATE, bad JSON later on is
MALFORMED. A top-level object that closes without the key is MISSING. The first
error is sticky. The byte at which an error is detected counts as consumed
(`offset` includes it); messages name the offset of the offending byte.
"""

from __future__ import annotations

import re

__all__ = ["NEED_DATA", "FOUND", "MALFORMED", "MISSING", "NOT_STRING", "DUPLICATE", "ModelScanner"]

NEED_DATA = 0
FOUND = 1
MALFORMED = 2
MISSING = 3
NOT_STRING = 4
DUPLICATE = 5

_MAX_DEPTH = 1024

# ---------------------------------------------------------------------------
# ModelScanner
# ---------------------------------------------------------------------------

# States: what the scanner waits for next.
_TOP = 0  # the top-level value (must be an object)
_KEY_OR_END = 1  # after '{': a key or '}'
_KEY = 2  # after ',' in an object: a key
_COLON = 3  # after a key
_VALUE = 4  # after ':' or after ',' in an array
_VALUE_OR_END = 5  # after '[': a value or ']'
_AFTER = 6  # after a value: ',' or the close of the container
_DONE = 7  # after the top-level object: whitespace only
_STR = 8  # string content
_ESC = 9  # after a backslash
_HEX = 10  # inside the four hex digits of \uXXXX
_SURR_BS = 11  # after a high surrogate: its low half must follow ('\')
_SURR_U = 12  # ... ('u')
_N_MINUS = 13  # after '-'
_N_ZERO = 14  # after a leading '0'
_N_INT = 15  # integer digits
_N_FRAC0 = 16  # after '.'
_N_FRAC = 17  # fraction digits
_N_EXP0 = 18  # after 'e' / 'E'
_N_EXP_SIGN = 19  # after the exponent sign
_N_EXP = 20  # exponent digits
_LIT = 21  # inside true / false / null

# String modes.
_SKIP = 0
_KEYSTR = 1  # a key of the top-level object: decoded and compared
_MODEL = 2  # the model value: decoded

_WS = b" \t\n\r"
_WS_RUN = re.compile(rb"[ \t\n\r]*")
_PLAIN_RUN = re.compile(rb'[^"\\\x00-\x1f]*')  # string bytes with no meaning
# In skipped strings the two-byte escapes are passed over too (one C-level match
# instead of one trip through the state machine per escape).
_SKIP_RUN = re.compile(rb'(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt])*+')
_DIGITS = re.compile(rb"[0-9]*")
_VALUE_START = frozenset(b'{["-0123456789tfn')
_LITERALS = {0x74: b"rue", 0x66: b"alse", 0x6E: b"ull"}
_SIMPLE_ESC = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C, 0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09}
_HEXVAL = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
_MODEL_KEY = b"model"


def _render(b: int) -> str:
    """A byte as error messages show it: 'x' when printable ASCII, else 0xNN."""
    return f"'{chr(b)}'" if 0x20 <= b <= 0x7E else f"0x{b:02x}"


class ModelScanner:
    """Incremental scanner for the top-level "model" key (see the module docstring).

    Non-ASCII bytes of strings other than the top-level keys and the model value
    are not UTF-8 validated.
    """

    __slots__ = (
        "model",
        "model_start",
        "model_end",
        "offset",
        "error",
        "_status",
        "_found",
        "_state",
        "_stack",
        "_mode",
        "_is_key",
        "_expect_model",
        "_key",
        "_str_start",
        "_value",
        "_u_need",
        "_u_lo",
        "_u_hi",
        "_hex_left",
        "_hex_val",
        "_esc_pos",
        "_high",
        "_high_pos",
        "_lit",
        "_lit_i",
    )

    def __init__(self) -> None:
        self.model: str | None = None
        self.model_start = -1
        self.model_end = -1
        self.offset = 0
        self.error: str | None = None
        self._status = NEED_DATA
        self._found = False
        self._state = _TOP
        self._stack = bytearray()
        self._mode = _SKIP
        self._is_key = False
        self._expect_model = False
        self._key = bytearray()  # first bytes of a decoded top-level key (at most 6)
        self._str_start = 0  # opening quote of the current top-level key or model value
        self._value = bytearray()  # the decoded model value
        self._u_need = 0  # UTF-8 continuation bytes still expected
        self._u_lo = 0x80
        self._u_hi = 0xBF
        self._hex_left = 0
        self._hex_val = 0
        self._esc_pos = 0  # offset of the backslash of the current escape
        self._high = -1  # pending high surrogate, -1 if none
        self._high_pos = 0
        self._lit = b""
        self._lit_i = 0

    # -- helpers ------------------------------------------------------------

    def _fail(self, status: int, message: str, consumed: int) -> int:
        self._status = status
        self.error = message
        self.offset = consumed
        return status

    def _emit(self, raw: bytes | bytearray) -> None:
        """Append decoded bytes to the key or the model value."""
        if self._mode == _MODEL:
            self._value += raw
        else:
            room = 6 - len(self._key)
            if room > 0:
                self._key += raw[:room]

    def _utf8(self, run: bytes, base: int) -> int:
        """Validate `run` (string bytes at absolute offset `base`) as UTF-8,
        carrying state across calls. Returns the offset of the first bad byte,
        or -1."""
        if self._u_need == 0 and run.isascii():
            return -1
        need, lo, hi = self._u_need, self._u_lo, self._u_hi
        for k, b in enumerate(run):
            if need:
                if lo <= b <= hi:
                    need -= 1
                    lo, hi = 0x80, 0xBF
                    continue
                self._u_need = need
                return base + k
            if b < 0x80:
                continue
            if 0xC2 <= b <= 0xDF:
                need = 1
            elif b == 0xE0:
                need, lo = 2, 0xA0
            elif 0xE1 <= b <= 0xEC or b == 0xEE or b == 0xEF:
                need = 2
            elif b == 0xED:
                need, hi = 2, 0x9F
            elif b == 0xF0:
                need, lo = 3, 0x90
            elif 0xF1 <= b <= 0xF3:
                need = 3
            elif b == 0xF4:
                need, hi = 3, 0x8F
            else:
                self._u_need = 0
                return base + k
        self._u_need, self._u_lo, self._u_hi = need, lo, hi
        return -1

    def _status_now(self) -> int:
        return FOUND if self._found else NEED_DATA

    # -- public API ---------------------------------------------------------

    def feed(self, chunk: bytes) -> int:
        """Scan the next chunk; returns NEED_DATA, FOUND or an error code."""
        if self._status != NEED_DATA:
            return self._status
        data = chunk if type(chunk) is bytes else bytes(memoryview(chunk))
        n = len(data)
        base = self.offset
        i = 0
        st = self._state
        stack = self._stack
        while i < n:
            b = data[i]

            # ---- string content (the bulk of any body) ----
            if st == _STR:
                if self._mode == _SKIP:
                    j = _SKIP_RUN.match(data, i).end()
                else:
                    j = _PLAIN_RUN.match(data, i).end()
                if self._mode != _SKIP and j > i:
                    run = data[i:j]
                    bad = self._utf8(run, base + i)
                    if bad >= 0:
                        self._state = st
                        return self._fail(MALFORMED, f"invalid UTF-8 at byte {bad}", bad + 1)
                    self._emit(run)
                if j == n:
                    i = n
                    break
                i = j
                b = data[i]
                if self._mode != _SKIP and self._u_need:
                    return self._fail(MALFORMED, f"invalid UTF-8 at byte {base + i}", base + i + 1)
                if b == 0x22:  # closing quote
                    i += 1
                    if self._mode == _SKIP:
                        st = _COLON if self._is_key else _AFTER
                    elif self._mode == _KEYSTR:
                        st = _COLON
                        if self._key == _MODEL_KEY:
                            if self._found:
                                return self._fail(
                                    DUPLICATE,
                                    f'duplicate top-level "model" key at byte {self._str_start}',
                                    base + i,
                                )
                            self._expect_model = True
                    else:  # the model value is complete
                        st = _AFTER
                        self.model_start = self._str_start
                        self.model_end = base + i
                        self.model = self._value.decode("utf-8")
                        self._found = True
                    continue
                if b == 0x5C:
                    self._esc_pos = base + i
                    st = _ESC
                    i += 1
                    continue
                return self._fail(MALFORMED, f"control character 0x{b:02x} in string at byte {base + i}", base + i + 1)

            if st == _AFTER:
                if b in _WS:
                    i = _WS_RUN.match(data, i).end()
                    continue
                if b == 0x2C:  # ','
                    st = _KEY if stack[-1] == 0x7B else _VALUE
                    i += 1
                    continue
                if (b == 0x7D and stack[-1] == 0x7B) or (b == 0x5D and stack[-1] == 0x5B):
                    del stack[-1]
                    i += 1
                    if stack:
                        continue
                    if not self._found:
                        self._state = _DONE
                        return self._fail(
                            MISSING, f'missing top-level "model" key (object closed at byte {base + i - 1})', base + i
                        )
                    st = _DONE
                    continue
                return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)

            if st == _KEY or st == _KEY_OR_END:
                if b in _WS:
                    i = _WS_RUN.match(data, i).end()
                    continue
                if b == 0x22:
                    self._is_key = True
                    if len(stack) == 1:
                        self._mode = _KEYSTR
                        self._key = bytearray()
                        self._str_start = base + i
                        self._u_need = 0
                    else:
                        self._mode = _SKIP
                    st = _STR
                    i += 1
                    continue
                if b == 0x7D and st == _KEY_OR_END:
                    st = _AFTER  # an empty object: let _AFTER close it
                    continue
                return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)

            if st == _COLON:
                if b in _WS:
                    i = _WS_RUN.match(data, i).end()
                    continue
                if b == 0x3A:
                    st = _VALUE
                    i += 1
                    continue
                return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)

            if st == _VALUE or st == _VALUE_OR_END:
                if b in _WS:
                    i = _WS_RUN.match(data, i).end()
                    continue
                if self._expect_model:
                    self._expect_model = False
                    if b == 0x22:
                        self._mode = _MODEL
                        self._is_key = False
                        self._value = bytearray()
                        self._u_need = 0
                        self._str_start = base + i
                        st = _STR
                        i += 1
                        continue
                    if b in _VALUE_START:
                        return self._fail(
                            NOT_STRING, f'"model" must be a string, found {_render(b)} at byte {base + i}', base + i + 1
                        )
                    return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)
                if b == 0x22:
                    self._mode = _SKIP
                    self._is_key = False
                    st = _STR
                elif b == 0x7B or b == 0x5B:
                    if len(stack) >= _MAX_DEPTH:
                        return self._fail(
                            MALFORMED, f"nesting deeper than {_MAX_DEPTH} at byte {base + i}", base + i + 1
                        )
                    stack.append(b)
                    st = _KEY_OR_END if b == 0x7B else _VALUE_OR_END
                elif b == 0x2D:
                    st = _N_MINUS
                elif b == 0x30:
                    st = _N_ZERO
                elif 0x31 <= b <= 0x39:
                    st = _N_INT
                elif b in _LITERALS:
                    self._lit = _LITERALS[b]
                    self._lit_i = 0
                    st = _LIT
                elif b == 0x5D and st == _VALUE_OR_END:
                    st = _AFTER  # an empty array: let _AFTER close it
                    continue
                else:
                    return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)
                i += 1
                continue

            if st == _ESC:
                if b == 0x75:  # 'u'
                    self._hex_left = 4
                    self._hex_val = 0
                    st = _HEX
                elif b in _SIMPLE_ESC:
                    if self._mode != _SKIP:
                        self._emit(bytes((_SIMPLE_ESC[b],)))
                    st = _STR
                else:
                    return self._fail(MALFORMED, f"invalid escape {_render(b)} at byte {base + i}", base + i + 1)
                i += 1
                continue

            if st == _HEX:
                v = _HEXVAL.get(b)
                if v is None:
                    return self._fail(
                        MALFORMED, f"invalid \\u escape digit {_render(b)} at byte {base + i}", base + i + 1
                    )
                self._hex_val = self._hex_val * 16 + v
                self._hex_left -= 1
                i += 1
                if self._hex_left:
                    continue
                st = _STR
                if self._mode == _SKIP:
                    continue
                cp = self._hex_val
                if self._high >= 0:  # this escape must be the low half
                    if 0xDC00 <= cp <= 0xDFFF:
                        cp = 0x10000 + ((self._high - 0xD800) << 10) + (cp - 0xDC00)
                        self._high = -1
                    else:
                        return self._fail(MALFORMED, f"lone surrogate in \\u escape at byte {self._high_pos}", base + i)
                elif 0xD800 <= cp <= 0xDBFF:
                    self._high = cp
                    self._high_pos = self._esc_pos
                    st = _SURR_BS
                    continue
                elif 0xDC00 <= cp <= 0xDFFF:
                    return self._fail(MALFORMED, f"lone surrogate in \\u escape at byte {self._esc_pos}", base + i)
                self._emit(chr(cp).encode("utf-8"))
                continue

            if st == _SURR_BS or st == _SURR_U:
                if (st == _SURR_BS and b == 0x5C) or (st == _SURR_U and b == 0x75):
                    if st == _SURR_BS:
                        self._esc_pos = base + i
                        st = _SURR_U
                    else:
                        self._hex_left = 4
                        self._hex_val = 0
                        st = _HEX
                    i += 1
                    continue
                return self._fail(MALFORMED, f"lone surrogate in \\u escape at byte {self._high_pos}", base + i + 1)

            if st == _LIT:
                if b != self._lit[self._lit_i]:
                    return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)
                self._lit_i += 1
                i += 1
                if self._lit_i == len(self._lit):
                    st = _AFTER
                continue

            if st == _TOP:
                if b in _WS:
                    i = _WS_RUN.match(data, i).end()
                    continue
                if b != 0x7B:
                    return self._fail(
                        MALFORMED, f"body must be a JSON object, found {_render(b)} at byte {base + i}", base + i + 1
                    )
                stack.append(b)
                st = _KEY_OR_END
                i += 1
                continue

            if st == _DONE:
                if b in _WS:
                    i = _WS_RUN.match(data, i).end()
                    continue
                return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)

            # ---- numbers ----
            is_digit = 0x30 <= b <= 0x39
            if st == _N_INT or st == _N_FRAC or st == _N_EXP:
                if is_digit:
                    i = _DIGITS.match(data, i).end()
                elif b == 0x2E and st == _N_INT:
                    st = _N_FRAC0
                    i += 1
                elif (b == 0x65 or b == 0x45) and st != _N_EXP:
                    st = _N_EXP0
                    i += 1
                else:
                    st = _AFTER  # the number ended; this byte is read again
                continue
            if st == _N_ZERO:
                if b == 0x2E:
                    st = _N_FRAC0
                    i += 1
                elif b == 0x65 or b == 0x45:
                    st = _N_EXP0
                    i += 1
                else:
                    st = _AFTER
                continue
            if st == _N_MINUS:
                if is_digit:
                    st = _N_ZERO if b == 0x30 else _N_INT
                    i += 1
                    continue
            elif st == _N_FRAC0:
                if is_digit:
                    st = _N_FRAC
                    i += 1
                    continue
            elif st == _N_EXP0:
                if is_digit or b == 0x2B or b == 0x2D:
                    st = _N_EXP if is_digit else _N_EXP_SIGN
                    i += 1
                    continue
            elif st == _N_EXP_SIGN:
                if is_digit:
                    st = _N_EXP
                    i += 1
                    continue
            return self._fail(MALFORMED, f"unexpected character {_render(b)} at byte {base + i}", base + i + 1)

        self._state = st
        self.offset = base + n
        return self._status_now()

    def finish(self) -> int:
        """The body has ended: FOUND, MISSING (sticky from feed) or MALFORMED."""
        if self._status != NEED_DATA:
            return self._status
        st = self._state
        end = self.offset
        if st == _DONE:
            return FOUND  # _DONE without the model was already MISSING
        if st == _TOP:
            return self._fail(MALFORMED, f"body must be a JSON object, found end of body at byte {end}", end)
        if _STR <= st <= _SURR_U:
            return self._fail(MALFORMED, f"unterminated string at byte {end}", end)
        return self._fail(MALFORMED, f"unexpected end of body at byte {end}", end)
