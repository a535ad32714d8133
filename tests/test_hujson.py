import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.hujson import HuJSONError, decode, loads, standardize


def _layout(text: str) -> list[int]:
    """Positions of line-break characters: standardize must keep them."""
    return [i for i, c in enumerate(text) if c in "\r\n"]


# --- comments ---------------------------------------------------------------


def test_line_and_block_comments():
    text = """// leading comment
{
  "a": 1, // after a member
  /* before a member */ "b": /* inside */ 2,
  "c": [1, /* between */ 2]
}
// trailing comment"""
    assert loads(text) == {"a": 1, "b": 2, "c": [1, 2]}


def test_comments_become_spaces_and_keep_line_breaks():
    text = '{/* one\ntwo\r\nthree */"a": 1} // end'
    out = standardize(text)
    assert len(out) == len(text)
    assert _layout(out) == _layout(text)
    assert out == '{      \n   \r\n        "a": 1}       '


def test_comment_markers_inside_strings_are_kept():
    text = '{"url": "http://example.com/*x*/", "c": "// not a comment", "d": "a,]}"}'
    assert standardize(text) == text
    assert loads(text) == {"url": "http://example.com/*x*/", "c": "// not a comment", "d": "a,]}"}


def test_escaped_quotes_do_not_end_strings():
    text = r'["a\"// still string", "b\\", // comment after an escaped backslash' + "\n" + r'"c\\\"/*x*/"]'
    assert loads(text) == ['a"// still string', "b\\", 'c\\"/*x*/']


def test_block_comment_is_not_nested_and_ends_at_first_close():
    assert loads("[1 /* a /* b */, 2]") == [1, 2]
    assert loads("[1, /***/ 2 /**/]") == [1, 2]
    with pytest.raises(HuJSONError):
        loads("[1 /* a /* b */ c */]")


def test_line_comment_ends_at_cr():
    assert loads('[1, // x\r2]') == [1, 2]


def test_comment_only_document_is_an_error():
    with pytest.raises(HuJSONError) as e:
        loads("// nothing here\n/* at all */")
    assert (e.value.line, e.value.col) == (1, 1)


def test_unterminated_block_comment_reports_where_it_starts():
    text = '{\n  "a": 1,\n    /* never closed\n}'
    with pytest.raises(HuJSONError) as e:
        standardize(text)
    assert (e.value.line, e.value.col) == (3, 5)
    assert str(e.value) == "line 3, column 5: unterminated block comment"


def test_block_comment_opened_inside_a_string_is_not_a_comment():
    assert loads('["/* not a comment"]') == ["/* not a comment"]


# --- trailing commas --------------------------------------------------------


def test_nested_trailing_commas():
    text = '{"a": [1, [2,], {"b": 3,},], "c": {},}'
    assert loads(text) == {"a": [1, [2], {"b": 3}], "c": {}}
    assert standardize(text) == '{"a": [1, [2 ], {"b": 3 } ], "c": {} }'


def test_trailing_comma_after_each_kind_of_value():
    assert loads('[1,"x",true,false,null,1.5e3,{},[],]') == [1, "x", True, False, None, 1500.0, {}, []]


def test_trailing_comma_separated_from_bracket_by_comments_and_whitespace():
    text = '[\n  1,\n  2, // last one\n  /* nothing more */\n]'
    assert loads(text) == [1, 2]
    assert standardize(text) == '[\n  1,\n  2             \n                    \n]'


def test_commas_that_do_not_follow_a_value_stay_errors():
    for bad in ("[,]", "{,}", "[1,,]", '{"a":,}', "[ , ]", ",", "[1,]]"):
        with pytest.raises(HuJSONError):
            loads(bad)


def test_comma_in_string_before_bracket_is_untouched():
    assert loads('["a,"]') == ["a,"]
    assert loads('{"k,": "v,",}') == {"k,": "v,"}


# --- CRLF, BOM, bytes -------------------------------------------------------


def test_crlf():
    text = '{\r\n  "a": 1, // one\r\n  "b": [2,],\r\n}\r\n'
    assert loads(text) == {"a": 1, "b": [2]}
    with pytest.raises(HuJSONError) as e:
        loads('{\r\n  "a": 1,\r\n  "b": nope\r\n}')
    assert (e.value.line, e.value.col) == (3, 8)


def test_bom_and_bytes():
    assert loads('\ufeff{"a": 1,}') == {"a": 1}
    assert loads('\ufeff{"a": 1,}'.encode()) == {"a": 1}
    assert loads(bytearray(b"[1,]")) == [1]
    assert decode("\ufeffx".encode()) == "x"


def test_invalid_utf8_position():
    with pytest.raises(HuJSONError) as e:
        loads(b'{\n  "a": "\xc3\xa9\xff"}')
    assert (e.value.line, e.value.col) == (2, 10)  # the character after the é
    assert "UTF-8" in e.value.message


# --- error positions --------------------------------------------------------


def test_error_position_and_message():
    text = '{\n  "a": 1,\n  "b": x\n}'
    with pytest.raises(HuJSONError) as e:
        loads(text)
    err = e.value
    assert (err.line, err.col) == (3, 8)
    assert str(err).startswith("line 3, column 8: unexpected character")
    assert isinstance(err, ValueError)


def test_error_position_after_comment_on_same_line_counts_the_comment():
    with pytest.raises(HuJSONError) as e:
        loads('/* twelve.. */ x')
    assert (e.value.line, e.value.col) == (1, 16)


def test_error_position_counts_characters_not_bytes():
    with pytest.raises(HuJSONError) as e:
        loads('["é😀", x]')
    assert (e.value.line, e.value.col) == (1, 8)


def test_other_syntax_errors_are_hujson_errors():
    for bad in ('{"a" 1}', '"abc', "[1 2]", "/ [1]", "[1] /", "{'a': 1}", "[NaN]", "{a: 1}", "", "[1e999]"):
        with pytest.raises(HuJSONError):
            loads(bad)


def test_lone_surrogate_is_an_error_not_a_crash():
    with pytest.raises(HuJSONError):
        loads('["\ud800"]')


# --- properties -------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from(list('ab/*,]}{["\\\n\r\t :')) | st.characters(exclude_categories=("Cs",)))
)
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)
_fills = st.sampled_from(
    ["", "", " ", "\n", "\r\n", "\t", "// c, ] } \"x' /* \n", "/* a, ] } \" // */", "/* multi\n line */", "//\r\n", "/**/", "/***/"]
)


def _dump(value, data) -> str:
    def fill() -> str:
        return data.draw(_fills)

    def key(k: str) -> str:
        return json.dumps(k, ensure_ascii=data.draw(st.booleans()))

    if isinstance(value, dict):
        parts = [f"{fill()}{key(k)}{fill()}:{fill()}{_dump(v, data)}{fill()}" for k, v in value.items()]
        trailing = "," if parts and data.draw(st.booleans()) else ""
        return "{" + ",".join(parts) + trailing + fill() + "}"
    if isinstance(value, list):
        parts = [f"{fill()}{_dump(v, data)}{fill()}" for v in value]
        trailing = "," if parts and data.draw(st.booleans()) else ""
        return "[" + ",".join(parts) + trailing + fill() + "]"
    return json.dumps(value, ensure_ascii=data.draw(st.booleans()))


@settings(max_examples=200, deadline=None)
@given(_values, st.data())
def test_decorated_json_parses_to_the_same_value(value, data):
    text = data.draw(_fills) + _dump(value, data) + data.draw(_fills)
    assert loads(text) == value
    out = standardize(text)
    assert len(out) == len(text)
    assert _layout(out) == _layout(text)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_standard_json_is_left_alone(value):
    for text in (json.dumps(value), json.dumps(value, indent=2, ensure_ascii=False)):
        assert standardize(text) == text
        assert loads(text) == value


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('[]{},:"\\/*\n\r 1ax')) | st.characters(exclude_categories=("Cs",)), max_size=40))
def test_any_text_parses_or_raises_hujson_error(text):
    try:
        out = standardize(text)
    except HuJSONError as e:
        assert e.line >= 1 and e.col >= 1
        return
    assert len(out) == len(text)
    assert _layout(out) == _layout(text)
    try:
        loads(text)
    except HuJSONError as e:
        assert e.line >= 1 and e.col >= 1
        assert e.line <= text.count("\n") + 1
