"""JSON read and written as serde_json does (the native meters use serde_json
with `preserve_order` and `arbitrary_precision`), so that both implementations
accept the same payloads and write tool inputs back byte for byte alike.

- strict UTF-8; no NaN / Infinity; at most 127 nested containers; no lone
  surrogates (escaped or not) in strings or keys;
- numbers kept as written: integers as Python ints, everything else (floats,
  "-0", integers too long for Python's int-from-text limit) as `RawNumber`
  text, the exponent spelled `e+N` / `e-N` as serde_json writes it;
- duplicate keys: the last value wins, at the first key's position.

A token count is a JSON integer in 0..2**64-1 (`count`); anything else is
treated as absent.
"""

from __future__ import annotations

import json
import re

U64_MAX = (1 << 64) - 1
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SERDE_MAX_DEPTH = 127  # serde_json's recursion limit: 128 nested containers fail


class RawNumber:
    """A JSON number kept as (normalized) text, as serde_json's
    `arbitrary_precision` keeps it: floats, "-0" and giant integers."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class BadJson(ValueError):
    pass


def _parse_float(s: str) -> RawNumber:
    # serde_json writes the exponent as 'e' followed by an explicit sign.
    for e in ("e", "E"):
        if e in s:
            mant, exp = s.split(e, 1)
            if exp[0] not in "+-":
                exp = "+" + exp
            return RawNumber(f"{mant}e{exp}")
    return RawNumber(s)


def _parse_int(s: str) -> int | RawNumber:
    if s == "-0":
        return RawNumber(s)
    try:
        return int(s)
    except ValueError:  # beyond Python's int-from-text digit limit
        return RawNumber(s)


def _parse_constant(s: str) -> None:
    raise BadJson(s)


_DECODER = json.JSONDecoder(parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant)


def _check_tree(v: object) -> None:
    """Reject what serde_json rejects and Python accepts: nesting deeper than
    127 containers, lone surrogates in strings or keys."""
    todo: list[tuple[object, int]] = [(v, 0)]
    while todo:
        x, depth = todo.pop()
        if isinstance(x, str):
            x.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError
        elif isinstance(x, (dict, list)):
            depth += 1
            if depth > _SERDE_MAX_DEPTH:
                raise BadJson("too deep")
            if isinstance(x, dict):
                for k, item in x.items():
                    k.encode("utf-8")
                    todo.append((item, depth))
            else:
                todo.extend((item, depth) for item in x)


def loads(data: bytes) -> object:
    """Parse like serde_json (see the module docstring); raises ValueError."""
    try:
        v = _DECODER.decode(data.decode("utf-8"))
    except RecursionError as e:
        raise BadJson("too deep") from e
    if (data.count(b"[") + data.count(b"{") > _SERDE_MAX_DEPTH) or _SURROGATE_ESCAPE.search(data):
        _check_tree(v)
    return v


def loads_object(data: bytes) -> dict | None:
    """The JSON object `data` holds, or None (bad JSON, or not an object)."""
    try:
        v = loads(data)
    except (ValueError, UnicodeError):
        return None
    return v if isinstance(v, dict) else None


def compact(v: object) -> str:
    """Compact JSON text, as serde_json::to_string writes a parsed Value."""
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + compact(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(compact(x) for x in v) + "]"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, RawNumber):
        return v.text
    return str(v)  # int


def count(v: object) -> int | None:
    """A token count or index: a JSON integer in 0..2**64-1, else None."""
    if type(v) is int and 0 <= v <= U64_MAX:
        return v
    return None


def count0(v: object) -> int:
    """A count, 0 when absent."""
    if type(v) is int and 0 <= v <= U64_MAX:
        return v
    return 0
