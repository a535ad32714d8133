//! JSON read by serde_json's rules, validated once and navigated without
//! building a tree.
//!
//! Theory of operation
//! -------------------
//! Most events a meter parses are read for a handful of small values (a
//! usage object, a name, a finish reason), while their bulk is text the
//! meter never looks at. Building a `serde_json::Value` for them spends most
//! of the time allocating strings and maps that are thrown away. Instead,
//! `Parser::parse` makes one pass over the bytes that accepts exactly what
//! `serde_json::from_slice::<Value>` accepts, and records a *tape*: one
//! `Node` per value (and per object key) with its byte range and the index
//! of its next sibling, so that a lookup skips a whole subtree in one step.
//! Strings are passed over 8 bytes at a time while they are plain ASCII;
//! escapes, control bytes and UTF-8 sequences are checked where they stand.
//!
//! The rules, those of serde_json (which `aperture/_pure/jsonrules.py`
//! mirrors for the pure twin):
//! - whitespace is space, tab, LF, CR; nothing but whitespace after the
//!   top-level value; an empty document is an error;
//! - numbers are `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, kept as
//!   written (`arbitrary_precision`: no range limit);
//! - strings: no raw byte below 0x20, valid UTF-8, the escapes `\" \\ \/ \b
//!   \f \n \r \t \uXXXX`; a `\u` high surrogate must be followed by a `\u` low
//!   surrogate, and a low surrogate may not come alone;
//! - at most 127 nested arrays and objects (serde_json's recursion limit);
//! - keys are strings; duplicate keys are allowed and the last one wins
//!   (`V::get` returns the last match), as in a parsed `Value`.
//!
//! A value that must be written back (a tool input) is parsed again on its
//! own bytes with serde_json and written compact, which gives exactly what
//! the whole-document `Value` would have given.

use std::borrow::Cow;

use serde_json::Value;

/// serde_json's recursion limit: the 128th nested container is an error.
const MAX_DEPTH: usize = 127;

const ESCAPED: u8 = 1;

#[derive(Clone, Copy, Debug)]
struct Node {
    // u32 offsets keep a node at 16 bytes; `tape` refuses documents of 4 GiB
    // or more (never reached: every framing bounds an event far below that)
    start: u32,
    end: u32,
    /// Index of the node after this value's subtree.
    next: u32,
    flags: u8,
}

impl Node {
    #[inline]
    fn new(start: usize, end: usize, next: usize, flags: u8) -> Node {
        Node {
            start: start as u32,
            end: end as u32,
            next: next as u32,
            flags,
        }
    }

    fn start(&self) -> usize {
        self.start as usize
    }

    fn end(&self) -> usize {
        self.end as usize
    }

    fn next(&self) -> usize {
        self.next as usize
    }
}

/// Reusable buffers; `parse` borrows them for one document.
#[derive(Default, Debug)]
pub struct Parser {
    nodes: Vec<Node>,
    stack: Vec<usize>,
}

#[inline]
fn ws(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && matches!(src[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

#[inline]
fn digits(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && src[i].is_ascii_digit() {
        i += 1;
    }
    i
}

fn hex4(src: &[u8], i: usize) -> Option<u32> {
    let h = src.get(i..i + 4)?;
    let mut n = 0;
    for &c in h {
        n = n * 16 + (c as char).to_digit(16)?;
    }
    Some(n)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in each byte of `x` (little-endian) that a
/// string run stops at: a quote, a backslash, below 0x20 or above 0x7F. The
/// classic has-zero / has-less word tricks can flag a byte just above a true
/// one, never below, so the lowest flagged byte is exact.
#[inline]
fn stops(x: u64) -> u64 {
    let has_zero = |y: u64| y.wrapping_sub(LO) & !y & HI;
    let quote = has_zero(x ^ (LO * b'"' as u64));
    let backslash = has_zero(x ^ (LO * b'\\' as u64));
    let control = x.wrapping_sub(LO * 0x20) & !x & HI;
    quote | backslash | control | (x & HI)
}

/// `stops` for 16 bytes with SSE2 (part of every x86_64): bit k of the
/// result is set when byte k stops a string run. The signed compare with
/// 0x20 flags both control bytes and bytes above 0x7F.
#[cfg(target_arch = "x86_64")]
#[inline]
fn stops16(b: &[u8]) -> u32 {
    use std::arch::x86_64::*;
    assert!(b.len() >= 16);
    // SAFETY: SSE2 is in the x86_64 baseline; the load reads the 16 bytes
    // checked above and has no alignment requirement.
    unsafe {
        let v = _mm_loadu_si128(b.as_ptr() as *const __m128i);
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), low)) as u32
    }
}

/// The end of the UTF-8 character whose lead byte (>= 0x80) is at `j`, or
/// None when it is not valid UTF-8 (RFC 3629: no overlongs, no surrogates,
/// nothing above U+10FFFF).
#[inline]
fn utf8_char(src: &[u8], j: usize) -> Option<usize> {
    let (len, lo, hi) = match src[j] {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return None,
    };
    let tail = src.get(j + 1..j + len)?;
    if !(lo..=hi).contains(&tail[0]) || tail[1..].iter().any(|&b| !(0x80..=0xBF).contains(&b)) {
        return None;
    }
    Some(j + len)
}

/// The end (just past the closing quote) of the string whose opening quote
/// is at `i`, and whether it has escapes; None if it is not valid.
///
/// Bytes are looked at 16 at a time (SSE2) for the ones that stop a plain
/// run: a quote, a backslash, a control byte, a byte above 0x7F. All the
/// stops of one block are handled from its mask before the next block is
/// loaded (the bytes an escape or a UTF-8 character takes are masked off).
/// The last bytes of the document, and other targets, go 8 at a time.
fn string(src: &[u8], i: usize) -> Option<(usize, bool)> {
    let n = src.len();
    let mut j = i + 1;
    let mut escaped = false;
    #[cfg(target_arch = "x86_64")]
    while j + 16 <= n {
        let base = j;
        let mut m = stops16(&src[base..base + 16]);
        while m != 0 {
            let p = base + m.trailing_zeros() as usize;
            if src[p] == b'"' {
                return Some((p + 1, escaped));
            }
            j = past_stop(src, p, &mut escaped)?;
            if j >= base + 16 {
                break;
            }
            m &= !0u32 << (j - base);
        }
        j = j.max(base + 16);
    }
    loop {
        while j + 8 <= n {
            let m = stops(u64::from_le_bytes(src[j..j + 8].try_into().unwrap()));
            if m != 0 {
                j += (m.trailing_zeros() / 8) as usize; // the first stop byte
                break;
            }
            j += 8;
        }
        let b = *src.get(j)?;
        if b == b'"' {
            return Some((j + 1, escaped));
        }
        j = past_stop(src, j, &mut escaped)?;
    }
}

/// Past the byte at `p` inside a string (not its closing quote): an escape,
/// a UTF-8 character, or a plain byte; None when it is not valid there.
#[inline]
fn past_stop(src: &[u8], p: usize, escaped: &mut bool) -> Option<usize> {
    match src[p] {
        b'\\' => {
            *escaped = true;
            match *src.get(p + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(p + 2),
                b'u' => {
                    let n = hex4(src, p + 2)?;
                    let j = p + 6;
                    if (0xDC00..=0xDFFF).contains(&n) {
                        return None; // a low surrogate alone
                    }
                    if !(0xD800..=0xDBFF).contains(&n) {
                        return Some(j);
                    }
                    // a high surrogate: its low half must follow
                    if src.get(j..j + 2)? != b"\\u"
                        || !(0xDC00..=0xDFFF).contains(&hex4(src, j + 2)?)
                    {
                        return None;
                    }
                    Some(j + 6)
                }
                _ => None,
            }
        }
        0x00..=0x1F => None,
        0x80..=0xFF => utf8_char(src, p),
        _ => Some(p + 1),
    }
}

/// The end of the number starting at `i`, or None.
fn number(src: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if src[j] == b'-' {
        j += 1;
    }
    match src.get(j) {
        Some(b'0') => {
            j += 1;
            if src.get(j).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        Some(b'1'..=b'9') => j = digits(src, j + 1),
        _ => return None,
    }
    if src.get(j) == Some(&b'.') {
        let k = digits(src, j + 1);
        if k == j + 1 {
            return None;
        }
        j = k;
    }
    if matches!(src.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(src.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let k = digits(src, j);
        if k == j {
            return None;
        }
        j = k;
    }
    Some(j)
}

impl Parser {
    /// Validate `src` as one JSON document; its root value, or None when
    /// serde_json would refuse it.
    pub fn parse<'a>(&'a mut self, src: &'a [u8]) -> Option<V<'a>> {
        self.tape(src, true)?;
        Some(V {
            src,
            nodes: &self.nodes,
            at: 0,
        })
    }

    /// Let go of a node buffer grown by an unusually large document (the
    /// buffer is kept between events otherwise).
    pub fn trim(&mut self) {
        if self.nodes.capacity() > 64 * 1024 {
            self.nodes = Vec::new();
        }
    }

    /// Validate the one JSON value `src` starts with (no whitespace before
    /// it); its root and the offset just past it, or None. What follows the
    /// value is not looked at.
    pub fn parse_prefix<'a>(&'a mut self, src: &'a [u8]) -> Option<(V<'a>, usize)> {
        let end = self.tape(src, false)?;
        Some((
            V {
                src,
                nodes: &self.nodes,
                at: 0,
            },
            end,
        ))
    }

    /// Record the tape of the value at the start of `src`; the offset just
    /// past it. `whole`: only whitespace may follow.
    fn tape(&mut self, src: &[u8], whole: bool) -> Option<usize> {
        self.nodes.clear();
        self.stack.clear();
        if src.len() >= u32::MAX as usize {
            return None;
        }
        let n = src.len();
        let nodes = &mut self.nodes;
        let stack = &mut self.stack;
        let mut i = ws(src, 0);
        'value: loop {
            // a value starts at i
            let at = nodes.len();
            let b = *src.get(i)?;
            match b {
                b'{' | b'[' => {
                    if stack.len() >= MAX_DEPTH {
                        return None;
                    }
                    nodes.push(Node::new(i, 0, 0, 0));
                    stack.push(at);
                    i = ws(src, i + 1);
                    let close = if b == b'{' { b'}' } else { b']' };
                    if src.get(i) != Some(&close) {
                        if b == b'{' {
                            i = key(src, i, nodes)?;
                        }
                        continue 'value;
                    }
                    // empty: closed below
                }
                b'"' => {
                    let (end, escaped) = string(src, i)?;
                    let flags = if escaped { ESCAPED } else { 0 };
                    nodes.push(Node::new(i, end, at + 1, flags));
                    i = end;
                }
                b'-' | b'0'..=b'9' => {
                    let end = number(src, i)?;
                    nodes.push(Node::new(i, end, at + 1, 0));
                    i = end;
                }
                _ => {
                    let word: &[u8] = match b {
                        b't' => b"true",
                        b'f' => b"false",
                        b'n' => b"null",
                        _ => return None,
                    };
                    if !src[i..].starts_with(word) {
                        return None;
                    }
                    nodes.push(Node::new(i, i + word.len(), at + 1, 0));
                    i += word.len();
                }
            }
            // after a value: a separator or the close of containers
            loop {
                let Some(&top) = stack.last() else {
                    if !whole {
                        return Some(i);
                    }
                    return (ws(src, i) == n).then_some(n);
                };
                i = ws(src, i);
                let in_object = src[nodes[top].start()] == b'{';
                match *src.get(i)? {
                    b',' => {
                        i = ws(src, i + 1);
                        if in_object {
                            i = key(src, i, nodes)?;
                        }
                        continue 'value;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                i += 1;
                nodes[top].end = i as u32;
                nodes[top].next = nodes.len() as u32;
                stack.pop();
            }
        }
    }
}

/// A key at `i`, its colon and the whitespace after it; the start of the
/// member's value.
fn key(src: &[u8], i: usize, nodes: &mut Vec<Node>) -> Option<usize> {
    if src.get(i) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string(src, i)?;
    let at = nodes.len();
    let flags = if escaped { ESCAPED } else { 0 };
    nodes.push(Node::new(i, end, at + 1, flags));
    let j = ws(src, end);
    if src.get(j) != Some(&b':') {
        return None;
    }
    Some(ws(src, j + 1))
}

/// A value of a validated document.
#[derive(Clone, Copy)]
pub struct V<'a> {
    src: &'a [u8],
    nodes: &'a [Node],
    at: usize,
}

impl<'a> V<'a> {
    fn node(&self) -> Node {
        self.nodes[self.at]
    }

    fn first(&self) -> u8 {
        self.src[self.node().start()]
    }

    /// The value's bytes as written.
    pub fn raw(&self) -> &'a [u8] {
        let n = self.node();
        &self.src[n.start()..n.end()]
    }

    pub fn is_object(&self) -> bool {
        self.first() == b'{'
    }

    pub fn is_null(&self) -> bool {
        self.first() == b'n'
    }

    fn at(&self, at: usize) -> V<'a> {
        V { at, ..*self }
    }

    /// The (key, value) members of an object, in order (none otherwise).
    pub fn members(&self) -> impl Iterator<Item = (V<'a>, V<'a>)> + 'a {
        let this = *self;
        let end = if self.is_object() {
            self.node().next()
        } else {
            self.at + 1
        };
        let mut k = self.at + 1;
        std::iter::from_fn(move || {
            if k >= end {
                return None;
            }
            let (key, value) = (this.at(k), this.at(k + 1));
            k = value.node().next();
            Some((key, value))
        })
    }

    /// The items of an array (none otherwise).
    pub fn items(&self) -> impl Iterator<Item = V<'a>> + 'a {
        let this = *self;
        let end = if self.first() == b'[' {
            self.node().next()
        } else {
            self.at + 1
        };
        let mut k = self.at + 1;
        std::iter::from_fn(move || {
            if k >= end {
                return None;
            }
            let item = this.at(k);
            k = item.node().next();
            Some(item)
        })
    }

    /// The value of the last member named `key` of an object.
    pub fn get(&self, key: &str) -> Option<V<'a>> {
        let [found] = self.pick([key]);
        found
    }

    /// An object member that is itself an object.
    pub fn obj(&self, key: &str) -> Option<V<'a>> {
        self.get(key).filter(V::is_object)
    }

    /// A string value, decoded.
    pub fn str(&self) -> Option<Cow<'a, str>> {
        if self.first() != b'"' {
            return None;
        }
        let raw = self.raw();
        if self.node().flags & ESCAPED == 0 {
            // SAFETY: `Parser::parse` checked that the string's bytes are
            // UTF-8, and without escapes they are its text.
            let text = unsafe { std::str::from_utf8_unchecked(&raw[1..raw.len() - 1]) };
            return Some(Cow::Borrowed(text));
        }
        serde_json::from_slice::<String>(raw).ok().map(Cow::Owned)
    }

    /// Whether this is the string `s`.
    pub fn is_str(&self, s: &str) -> bool {
        if self.first() != b'"' {
            return false;
        }
        let raw = self.raw();
        if self.node().flags & ESCAPED == 0 {
            return &raw[1..raw.len() - 1] == s.as_bytes();
        }
        self.str().as_deref() == Some(s)
    }

    /// The values of several members, looked up in one pass (the last
    /// member of each name wins, as in `get`).
    pub fn pick<const N: usize>(&self, keys: [&str; N]) -> [Option<V<'a>>; N] {
        let mut out = [None; N];
        for (k, v) in self.members() {
            let n = k.node();
            if n.flags & ESCAPED == 0 {
                // the common case: compare the key's bytes as written
                let text = &self.src[n.start() + 1..n.end() - 1];
                for (slot, key) in keys.iter().enumerate() {
                    if text.len() == key.len() && text == key.as_bytes() {
                        out[slot] = Some(v);
                    }
                }
            } else if let Some(text) = k.str() {
                for (slot, key) in keys.iter().enumerate() {
                    if *text == **key {
                        out[slot] = Some(v);
                    }
                }
            }
        }
        out
    }

    /// A member's string value.
    pub fn get_str(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(|v| v.str())
    }

    /// A count: a JSON integer in 0..=u64::MAX (as `Value::as_u64`).
    pub fn u64(&self) -> Option<u64> {
        let mut n: u64 = 0;
        for &b in self.raw() {
            if !b.is_ascii_digit() {
                return None; // a sign, a fraction, an exponent, not a number
            }
            n = n.checked_mul(10)?.checked_add((b - b'0') as u64)?;
        }
        Some(n)
    }

    /// A member's count.
    pub fn count(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.u64())
    }

    /// A member's count, 0 when absent.
    pub fn count0(&self, key: &str) -> u64 {
        self.count(key).unwrap_or(0)
    }

    pub fn is_number(&self) -> bool {
        matches!(self.first(), b'-' | b'0'..=b'9')
    }

    /// Compact JSON text, as serde_json writes the parsed value.
    pub fn compact(&self) -> String {
        serde_json::from_slice::<Value>(self.raw())
            .map(|v| v.to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_ok(s: &[u8]) -> bool {
        serde_json::from_slice::<Value>(s).is_ok()
    }

    fn ours_ok(s: &[u8]) -> bool {
        Parser::default().parse(s).is_some()
    }

    const SEEDS: &[&str] = &[
        r#"{"a":[1,-0,2.5e-3,1E400,{"b":null}],"c":"x\u00e9\ud83d\ude00\n\/","d":true,"e":false}"#,
        r#"  [ "é", {}, [], 0, -1.0e+5 ] "#,
        r#"{"type":"message_stop"       }"#,
        r#""just a string""#,
        "123",
        r#"{"k":"\u0041\\\"","k":2}"#,
    ];

    const BYTES: &[u8] = b" \t\r\n{}[]\",:\\/-+.0123456789eEtrufalsn\xc3\xa9\xff\x00\x01\x7fubx";

    #[test]
    fn accepts_exactly_what_serde_json_accepts() {
        // seeded mutations of a few documents: flips, inserts, deletions, cuts
        let mut state: u64 = 0x9E3779B97F4A7C15;
        let mut rnd = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for seed in SEEDS {
            assert!(ours_ok(seed.as_bytes()), "{seed}");
            for _ in 0..20_000 {
                let mut doc = seed.as_bytes().to_vec();
                for _ in 0..1 + rnd(3) {
                    let k = rnd(doc.len() + 1);
                    match rnd(4) {
                        0 if k < doc.len() => doc[k] = BYTES[rnd(BYTES.len())],
                        1 => doc.insert(k, BYTES[rnd(BYTES.len())]),
                        2 if k < doc.len() => {
                            doc.remove(k);
                        }
                        3 => doc.truncate(k),
                        _ => {}
                    }
                }
                assert_eq!(
                    ours_ok(&doc),
                    serde_ok(&doc),
                    "{:?}",
                    String::from_utf8_lossy(&doc)
                );
            }
        }
    }

    #[test]
    fn edges() {
        for doc in [
            "",
            " ",
            "{\"x\":\"\\ud800\"}",
            "{\"x\":\"\\udc00\\ud800\"}",
            "{\"x\":\"\\ud800\\u0041\"}",
            "{\"x\":\"\\ud800\\n\"}",
            "{\"x\":\"\\uD83D\\uDE00\"}",
            "{\"x\":01}",
            "{\"x\":1.}",
            "{\"x\":.5}",
            "{\"x\":1e}",
            "{\"x\":-}",
            "{\"x\":tru}",
            "{\"x\":1,}",
            "[1,]",
            "{1:2}",
            "{\"a\" 1}",
            "\u{feff}{}",
            "{}\u{0}",
            "{} {}",
            "nul",
        ] {
            assert_eq!(ours_ok(doc.as_bytes()), serde_ok(doc.as_bytes()), "{doc:?}");
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(ours_ok(deep(127).as_bytes()) && serde_ok(deep(127).as_bytes()));
        assert!(!ours_ok(deep(128).as_bytes()) && !serde_ok(deep(128).as_bytes()));
    }

    #[test]
    fn navigation() {
        let src = br#"{"a":{"n":5,"s":"x\"y","big":18446744073709551616,"neg":-1,"f":1.0},"list":[1,{"k":[]},"z"],"a":{"n":7},"u\u0073age":3}"#;
        let mut p = Parser::default();
        let root = p.parse(src).unwrap();
        assert_eq!(root.get("a").unwrap().count("n"), Some(7)); // the last "a" wins
        assert_eq!(root.count("usage"), Some(3)); // escaped key
        let first = root.members().next().unwrap().1;
        assert_eq!(first.get_str("s").as_deref(), Some("x\"y"));
        assert_eq!(
            (first.count("big"), first.count("neg"), first.count("f")),
            (None, None, None)
        );
        let items: Vec<_> = root
            .get("list")
            .unwrap()
            .items()
            .map(|v| v.compact())
            .collect();
        assert_eq!(items, vec!["1", "{\"k\":[]}", "\"z\""]);
        assert_eq!(root.get("missing").map(|v| v.raw()), None);
    }
}
