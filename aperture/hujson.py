"""HuJSON: JSON for humans (comments and trailing commas), read as standard JSON.

Theory of operation
-------------------
HuJSON is JSON plus two conveniences: `//` line comments and `/* */` block
comments anywhere whitespace may appear, and a trailing comma after the last
member of an object or the last element of an array. `standardize` turns such
text into standard JSON without parsing it:

* One pass from left to right jumps between the characters that matter:
  `"` (a string starts; its end is found by counting the backslashes before
  each later `"`), `/` (a comment may start), `,`, `]` and `}`. Everything
  inside a string is copied untouched, so `//`, `/*` and commas in string
  values stay what they are.
* A comment is replaced by spaces, keeping its line breaks. A trailing comma
  is replaced by one space. The output therefore has the same length and the
  same line breaks as the input: a position orjson reports in the output is
  the same line and column in the text as written.
* A comma is trailing when the next significant character is `]` or `}` and
  the one before it ended a value. `[,]`, `{"a":,}` and `[1,,]` are left as
  they are, so orjson rejects them as it should.

Anything else that is not JSON (a stray `/`, an unterminated string, a bare
word) is left in place for orjson to report with its position. Only an
unterminated block comment is reported here, at the `/*` that opens it.

Columns count characters (not bytes) from 1, lines count `\\n` from 1: the
same convention as orjson's own error positions.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["HuJSONError", "standardize", "loads", "decode"]


class HuJSONError(ValueError):
    """A syntax error with its position; `str()` reads
    `line 4, column 12: unexpected character`."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(f"line {line}, column {col}: {message}")
        self.message = message
        self.line = line
        self.col = col


# The characters the scan stops at; everything between them is copied as is.
_SPECIAL = re.compile(r'["/,\]}]')
_JSON_SPACE = " \t\r\n"
# A comma after one of these did not follow a value: it is not a trailing comma.
_NOT_A_VALUE_END = frozenset("[{,:")
_NOT_NEWLINE = re.compile(r"[^\r\n]")


def _position(text: str, pos: int) -> tuple[int, int]:
    """1-based (line, column) of character index `pos`."""
    line = text.count("\n", 0, pos) + 1
    col = pos - text.rfind("\n", 0, pos)  # rfind gives -1 on the first line
    return line, col


def _string_end(text: str, start: int) -> int:
    """Index of the `"` closing the string whose opening quote is at `start`,
    or -1 if the string never ends."""
    i = start + 1
    while True:
        q = text.find('"', i)
        if q < 0:
            return -1
        # The quote is escaped when an odd number of backslashes precede it.
        b = q
        while text[b - 1] == "\\":
            b -= 1
        if (q - b) % 2 == 0:
            return q
        i = q + 1


def standardize(text: str) -> str:
    """HuJSON text -> standard JSON text of the same length and line layout.

    Raises HuJSONError for an unterminated block comment; every other syntax
    error is left for the JSON parser to find.
    """
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), same length
    last_char = ""  # last significant character outside strings and comments
    last_pos = -1
    before_comma = ""  # significant character before the comma at last_pos
    i = 0
    n = len(text)
    while i < n:
        m = _SPECIAL.search(text, i)
        stop = m.start() if m else n
        gap = text[i:stop].rstrip(_JSON_SPACE)
        if gap:
            last_char = gap[-1]
            last_pos = i + len(gap) - 1
        if m is None:
            break
        c = text[stop]
        if c == '"':
            end = _string_end(text, stop)
            if end < 0:
                break  # unterminated string: the JSON parser reports it
            last_char, last_pos = '"', end
            i = end + 1
        elif c == "/":
            nxt = text[stop + 1 : stop + 2]
            if nxt == "/":
                end = stop + 2
                while end < n and text[end] not in "\r\n":
                    end += 1
            elif nxt == "*":
                close = text.find("*/", stop + 2)
                if close < 0:
                    raise HuJSONError("unterminated block comment", *_position(text, stop))
                end = close + 2
            else:  # a lone "/" is not JSON: leave it for the parser
                last_char, last_pos = "/", stop
                i = stop + 1
                continue
            edits.append((stop, end, _NOT_NEWLINE.sub(" ", text[stop:end])))
            i = end
        elif c == ",":
            before_comma = last_char
            last_char, last_pos = ",", stop
            i = stop + 1
        else:  # "]" or "}"
            if last_char == "," and before_comma and before_comma not in _NOT_A_VALUE_END:
                edits.append((last_pos, last_pos + 1, " "))
            last_char, last_pos = c, stop
            i = stop + 1
    if not edits:
        return text
    # A trailing comma is found after the comments that follow it: restore order.
    edits.sort()
    pieces: list[str] = []
    copied = 0
    for start, end, replacement in edits:
        pieces.append(text[copied:start])
        pieces.append(replacement)
        copied = end
    pieces.append(text[copied:])
    return "".join(pieces)


def decode(data: bytes) -> str:
    """UTF-8 bytes -> text without a leading byte-order mark.

    Raises HuJSONError at the first byte that is not UTF-8."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        good = bytes(data)[: e.start].decode("utf-8")
        raise HuJSONError("invalid UTF-8", *_position(good, len(good))) from None
    return text[1:] if text.startswith("\ufeff") else text


def loads(text: str | bytes) -> Any:
    """Parse HuJSON into Python objects (dict, list, str, int, float, bool, None).

    Raises HuJSONError with the line and column of the first syntax error.
    A leading byte-order mark is ignored.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = decode(text)
    elif text.startswith("\ufeff"):
        text = text[1:]
    std = standardize(text)
    try:
        return orjson.loads(std)
    except orjson.JSONDecodeError as e:
        message = e.msg[:1].lower() + e.msg[1:] if e.msg else "invalid JSON"
        pos = min(max(e.pos, 0), len(std))
        raise HuJSONError(message, *_position(std, pos)) from None
