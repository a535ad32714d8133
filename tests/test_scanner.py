"""ModelScanner: the native scanner and its pure-Python twin, held to the same
tests, then to each other and to `json.loads` on random documents split at
random points (and on corrupted ones)."""

from __future__ import annotations

import ast
import json
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aperture import _pure

try:
    from aperture import _native
except ImportError:  # extension not built
    _native = None

needs_native = pytest.mark.skipif(_native is None, reason="aperture._native is not built (run `pip install -e .`)")
IMPLS = [pytest.param(_pure, id="pure"), pytest.param(_native, id="native", marks=needs_native)]

NEED_DATA, FOUND, MALFORMED, MISSING, NOT_STRING, DUPLICATE = 0, 1, 2, 3, 4, 5
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scan(mod, body: bytes, cuts=()) -> tuple:
    """Feed `body` cut at `cuts`; everything observable, for comparison."""
    s = mod.ModelScanner()
    statuses = []
    prev = 0
    for c in [*sorted(cuts), len(body)]:
        statuses.append(s.feed(body[prev:c]))
        prev = c
    statuses.append(s.finish())
    return statuses, s.model, s.model_start, s.model_end, s.offset, s.error


def final(mod, body: bytes, step: int | None = None) -> tuple:
    cuts = range(step, len(body), step) if step else ()
    statuses, *rest = scan(mod, body, cuts)
    return (statuses[-1], *rest)


# ---------------------------------------------------------------------------
# The module surface
# ---------------------------------------------------------------------------


def _stub_names() -> set[str]:
    stub = pathlib.Path(_pure.__file__).parent.with_name("_native.pyi")
    tree = ast.parse(stub.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_pure_exposes_the_stub_names():
    assert set(_pure.__all__) == _stub_names()
    for name in _pure.__all__:
        assert hasattr(_pure, name)


@needs_native
def test_native_exposes_the_same_names_and_values():
    public = {n for n in dir(_native) if not n.startswith("_")}
    assert public == set(_pure.__all__)
    for name in ("NEED_DATA", "FOUND", "MALFORMED", "MISSING", "NOT_STRING", "DUPLICATE"):
        assert getattr(_native, name) == getattr(_pure, name)


@pytest.mark.parametrize("mod", IMPLS)
def test_status_values(mod):
    assert (mod.NEED_DATA, mod.FOUND, mod.MALFORMED, mod.MISSING, mod.NOT_STRING, mod.DUPLICATE) == (0, 1, 2, 3, 4, 5)


# ---------------------------------------------------------------------------
# Edge cases, each against both implementations
# ---------------------------------------------------------------------------

ERRORS = [
    (b"", MALFORMED, "body must be a JSON object, found end of body at byte 0"),
    (b" \t\r\n", MALFORMED, "body must be a JSON object, found end of body at byte 4"),
    (b"[]", MALFORMED, "body must be a JSON object, found '[' at byte 0"),
    (b' "model"', MALFORMED, "body must be a JSON object, found '\"' at byte 1"),
    (b"\xef\xbb\xbf{}", MALFORMED, "body must be a JSON object, found 0xef at byte 0"),
    (b"{}", MISSING, 'missing top-level "model" key (object closed at byte 1)'),
    (b'{"a":{"model":"x"},"b":["model"]}', MISSING, 'missing top-level "model" key (object closed at byte 32)'),
    (b'{"Model":"x","models":"y","mode":"z"}', MISSING, 'missing top-level "model" key (object closed at byte 36)'),
    (b'{"model":1}', NOT_STRING, "\"model\" must be a string, found '1' at byte 9"),
    (b'{"model": -1}', NOT_STRING, "\"model\" must be a string, found '-' at byte 10"),
    (b'{"model":null}', NOT_STRING, "\"model\" must be a string, found 'n' at byte 9"),
    (b'{"model":true}', NOT_STRING, "\"model\" must be a string, found 't' at byte 9"),
    (b'{"model":{"id":"x"}}', NOT_STRING, "\"model\" must be a string, found '{' at byte 9"),
    (b'{"model":["x"]}', NOT_STRING, "\"model\" must be a string, found '[' at byte 9"),
    (b'{"model":x}', MALFORMED, "unexpected character 'x' at byte 9"),
    (b'{"model":"a","model":"b"}', DUPLICATE, 'duplicate top-level "model" key at byte 13'),
    (b'{"model":"a","mod\\u0065l":1}', DUPLICATE, 'duplicate top-level "model" key at byte 13'),
    (b'{"model":"a","x":tru}', MALFORMED, "unexpected character '}' at byte 20"),
    (b'{"model":"a","x":True}', MALFORMED, "unexpected character 'T' at byte 17"),
    (b'{"model":"a"} x', MALFORMED, "unexpected character 'x' at byte 14"),
    (b'{"model":"a"}{}', MALFORMED, "unexpected character '{' at byte 13"),
    (b'{"model":"a"', MALFORMED, "unexpected end of body at byte 12"),
    (b'{"model":"a', MALFORMED, "unterminated string at byte 11"),
    (b'{"model":"a\\', MALFORMED, "unterminated string at byte 12"),
    (b'{"model":"a","x":1', MALFORMED, "unexpected end of body at byte 18"),
    (b'{"model":"a\x01"}', MALFORMED, "control character 0x01 in string at byte 11"),
    (b'{"model":"a","x":"\n"}', MALFORMED, "control character 0x0a in string at byte 18"),
    (b'{"model":"a\\q"}', MALFORMED, "invalid escape 'q' at byte 12"),
    (b'{"model":"a","x":"\\x41"}', MALFORMED, "invalid escape 'x' at byte 19"),
    (b'{"model":"a\\u12g4"}', MALFORMED, "invalid \\u escape digit 'g' at byte 15"),
    (b'{"model":"\\ud800"}', MALFORMED, "lone surrogate in \\u escape at byte 10"),
    (b'{"model":"\\ud800x"}', MALFORMED, "lone surrogate in \\u escape at byte 10"),
    (b'{"model":"\\ud800\\n"}', MALFORMED, "lone surrogate in \\u escape at byte 10"),
    (b'{"model":"\\ud800\\u0041"}', MALFORMED, "lone surrogate in \\u escape at byte 10"),
    (b'{"model":"\\udc00\\ud800"}', MALFORMED, "lone surrogate in \\u escape at byte 10"),
    (b'{"mo\\udc00del":"m"}', MALFORMED, "lone surrogate in \\u escape at byte 4"),
    (b'{"model":"\xc3("}', MALFORMED, "invalid UTF-8 at byte 11"),
    (b'{"model":"\xc3"}', MALFORMED, "invalid UTF-8 at byte 11"),
    (b'{"model":"\xc3\\n"}', MALFORMED, "invalid UTF-8 at byte 11"),
    (b'{"model":"\xed\xa0\x80"}', MALFORMED, "invalid UTF-8 at byte 11"),  # an encoded surrogate
    (b'{"model":"\xc0\x80"}', MALFORMED, "invalid UTF-8 at byte 10"),  # overlong
    (b'{"model":"\xf4\x90\x80\x80"}', MALFORMED, "invalid UTF-8 at byte 11"),  # beyond U+10FFFF
    (b'{"mo\xffdel":"m"}', MALFORMED, "invalid UTF-8 at byte 4"),
    (b'{"a":01}', MALFORMED, "unexpected character '1' at byte 6"),
    (b'{"a":1.}', MALFORMED, "unexpected character '}' at byte 7"),
    (b'{"a":.5}', MALFORMED, "unexpected character '.' at byte 5"),
    (b'{"a":+1}', MALFORMED, "unexpected character '+' at byte 5"),
    (b'{"a":-}', MALFORMED, "unexpected character '}' at byte 6"),
    (b'{"a":1e}', MALFORMED, "unexpected character '}' at byte 7"),
    (b'{"a":1e+}', MALFORMED, "unexpected character '}' at byte 8"),
    (b'{"a":1.5.2}', MALFORMED, "unexpected character '.' at byte 8"),
    (b'{"a":0x1}', MALFORMED, "unexpected character 'x' at byte 6"),
    (b'{"a":NaN}', MALFORMED, "unexpected character 'N' at byte 5"),
    (b'{"a":1,}', MALFORMED, "unexpected character '}' at byte 7"),
    (b'{"a":[1,]}', MALFORMED, "unexpected character ']' at byte 8"),
    (b'{"a":[1 2]}', MALFORMED, "unexpected character '2' at byte 8"),
    (b'{"a" 1}', MALFORMED, "unexpected character '1' at byte 5"),
    (b"{'a':1}", MALFORMED, "unexpected character ''' at byte 1"),
    (b'{"a":[}', MALFORMED, "unexpected character '}' at byte 6"),
    (b'{"a":{]}', MALFORMED, "unexpected character ']' at byte 6"),
    (b'{"a":\x0c1}', MALFORMED, "unexpected character 0x0c at byte 5"),  # form feed is not JSON whitespace
    (b'{"a":\xc2\xa01}', MALFORMED, "unexpected character 0xc2 at byte 5"),  # nor is NBSP
]


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(("body", "status", "message"), ERRORS, ids=[repr(e[0])[:40] for e in ERRORS])
def test_errors_name_the_problem_and_offset(mod, body, status, message):
    for step in (None, 1, 3):
        got = final(mod, body, step)
        assert got[0] == status
        assert got[-1] == message


@pytest.mark.parametrize("mod", IMPLS)
def test_finds_the_top_level_model_only(mod):
    body = (
        b'{"messages":[{"role":"user","content":[{"type":"tool_use","input":{"model":"inner"}}]}],'
        b'"system":"say \\"model\\": \\"x\\"","metadata":{"model":"meta"},"model" : "claude-sonnet-4-5",'
        b'"stream":true}'
    )
    status, model, start, end, offset, error = final(mod, body)
    assert (status, model, error) == (FOUND, "claude-sonnet-4-5", None)
    assert body[start:end] == b'"claude-sonnet-4-5"'
    assert offset == len(body)


@pytest.mark.parametrize("mod", IMPLS)
def test_key_and_value_escapes_are_decoded(mod):
    body = b'{"mod\\u0065l":"cl\\u00e9\\uD83D\\uDE00\\n\\/\\"\\\\\\t\\b\\f\\r\\u0000x"}'
    status, model, start, end, _, _ = final(mod, body)
    assert status == FOUND
    assert model == 'cl\u00e9\U0001f600\n/"\\\t\b\f\r\x00x' == json.loads(body[start:end])
    raw = '{"model":"h\u00e9\u4e2d\U0001f600"}'.encode()
    assert final(mod, raw, 1)[1] == "h\u00e9\u4e2d\U0001f600"


@pytest.mark.parametrize("mod", IMPLS)
def test_skipped_strings_are_not_utf8_validated(mod):
    assert final(mod, b'{"a":"\xff\xfe","model":"m","b":{"\xc3(":1}}')[:2] == (FOUND, "m")


@pytest.mark.parametrize("mod", IMPLS)
def test_status_sequence_one_byte_at_a_time(mod):
    body = b'{"a":[1,{"b":null}],"model":"m","c":"x"}'
    statuses = scan(mod, body, range(1, len(body)))[0]
    first = body.index(b'"m"') + 3  # the byte that closes the value, 1-based
    assert statuses[: first - 1] == [NEED_DATA] * (first - 1)
    assert statuses[first - 1 :] == [FOUND] * (len(statuses) - first + 1)


@pytest.mark.parametrize("mod", IMPLS)
def test_not_string_is_reported_at_the_first_byte_of_the_value(mod):
    s = mod.ModelScanner()
    assert s.feed(b'{"x":1, "model": ') == NEED_DATA
    assert s.feed(b"4") == NOT_STRING
    assert s.offset == 18
    assert s.feed(b'2, "y": 1}') == NOT_STRING  # sticky
    assert s.finish() == NOT_STRING
    assert s.model is None and s.model_start == -1 and s.model_end == -1


@pytest.mark.parametrize("mod", IMPLS)
def test_missing_comes_from_feed_when_the_object_closes(mod):
    s = mod.ModelScanner()
    assert s.feed(b'{"a":{"model":"x"}') == NEED_DATA
    assert s.feed(b"}  ") == MISSING
    assert s.finish() == MISSING
    assert s.error == 'missing top-level "model" key (object closed at byte 18)'


@pytest.mark.parametrize("mod", IMPLS)
def test_scanning_continues_after_found(mod):
    s = mod.ModelScanner()
    assert s.feed(b'{"model":"m",') == FOUND
    assert s.feed(b'"other":[1,2') == FOUND
    assert s.feed(b',{"model":"n"}], "model" : "o"}') == DUPLICATE
    assert s.error == 'duplicate top-level "model" key at byte 42'
    assert s.model == "m"  # the first value stays
    assert s.feed(b"") == DUPLICATE
    assert s.finish() == DUPLICATE

    s = mod.ModelScanner()
    assert s.feed(b'{"model":"m","x":') == FOUND
    assert s.feed(b"[1,,2]}") == MALFORMED
    assert s.error == "unexpected character ',' at byte 20"
    assert s.offset == 21  # the offending byte counts as consumed
    assert s.feed(b"whatever") == MALFORMED
    assert s.offset == 21

    s = mod.ModelScanner()
    assert s.feed(b'{"model":"m"}') == FOUND
    assert s.finish() == FOUND
    assert (s.model, s.model_start, s.model_end, s.offset, s.error) == ("m", 9, 12, 13, None)


@pytest.mark.parametrize("mod", IMPLS)
def test_truncated_after_found_is_malformed(mod):
    s = mod.ModelScanner()
    assert s.feed(b'{"model":"m","messages":[{"role":"user"') == FOUND
    assert s.finish() == MALFORMED
    assert s.error == "unexpected end of body at byte 39"
    assert s.model == "m"


@pytest.mark.parametrize("mod", IMPLS)
def test_depth_limit(mod):
    ok = b'{"model":"m","a":' + b"[" * 1023 + b"]" * 1023 + b"}"
    assert final(mod, ok)[0] == FOUND
    deep = b'{"model":"m","a":' + b'[{"b":' * 512 + b"1" + b"}]" * 512 + b"}"
    status, *_, error = final(mod, deep)
    assert status == MALFORMED
    assert error == f"nesting deeper than 1024 at byte {17 + 6 * 511 + 1}"


@pytest.mark.parametrize("mod", IMPLS)
def test_numbers_and_literals(mod):
    body = b'{"a":[0,-0,1.5,-2e10,3E+2,4e-1,0.25e1,-0.0,1e007,true,false,null,{},[],""],"model":"m"}'
    assert final(mod, body, 1)[0] == FOUND
    assert final(mod, b' \t\r\n{ "model" \n: "m" , "n" : [ 1 , 2 ] } \r\n')[0] == FOUND


@pytest.mark.parametrize("mod", IMPLS)
def test_spans_let_a_caller_splice_the_value(mod):
    body = b'{"messages":[],"model" :\t"claude-x" ,"stream":true}'
    _, model, start, end, _, _ = final(mod, body, 4)
    spliced = body[:start] + json.dumps("claude-y").encode() + body[end:]
    assert json.loads(spliced)["model"] == "claude-y"
    assert final(mod, spliced)[1] == "claude-y"


@pytest.mark.parametrize("mod", IMPLS)
def test_feed_accepts_bytearray_and_empty_chunks(mod):
    s = mod.ModelScanner()
    assert s.feed(b"") == NEED_DATA
    assert s.feed(bytearray(b'{"model":"m"}')) == FOUND
    assert s.finish() == FOUND


# ---------------------------------------------------------------------------
# Random documents
# ---------------------------------------------------------------------------


class Obj(list):
    """A JSON object as its list of (key, value) pairs: order and duplicates kept."""


TEXT = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(
        ["model", "", "Model", "mod", "models", 'a"b', "a\\b", "é", "\u2028", "\U0001f600", "\x00\x1f", "/"]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(TEXT, inner), max_size=4).map(Obj),
    ),
    max_leaves=20,
)
NON_STRING_MODELS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(SCALARS, max_size=2),
)


@st.composite
def documents(draw):
    """(top-level pairs, expected status, expected model)."""
    pairs = draw(st.lists(st.tuples(TEXT.filter(lambda k: k != "model"), VALUES), max_size=6))
    kind = draw(st.sampled_from(["string", "string", "absent", "not_string", "duplicate"]))
    model = draw(TEXT)
    if kind == "absent":
        return Obj(pairs), MISSING, None
    first = model if kind != "not_string" else draw(NON_STRING_MODELS)
    pos = draw(st.integers(0, len(pairs)))
    pairs.insert(pos, ("model", first))
    if kind == "duplicate":
        second = draw(st.one_of(TEXT, NON_STRING_MODELS))
        pairs.insert(draw(st.integers(pos + 1, len(pairs))), ("model", second))
        return Obj(pairs), DUPLICATE, model
    if kind == "not_string":
        return Obj(pairs), NOT_STRING, None
    return Obj(pairs), FOUND, model


SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def dump(v, rnd) -> str:
    """JSON text of `v`, with random (valid) whitespace, escapes and number forms."""

    def ws() -> str:
        return rnd.choice(["", "", "", "", " ", "  ", "\n", "\r\n\t", "\t"])

    def u_escape(c: str) -> str:
        n = ord(c)
        if n > 0xFFFF:
            n -= 0x10000
            units = [0xD800 + (n >> 10), 0xDC00 + (n & 0x3FF)]
        else:
            units = [n]
        return "".join(("\\u%04x" if rnd.random() < 0.5 else "\\u%04X") % u for u in units)

    def string(s: str) -> str:
        out = []
        for c in s:
            if c in SHORT_ESCAPES and (c not in '\b\f\n\r\t"\\' or rnd.random() < 0.7):
                out.append(SHORT_ESCAPES[c])
            elif c < " " or c in '"\\' or rnd.random() < 0.08:
                out.append(u_escape(c))
            elif c == "/" and rnd.random() < 0.5:
                out.append("\\/")
            else:
                out.append(c)
        return '"' + "".join(out) + '"'

    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return rnd.choice([str(v), str(v), f"{v}.0", f"{v}E+00", f"{v}e0"])
    if isinstance(v, float):
        text = repr(v)
        return text if ("e" in text or "." in text) else text + ".0"
    if isinstance(v, str):
        return string(v)
    if isinstance(v, Obj):
        items = [ws() + string(k) + ws() + ":" + ws() + dump(x, rnd) + ws() for k, x in v]
        return "{" + (",".join(items) if items else ws()) + "}"
    items = [ws() + dump(x, rnd) + ws() for x in v]
    return "[" + (",".join(items) if items else ws()) + "]"


def body_of(doc: Obj, rnd) -> bytes:
    return (rnd.choice(["", " ", "\n"]) + dump(doc, rnd) + rnd.choice(["", " ", "\r\n"])).encode("utf-8")


def cut_points(n: int):
    return st.lists(st.integers(0, n), max_size=10).map(sorted)


def _raise(name):
    raise ValueError(name)


def oracle(body: bytes):
    """What the scanner must say about `body`, by json.loads: None when the
    oracle cannot tell (not UTF-8, surrogates where the scanner decodes),
    "invalid" when the body is not JSON, else (status, model)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        doc = json.loads(text, object_pairs_hook=Obj, parse_constant=_raise)
    except (ValueError, RecursionError):
        return "invalid"
    if not isinstance(doc, Obj):
        return (MALFORMED, None)

    def surrogates(s) -> bool:
        return isinstance(s, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in s)

    models = [v for k, v in doc if k == "model"]
    if any(surrogates(k) for k, _ in doc) or (models and surrogates(models[0])):
        return None
    if not models:
        return (MISSING, None)
    if not isinstance(models[0], str):
        return (NOT_STRING, None)
    return (DUPLICATE if len(models) > 1 else FOUND, models[0])


def check_shape(outcome, body: bytes) -> None:
    """Invariants every outcome meets, whatever the input."""
    statuses, model, start, end, offset, error = outcome
    assert all(s in (NEED_DATA, FOUND, MALFORMED, MISSING, NOT_STRING, DUPLICATE) for s in statuses)
    # NEED_DATA*, FOUND*, then at most one sticky error code
    errors = [s for s in statuses if s not in (NEED_DATA, FOUND)]
    if errors:
        assert len(set(errors)) == 1 and statuses[statuses.index(errors[0]) :] == [errors[0]] * len(errors)
        assert error is not None
    else:
        assert statuses[-1] == FOUND and error is None
    if FOUND in statuses:
        assert NEED_DATA not in statuses[statuses.index(FOUND) :]
    assert 0 <= offset <= len(body)
    if model is not None:
        assert 0 <= start < end <= offset
        assert json.loads(body[start:end]) == model
    else:
        assert start == end == -1


def check_oracle(outcome, body: bytes) -> None:
    statuses, model = outcome[0], outcome[1]
    expected = oracle(body)
    if expected is None:
        return
    if expected == "invalid":
        assert statuses[-1] != FOUND
    else:
        assert (statuses[-1], model) == expected


@PROPS
@given(st.data())
def test_random_documents(data):
    doc, status, model = data.draw(documents())
    body = body_of(doc, data.draw(st.randoms(use_true_random=False)))
    cuts = data.draw(cut_points(len(body)))

    outcome = scan(_pure, body, cuts)
    check_shape(outcome, body)
    assert outcome[0][-1] == status
    assert outcome[1] == model
    check_oracle(outcome, body)
    if status == FOUND:
        assert json.loads(body)["model"] == model
        assert outcome[4] == len(body)
    # the split does not matter
    assert scan(_pure, body)[1:] == outcome[1:]
    assert scan(_pure, body)[0][-1] == status
    if _native is not None:
        assert scan(_native, body, cuts) == outcome
        assert scan(_native, body, range(1, len(body)))[1:] == outcome[1:]


@st.composite
def corrupted(draw):
    doc, _, _ = draw(documents())
    body = bytearray(body_of(doc, draw(st.randoms(use_true_random=False))))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate"]))
        k = draw(st.integers(0, len(body)))
        if op == "truncate":
            del body[k:]
        elif op == "insert":
            body[k:k] = bytes([draw(st.sampled_from([*b'{}[]":,\\ u0e-.tfn', 0x00, 0x1F, 0x80, 0xC3, 0xFF]))])
        elif k < len(body):
            if op == "flip":
                body[k] = draw(st.integers(0, 255))
            elif op == "delete":
                del body[k]
            else:
                j = draw(st.integers(k, len(body)))
                body[j:j] = body[k:j]
    return bytes(body)


@PROPS
@given(st.data())
def test_corrupted_documents(data):
    body = data.draw(corrupted())
    cuts = data.draw(cut_points(len(body)))
    outcome = scan(_pure, body, cuts)
    check_shape(outcome, body)
    check_oracle(outcome, body)
    assert scan(_pure, body)[1:] == outcome[1:]
    if _native is not None:
        assert scan(_native, body, cuts) == outcome
        assert scan(_native, body, range(1, len(body)))[1:] == outcome[1:]


@needs_native
@settings(max_examples=100, deadline=None)
@given(st.data())
def test_long_strings_cross_the_native_block_boundaries(data):
    """Long strings dense with escapes, so the native 64-byte block skipper
    meets escapes, quotes and bad bytes at every position of a block."""
    alphabet = st.sampled_from(["a", "é", "\\n", '\\"', "\\\\", "\\u00e9", "\\/", "\\q", "\x01", "\\ud800"])
    parts = data.draw(st.lists(alphabet, min_size=60, max_size=400))
    pad = data.draw(st.integers(0, 70))
    body = ('{"' + "p" * pad + '":"' + "".join(parts) + '","model":"m"}').encode()
    cuts = data.draw(cut_points(len(body)))
    outcome = scan(_pure, body, cuts)
    assert scan(_native, body, cuts) == outcome
    assert scan(_native, body)[1:] == outcome[1:]
    check_oracle(outcome, body)
