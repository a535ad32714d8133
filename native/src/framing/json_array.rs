//! A streamed JSON array, one event per element (Gemini's
//! `:streamGenerateContent` without `alt=sse`, wire-formats.md §4.5).
//!
//! Theory of operation
//! -------------------
//! The separators between elements are not fixed on the wire, so element
//! boundaries are found by a small incremental tokenizer, not by searching for
//! delimiters. It does not parse the elements (the extractor does); it tracks
//! only what decides where an element ends:
//! - outside elements: JSON whitespace (space, tab, LF, CR), the opening `[`,
//!   the `,` between elements, the closing `]`;
//! - inside an element: the depth of `{` / `[` against `}` / `]`, strings and
//!   their backslash escapes (a bracket inside a string does not count).
//!
//! An element starts at its first byte: `{` or `[` opens a container, which
//! ends at the byte that brings the depth back to 0; `"` starts a string,
//! which ends at its closing quote; any other byte starts a bare scalar,
//! which ends before the next whitespace, `,` or `]`. The element's bytes go
//! to the extractor as one unnamed event (read in place when the element is
//! whole in one chunk, carried otherwise).
//!
//! An element over `MAX_EVENT_BYTES` is one bad event: its bytes are not
//! kept, the tokenizer keeps walking it to find its end. Structural damage
//! (a first non-whitespace byte other than `[`, anything but whitespace, `,`
//! or `]` after an element, an element starting with `,` `]` `}` or `:`,
//! anything but whitespace after the closing `]`) is one bad event and the
//! rest of the body is not read. The closing `]` is part of what makes the
//! response complete (`closed`).
//!
//! `aperture/_pure/framing/json_array.py` is the twin of this module.

use memchr::memchr;

use super::MAX_EVENT_BYTES;
use crate::extract::{Extract, Tally};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum State {
    #[default]
    Start, // before the opening '['
    First,  // after '[': an element or ']'
    Next,   // after ',': an element
    Elem,   // inside an element
    After,  // after an element: ',' or ']'
    Closed, // after ']': whitespace only
    Broken, // structural damage: nothing more is read
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` equal to `b` (the lowest one is exact).
#[inline]
fn eq(x: u64, b: u8) -> u64 {
    let y = x ^ (LO * b as u64);
    y.wrapping_sub(LO) & !y & HI
}

/// The first byte from `j` on that `hit` flags, 8 bytes at a time (`mask`
/// is the same test on a little-endian word).
#[inline]
fn find(
    chunk: &[u8],
    mut j: usize,
    mask: impl Fn(u64) -> u64,
    hit: impl Fn(u8) -> bool,
) -> Option<usize> {
    while j + 8 <= chunk.len() {
        let m = mask(u64::from_le_bytes(chunk[j..j + 8].try_into().unwrap()));
        if m != 0 {
            return Some(j + (m.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    chunk[j..].iter().position(|&b| hit(b)).map(|k| j + k)
}

/// The number of backslashes `run` ends with.
fn backslash_run(run: &[u8]) -> usize {
    run.iter().rev().take_while(|&&b| b == b'\\').count()
}

/// A quote or a bracket: what matters inside a container, outside strings.
fn structural(chunk: &[u8], j: usize) -> Option<usize> {
    find(
        chunk,
        j,
        |x| eq(x, b'"') | eq(x, b'{') | eq(x, b'}') | eq(x, b'[') | eq(x, b']'),
        |b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'),
    )
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[derive(Default)]
pub struct JsonArray {
    state: State,
    /// The closing `]` was seen.
    pub closed: bool,
    depth: u64,   // open containers of the element; 0 for a scalar
    scalar: bool, // a bare scalar (number, literal, garbage)
    in_str: bool,
    esc: bool,
    buf: Vec<u8>, // the element's bytes carried from earlier chunks
    len: usize,   // the element's length so far
    last: usize,  // the length of the last element (a guess at the next one's)
    over: bool,   // longer than MAX_EVENT_BYTES: not kept
}

impl JsonArray {
    pub fn feed<E: Extract>(&mut self, chunk: &[u8], d: &mut E, t: &mut Tally) {
        let n = chunk.len();
        let mut i = 0;
        while i < n {
            if self.state == State::Elem {
                let (end, done) = match self.scan(chunk, i) {
                    Some(end) => (end, true),
                    None => (n, false),
                };
                self.take(&chunk[i..end], done, d, t);
                i = end;
                continue;
            }
            while i < n && is_ws(chunk[i]) {
                i += 1;
            }
            if i == n {
                return;
            }
            let b = chunk[i];
            match self.state {
                State::Start if b == b'[' => self.state = State::First,
                State::First if b == b']' => self.close(),
                State::First | State::Next if !matches!(b, b',' | b']' | b'}' | b':') => {
                    // The fast path is tried when the element may end in this
                    // chunk (elements of a stream are alike in size); either
                    // path reads the same.
                    let fits = n - i >= self.last;
                    if (b == b'{' || b == b'[') && fits && self.whole_element(chunk, &mut i, d, t) {
                        continue;
                    }
                    self.depth = (b == b'{' || b == b'[') as u64;
                    self.in_str = b == b'"';
                    self.scalar = self.depth == 0 && !self.in_str;
                    self.esc = false;
                    self.len = 0;
                    self.over = false;
                    self.state = State::Elem;
                    let end = self.scan(chunk, i + 1);
                    self.take(&chunk[i..end.unwrap_or(n)], end.is_some(), d, t);
                    i = end.unwrap_or(n);
                    continue;
                }
                State::After if b == b',' => self.state = State::Next,
                State::After if b == b']' => self.close(),
                State::Broken => return,
                _ => {
                    t.bad_events += 1;
                    self.state = State::Broken;
                    self.buf = Vec::new();
                    return;
                }
            }
            i += 1;
        }
    }

    /// The fast path for an element that starts at `chunk[*i]` and is valid
    /// JSON ending in this chunk: it is validated once, and its tape goes to
    /// the extractor. A valid value ends exactly where the tokenizer would
    /// end it, so the reading is the same as the tokenizer's. False (nothing
    /// done) otherwise.
    fn whole_element<E: Extract>(
        &mut self,
        chunk: &[u8],
        i: &mut usize,
        d: &mut E,
        t: &mut Tally,
    ) -> bool {
        let mut parser = std::mem::take(&mut t.parser);
        let done = match parser.parse_prefix(&chunk[*i..]) {
            Some((root, end)) => {
                t.events += 1;
                self.last = end;
                if end > MAX_EVENT_BYTES {
                    t.bad_events += 1;
                } else {
                    d.parsed_event(b"", &chunk[*i..*i + end], root, t);
                }
                self.state = State::After;
                *i += end;
                true
            }
            None => false,
        };
        parser.trim();
        t.parser = parser;
        done
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.closed = true;
    }

    /// Walk the element from `chunk[i]`; the end offset (exclusive) when it
    /// ends in this chunk.
    fn scan(&mut self, chunk: &[u8], mut j: usize) -> Option<usize> {
        let n = chunk.len();
        loop {
            if self.esc {
                if j >= n {
                    return None;
                }
                self.esc = false;
                j += 1;
            }
            if self.in_str {
                // Find the closing quote (memchr), then count the backslashes
                // right before a candidate: an odd run escapes it. Runs never
                // reach back before `j` (the string's start or an escaped
                // byte), so this is the same as reading escapes one by one.
                let Some(k) = memchr(b'"', &chunk[j..]) else {
                    self.esc = backslash_run(&chunk[j..]) % 2 == 1;
                    return None;
                };
                let p = j + k;
                j = p + 1;
                if backslash_run(&chunk[j - 1 - k..p]) % 2 == 1 {
                    continue; // an escaped quote
                }
                self.in_str = false;
                if self.depth == 0 {
                    return Some(j);
                }
                continue;
            }
            if self.scalar {
                return chunk[j..]
                    .iter()
                    .position(|&b| is_ws(b) || b == b',' || b == b']')
                    .map(|k| j + k);
            }
            let p = structural(chunk, j)?;
            j = p + 1;
            match chunk[p] {
                b'"' => self.in_str = true,
                b'{' | b'[' => self.depth += 1,
                _ => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(j);
                    }
                }
            }
        }
    }

    /// `seg` is the next part of the element; `done` when it is the last.
    fn take<E: Extract>(&mut self, seg: &[u8], done: bool, d: &mut E, t: &mut Tally) {
        self.len += seg.len();
        if done {
            self.last = self.len;
        }
        if !self.over && self.len > MAX_EVENT_BYTES {
            self.over = true;
            self.buf = Vec::new();
        }
        if !done {
            if !self.over {
                self.buf.extend_from_slice(seg);
            }
            return;
        }
        self.state = State::After;
        t.events += 1;
        if self.over {
            t.bad_events += 1;
        } else if self.buf.is_empty() {
            d.event(b"", seg, t);
        } else {
            self.buf.extend_from_slice(seg);
            let mut element = std::mem::take(&mut self.buf);
            d.event(b"", &element, t);
            if element.capacity() <= 64 * 1024 {
                element.clear();
                self.buf = element;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Recorder;


    fn read(body: &[u8], step: usize) -> (Vec<String>, Tally, bool) {
        let (mut f, mut d, mut t) = (JsonArray::default(), Recorder::default(), Tally::default());
        for chunk in body.chunks(step.max(1)) {
            f.feed(chunk, &mut d, &mut t);
        }
        (d.payloads(), t, f.closed)
    }

    #[test]
    fn elements_any_split() {
        let body =
            " \r\n[{\"a\":\"x]}\\\"\\\\\",\"b\":[1,{}]}\n,\r\n{}, 12 ,\"s,]\\\"\" ,[[]],true]\n ";
        for step in 1..body.len() + 1 {
            let (events, t, closed) = read(body.as_bytes(), step);
            assert_eq!(
                events,
                vec![
                    "{\"a\":\"x]}\\\"\\\\\",\"b\":[1,{}]}",
                    "{}",
                    "12",
                    "\"s,]\\\"\"",
                    "[[]]",
                    "true"
                ],
                "step {step}"
            );
            assert_eq!((t.events, t.bad_events, closed), (6, 0, true));
        }
        assert!(read(b"[]", 1).2);
        assert!(!read(b"[{}", 1).2);
    }

    #[test]
    fn damage_stops_the_reading() {
        for (body, events) in [
            (&b"{}"[..], 0),
            (b"[{} {}]", 1),
            (b"[{},]", 1),
            (b"[,{}]", 0),
            (b"[{}] x", 1),
            (b"[{}]]", 1),
        ] {
            let (ev, t, _) = read(body, 1);
            assert_eq!(
                (ev.len(), t.bad_events),
                (events, 1),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn oversized_element_is_skipped() {
        let mut body = b"[\"".to_vec();
        body.extend(vec![b'x'; MAX_EVENT_BYTES]);
        body.extend(b"\",{}]");
        let (events, t, closed) = read(&body, 1 << 20);
        assert_eq!(events, vec!["{}"]);
        assert_eq!((t.events, t.bad_events, closed), (2, 1, true));
    }
}
