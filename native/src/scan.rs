//! Streaming finder of the top-level `"model"` key of a JSON request body.
//!
//! Theory of operation
//! -------------------
//! A resumable RFC 8259 state machine: the whole state lives in the struct, so
//! a body may be fed in chunks split anywhere (even one byte at a time) and
//! the outcome does not depend on the split. `State` names what the scanner
//! waits for next; a stack of `{` / `[` bytes remembers the open containers
//! (at most `MAX_DEPTH`).
//!
//! Strings come in three modes. Most are *skipped*: their content is passed
//! over in bulk (`find_special`, 32 bytes per step with SSE2) and only the
//! grammar is checked (no raw byte below 0x20, valid escapes); their non-ASCII
//! bytes are not UTF-8 validated. Keys of the top-level object are *decoded*
//! (escapes resolved, UTF-8 validated, `\uXXXX` surrogate pairs joined, a lone
//! surrogate is an error) and compared with `model`; the value of that key is
//! decoded the same way and becomes `model`.
//!
//! Scanning goes on after the model is found, so the rest of the document is
//! still validated: a second top-level `"model"` is DUPLICATE, bad JSON later
//! is MALFORMED. A top-level object that closes without the key is MISSING.
//! The first error is sticky. The byte at which an error is detected counts as
//! consumed (`offset` includes it); messages name the offset of that byte.
//!
//! `aperture/_pure.py` is the twin of this module: same states, same offsets,
//! same messages. Change both together.

pub const NEED_DATA: u8 = 0;
pub const FOUND: u8 = 1;
pub const MALFORMED: u8 = 2;
pub const MISSING: u8 = 3;
pub const NOT_STRING: u8 = 4;
pub const DUPLICATE: u8 = 5;

/// Deepest nesting of objects and arrays accepted (the top-level object is 1).
pub const MAX_DEPTH: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Top,        // the top-level value (must be an object)
    KeyOrEnd,   // after '{': a key or '}'
    Key,        // after ',' in an object: a key
    Colon,      // after a key
    Value,      // after ':' or after ',' in an array
    ValueOrEnd, // after '[': a value or ']'
    After,      // after a value: ',' or the close of the container
    Done,       // after the top-level object: whitespace only
    Str,        // string content
    Esc,        // after a backslash
    Hex,        // inside the four hex digits of \uXXXX
    SurrBs,     // after a high surrogate: its low half must follow ('\')
    SurrU,      // ... ('u')
    NMinus,     // after '-'
    NZero,      // after a leading '0'
    NInt,       // integer digits
    NFrac0,     // after '.'
    NFrac,      // fraction digits
    NExp0,      // after 'e' / 'E'
    NExpSign,   // after the exponent sign
    NExp,       // exponent digits
    Lit,        // inside true / false / null
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Skip,
    Key,   // a key of the top-level object: decoded and compared
    Model, // the model value: decoded
}

const MODEL_KEY: &[u8] = b"model";

#[inline(always)]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline]
fn hex_val(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u32),
        b'a'..=b'f' => Some((b - b'a' + 10) as u32),
        b'A'..=b'F' => Some((b - b'A' + 10) as u32),
        _ => None,
    }
}

/// A byte as error messages show it: 'x' when printable ASCII, else 0xNN.
fn render(b: u8) -> String {
    if (0x20..=0x7e).contains(&b) {
        format!("'{}'", b as char)
    } else {
        format!("0x{:02x}", b)
    }
}

// ---------------------------------------------------------------------------
// Bulk search for the bytes that end a run of string content: '"', '\\' and
// the control bytes below 0x20.
// ---------------------------------------------------------------------------

/// Byte-at-a-time reference (and tail) version.
#[inline]
fn find_special_scalar(h: &[u8], mut i: usize) -> usize {
    while i < h.len() {
        let b = h[i];
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    h.len()
}

/// Eight bytes at a time in a u64 (for targets without SSE2). The classic
/// "has zero byte" test flags the first matching byte exactly (later flags may
/// be spurious, so only the lowest one is used).
#[allow(dead_code)]
#[inline]
fn find_special_swar(h: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= h.len() {
        let x = u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        let q = x ^ (LO * b'"' as u64);
        let bs = x ^ (LO * b'\\' as u64);
        let m = (q.wrapping_sub(LO) & !q)
            | (bs.wrapping_sub(LO) & !bs)
            | (x.wrapping_sub(LO * 0x20) & !x);
        let m = m & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    find_special_scalar(h, i)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn find_special(h: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86_64 baseline; every load reads 16 bytes
    // inside `h` (the loop conditions keep `i + 16 <= len` / `i + 32 <= len`).
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let c1f = _mm_set1_epi8(0x1f);
        let special = |v: __m128i| {
            // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
            let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v);
            _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                ctl,
            )
        };
        let p = h.as_ptr();
        while i + 32 <= h.len() {
            let a = special(_mm_loadu_si128(p.add(i) as *const __m128i));
            let b = special(_mm_loadu_si128(p.add(i + 16) as *const __m128i));
            let mask = (_mm_movemask_epi8(a) as u32) | ((_mm_movemask_epi8(b) as u32) << 16);
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 32;
        }
        if i + 16 <= h.len() {
            let mask =
                _mm_movemask_epi8(special(_mm_loadu_si128(p.add(i) as *const __m128i))) as u32;
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    find_special_scalar(h, i)
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn find_special(h: &[u8], i: usize) -> usize {
    find_special_swar(h, i)
}

// ---------------------------------------------------------------------------
// Skipping a string 64 bytes at a time, escapes included
//
// Text in request bodies is dense with escapes (`\n`, `\"` in code), so
// stopping at every backslash costs a mispredicted branch each time. Instead,
// per 64-byte block: masks of quotes, backslashes and control bytes; from the
// backslashes, the mask of *escaped* bytes (the byte after an odd run of
// backslashes, with the run's parity carried between blocks); then the first
// "stop": an unescaped quote, a control byte, or an escaped byte that is not a
// simple escape (`\u`, an invalid escape). Only the stop leaves the loop; a
// `\u` or an invalid escape is then read by the byte-level states.
// ---------------------------------------------------------------------------

/// Where `skip_blocks` stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The closing quote at this position.
    Quote(usize),
    /// An unescaped control byte at this position.
    Control(usize),
    /// This position holds a backslash whose escape needs the byte-level states.
    Escape(usize),
    /// This position holds the byte after a backslash (the previous block's last byte).
    Escaped(usize),
    /// Fewer than 64 bytes are left from this position, which is not escaped.
    Tail(usize),
}

/// Bits of the bytes that follow an escaping backslash, given the backslash
/// bits of a block; `carry` says whether the block's first byte is escaped and
/// is updated for the next block. Branch-free: odd and even backslash runs are
/// told apart by adding the run starts to the runs (the carry of the addition
/// runs through each run), the technique of simdjson's string scanner.
#[inline(always)]
fn escaped_bits(backslash: u64, carry: &mut u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let backslash = backslash & !*carry; // an escaped backslash starts nothing
    let follows = (backslash << 1) | *carry;
    let odd_starts = backslash & !EVEN & !follows;
    let (even_runs, overflow) = odd_starts.overflowing_add(backslash);
    *carry = overflow as u64;
    let invert = even_runs << 1;
    (EVEN ^ invert) & follows
}

/// Byte-at-a-time definition of `escaped_bits` (for tests).
#[cfg(test)]
fn escaped_bits_scalar(block: &[u8], carry: &mut u64) -> u64 {
    let mut out = 0u64;
    let mut escaped = *carry == 1;
    for (k, &b) in block.iter().enumerate() {
        if escaped {
            out |= 1 << k;
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        }
    }
    *carry = escaped as u64;
    out
}

#[inline(always)]
fn is_simple_escape(b: u8) -> bool {
    matches!(b, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
}

#[cfg(target_arch = "x86_64")]
fn skip_blocks(h: &[u8], mut i: usize) -> Stop {
    use std::arch::x86_64::*;

    /// The 64-bit mask of `f` over the four 16-byte lanes at `p`.
    ///
    /// SAFETY: the caller guarantees 64 readable bytes at `p`.
    #[inline(always)]
    unsafe fn mask64(p: *const u8, f: impl Fn(__m128i) -> __m128i) -> u64 {
        let mut m = 0u64;
        for k in 0..4 {
            let v = _mm_loadu_si128(p.add(16 * k) as *const __m128i);
            m |= (_mm_movemask_epi8(f(v)) as u32 as u64) << (16 * k);
        }
        m
    }

    let mut carry = 0u64;
    // SAFETY: SSE2 is part of the x86_64 baseline; every block read is 64
    // bytes inside `h`, since the loop runs while `i + 64 <= h.len()`.
    unsafe {
        let eq = |c: u8| {
            let c = _mm_set1_epi8(c as i8);
            move |v: __m128i| _mm_cmpeq_epi8(v, c)
        };
        let (quote, backslash) = (eq(b'"'), eq(b'\\'));
        let c1f = _mm_set1_epi8(0x1f);
        let control = |v: __m128i| _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v); // v <= 0x1f
        let (e1, e2, e3, e4) = (eq(b'/'), eq(b'b'), eq(b'f'), eq(b'n'));
        let (e5, e6) = (eq(b'r'), eq(b't'));
        let simple = |v: __m128i| {
            let a = _mm_or_si128(
                _mm_or_si128(quote(v), backslash(v)),
                _mm_or_si128(e1(v), e2(v)),
            );
            let b = _mm_or_si128(_mm_or_si128(e3(v), e4(v)), _mm_or_si128(e5(v), e6(v)));
            _mm_or_si128(a, b)
        };
        while i + 64 <= h.len() {
            let p = h.as_ptr().add(i);
            let q = mask64(p, quote);
            let bs = mask64(p, backslash);
            let ctl = mask64(p, control);
            let first_escaped = carry;
            let escaped = escaped_bits(bs, &mut carry);
            let mut stop = (q & !escaped) | ctl;
            if escaped != 0 {
                stop |= escaped & !mask64(p, simple);
            }
            if stop == 0 {
                i += 64;
                continue;
            }
            let k = stop.trailing_zeros() as usize;
            if escaped >> k & 1 == 1 {
                return if k == 0 && first_escaped == 1 {
                    Stop::Escaped(i)
                } else {
                    Stop::Escape(i + k - 1)
                };
            }
            return if q >> k & 1 == 1 {
                Stop::Quote(i + k)
            } else {
                Stop::Control(i + k)
            };
        }
    }
    if carry == 1 {
        Stop::Escaped(i)
    } else {
        Stop::Tail(i)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn skip_blocks(_h: &[u8], i: usize) -> Stop {
    Stop::Tail(i)
}

// ---------------------------------------------------------------------------
// The scanner
// ---------------------------------------------------------------------------

pub struct ModelScanner {
    /// The decoded model value once FOUND.
    pub model: Option<String>,
    /// Offset of the opening quote of the model value, -1 until found.
    pub model_start: i64,
    /// Offset just past the closing quote of the model value, -1 until found.
    pub model_end: i64,
    /// Bytes consumed so far.
    pub offset: u64,
    /// Message for an error status.
    pub error: Option<String>,
    status: u8,
    found: bool,
    state: State,
    stack: Vec<u8>,
    mode: Mode,
    is_key: bool,
    expect_model: bool,
    key: [u8; 6], // first bytes of a decoded top-level key
    key_len: usize,
    str_start: u64, // opening quote of the current top-level key or model value
    value: Vec<u8>, // the decoded model value
    u_need: u8,     // UTF-8 continuation bytes still expected
    u_lo: u8,
    u_hi: u8,
    hex_left: u8,
    hex_val: u32,
    esc_pos: u64, // offset of the backslash of the current escape
    high: Option<u32>,
    high_pos: u64,
    lit: &'static [u8],
    lit_i: usize,
}

impl Default for ModelScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelScanner {
    pub fn new() -> Self {
        ModelScanner {
            model: None,
            model_start: -1,
            model_end: -1,
            offset: 0,
            error: None,
            status: NEED_DATA,
            found: false,
            state: State::Top,
            stack: Vec::new(),
            mode: Mode::Skip,
            is_key: false,
            expect_model: false,
            key: [0; 6],
            key_len: 0,
            str_start: 0,
            value: Vec::new(),
            u_need: 0,
            u_lo: 0x80,
            u_hi: 0xbf,
            hex_left: 0,
            hex_val: 0,
            esc_pos: 0,
            high: None,
            high_pos: 0,
            lit: b"",
            lit_i: 0,
        }
    }

    fn fail(&mut self, status: u8, message: String, consumed: u64) -> u8 {
        self.status = status;
        self.error = Some(message);
        self.offset = consumed;
        status
    }

    /// Append decoded bytes to the key or the model value.
    #[inline]
    fn emit(&mut self, raw: &[u8]) {
        if self.mode == Mode::Model {
            self.value.extend_from_slice(raw);
        } else {
            let room = self.key.len() - self.key_len;
            let take = room.min(raw.len());
            self.key[self.key_len..self.key_len + take].copy_from_slice(&raw[..take]);
            self.key_len += take;
        }
    }

    fn emit_char(&mut self, cp: u32) {
        let c = char::from_u32(cp).expect("surrogates are handled before");
        let mut buf = [0u8; 4];
        let len = c.encode_utf8(&mut buf).len();
        self.emit(&buf[..len]);
    }

    /// Validate `run` (string bytes at absolute offset `base`) as UTF-8,
    /// carrying state across calls. Err(offset of the first bad byte).
    fn utf8(&mut self, run: &[u8], base: u64) -> Result<(), u64> {
        if self.u_need == 0 && run.is_ascii() {
            return Ok(());
        }
        let (mut need, mut lo, mut hi) = (self.u_need, self.u_lo, self.u_hi);
        for (k, &b) in run.iter().enumerate() {
            if need > 0 {
                if lo <= b && b <= hi {
                    need -= 1;
                    lo = 0x80;
                    hi = 0xbf;
                    continue;
                }
                self.u_need = need;
                return Err(base + k as u64);
            }
            match b {
                0x00..=0x7f => {}
                0xc2..=0xdf => need = 1,
                0xe0 => {
                    need = 2;
                    lo = 0xa0;
                }
                0xe1..=0xec | 0xee | 0xef => need = 2,
                0xed => {
                    need = 2;
                    hi = 0x9f;
                }
                0xf0 => {
                    need = 3;
                    lo = 0x90;
                }
                0xf1..=0xf3 => need = 3,
                0xf4 => {
                    need = 3;
                    hi = 0x8f;
                }
                _ => {
                    self.u_need = 0;
                    return Err(base + k as u64);
                }
            }
        }
        self.u_need = need;
        self.u_lo = lo;
        self.u_hi = hi;
        Ok(())
    }

    /// Scan the next chunk; returns NEED_DATA, FOUND or an error status.
    pub fn feed(&mut self, data: &[u8]) -> u8 {
        if self.status != NEED_DATA {
            return self.status;
        }
        let base = self.offset;
        let n = data.len();
        let mut i = 0usize;
        let mut st = self.state;
        let at = |i: usize| base + i as u64;

        macro_rules! fail {
            ($status:expr, $consumed:expr, $($arg:tt)*) => {{
                let consumed = $consumed;
                return self.fail($status, format!($($arg)*), consumed);
            }};
        }
        macro_rules! unexpected {
            ($b:expr, $i:expr) => {
                fail!(
                    MALFORMED,
                    at($i) + 1,
                    "unexpected character {} at byte {}",
                    render($b),
                    at($i)
                )
            };
        }

        while i < n {
            let b = data[i];
            match st {
                // ---- string content (the bulk of any body) ----
                State::Str if self.mode == Mode::Skip => {
                    // Hot loop: whole 64-byte blocks first, then runs of
                    // ordinary bytes and two-byte escapes (\n, \", ...).
                    match skip_blocks(data, i) {
                        Stop::Quote(k) => {
                            st = if self.is_key {
                                State::Colon
                            } else {
                                State::After
                            };
                            i = k + 1;
                            continue;
                        }
                        Stop::Control(k) => fail!(
                            MALFORMED,
                            at(k) + 1,
                            "control character 0x{:02x} in string at byte {}",
                            data[k],
                            at(k)
                        ),
                        Stop::Escaped(k) => {
                            self.esc_pos = at(k - 1);
                            st = State::Esc;
                            i = k;
                            continue;
                        }
                        Stop::Escape(k) | Stop::Tail(k) => i = k,
                    }
                    let mut j = find_special(data, i);
                    while j + 1 < n && data[j] == b'\\' && is_simple_escape(data[j + 1]) {
                        j = find_special(data, j + 2);
                    }
                    if j == n {
                        break; // the string goes on in the next chunk
                    }
                    i = j;
                    let b = data[i];
                    if b == b'"' {
                        st = if self.is_key {
                            State::Colon
                        } else {
                            State::After
                        };
                        i += 1;
                    } else if b == b'\\' {
                        self.esc_pos = at(i);
                        st = State::Esc;
                        i += 1;
                    } else {
                        fail!(
                            MALFORMED,
                            at(i) + 1,
                            "control character 0x{:02x} in string at byte {}",
                            b,
                            at(i)
                        );
                    }
                }
                State::Str => {
                    let j = find_special(data, i);
                    if self.mode != Mode::Skip && j > i {
                        let run = &data[i..j];
                        if let Err(bad) = self.utf8(run, at(i)) {
                            fail!(MALFORMED, bad + 1, "invalid UTF-8 at byte {}", bad);
                        }
                        self.emit(run);
                    }
                    if j == n {
                        break; // the string goes on in the next chunk
                    }
                    i = j;
                    let b = data[i];
                    if self.mode != Mode::Skip && self.u_need > 0 {
                        fail!(MALFORMED, at(i) + 1, "invalid UTF-8 at byte {}", at(i));
                    }
                    if b == b'"' {
                        i += 1;
                        match self.mode {
                            Mode::Skip => {
                                st = if self.is_key {
                                    State::Colon
                                } else {
                                    State::After
                                }
                            }
                            Mode::Key => {
                                st = State::Colon;
                                if &self.key[..self.key_len] == MODEL_KEY {
                                    if self.found {
                                        fail!(
                                            DUPLICATE,
                                            at(i),
                                            "duplicate top-level \"model\" key at byte {}",
                                            self.str_start
                                        );
                                    }
                                    self.expect_model = true;
                                }
                            }
                            Mode::Model => {
                                st = State::After;
                                self.model_start = self.str_start as i64;
                                self.model_end = at(i) as i64;
                                let value = std::mem::take(&mut self.value);
                                self.model =
                                    Some(String::from_utf8(value).expect("validated as UTF-8"));
                                self.found = true;
                            }
                        }
                    } else if b == b'\\' {
                        self.esc_pos = at(i);
                        st = State::Esc;
                        i += 1;
                    } else {
                        fail!(
                            MALFORMED,
                            at(i) + 1,
                            "control character 0x{:02x} in string at byte {}",
                            b,
                            at(i)
                        );
                    }
                }

                State::After => {
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    let top = *self.stack.last().expect("a container is open");
                    if b == b',' {
                        st = if top == b'{' {
                            State::Key
                        } else {
                            State::Value
                        };
                        i += 1;
                    } else if (b == b'}' && top == b'{') || (b == b']' && top == b'[') {
                        self.stack.pop();
                        i += 1;
                        if self.stack.is_empty() {
                            st = State::Done;
                            if !self.found {
                                self.state = st;
                                fail!(
                                    MISSING,
                                    at(i),
                                    "missing top-level \"model\" key (object closed at byte {})",
                                    at(i - 1)
                                );
                            }
                        }
                    } else {
                        unexpected!(b, i);
                    }
                }

                State::Key | State::KeyOrEnd => {
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    if b == b'"' {
                        self.is_key = true;
                        if self.stack.len() == 1 {
                            self.mode = Mode::Key;
                            self.key_len = 0;
                            self.str_start = at(i);
                            self.u_need = 0;
                        } else {
                            self.mode = Mode::Skip;
                        }
                        st = State::Str;
                        i += 1;
                    } else if b == b'}' && st == State::KeyOrEnd {
                        st = State::After; // an empty object: After closes it
                    } else {
                        unexpected!(b, i);
                    }
                }

                State::Colon => {
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    if b != b':' {
                        unexpected!(b, i);
                    }
                    st = State::Value;
                    i += 1;
                }

                State::Value | State::ValueOrEnd => {
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    if self.expect_model {
                        self.expect_model = false;
                        if b == b'"' {
                            self.mode = Mode::Model;
                            self.is_key = false;
                            self.value.clear();
                            self.u_need = 0;
                            self.str_start = at(i);
                            st = State::Str;
                            i += 1;
                            continue;
                        }
                        if matches!(b, b'{' | b'[' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') {
                            fail!(
                                NOT_STRING,
                                at(i) + 1,
                                "\"model\" must be a string, found {} at byte {}",
                                render(b),
                                at(i)
                            );
                        }
                        unexpected!(b, i);
                    }
                    match b {
                        b'"' => {
                            self.mode = Mode::Skip;
                            self.is_key = false;
                            st = State::Str;
                        }
                        b'{' | b'[' => {
                            if self.stack.len() >= MAX_DEPTH {
                                fail!(
                                    MALFORMED,
                                    at(i) + 1,
                                    "nesting deeper than {} at byte {}",
                                    MAX_DEPTH,
                                    at(i)
                                );
                            }
                            self.stack.push(b);
                            st = if b == b'{' {
                                State::KeyOrEnd
                            } else {
                                State::ValueOrEnd
                            };
                        }
                        b'-' => st = State::NMinus,
                        b'0' => st = State::NZero,
                        b'1'..=b'9' => st = State::NInt,
                        b't' | b'f' | b'n' => {
                            self.lit = match b {
                                b't' => b"rue",
                                b'f' => b"alse",
                                _ => b"ull",
                            };
                            self.lit_i = 0;
                            st = State::Lit;
                        }
                        b']' if st == State::ValueOrEnd => {
                            st = State::After; // an empty array: After closes it
                            continue;
                        }
                        _ => unexpected!(b, i),
                    }
                    i += 1;
                }

                State::Esc => {
                    let simple = match b {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        _ => None,
                    };
                    if b == b'u' {
                        self.hex_left = 4;
                        self.hex_val = 0;
                        st = State::Hex;
                    } else if let Some(c) = simple {
                        if self.mode != Mode::Skip {
                            self.emit(&[c]);
                        }
                        st = State::Str;
                    } else {
                        fail!(
                            MALFORMED,
                            at(i) + 1,
                            "invalid escape {} at byte {}",
                            render(b),
                            at(i)
                        );
                    }
                    i += 1;
                }

                State::Hex => {
                    let Some(v) = hex_val(b) else {
                        fail!(
                            MALFORMED,
                            at(i) + 1,
                            "invalid \\u escape digit {} at byte {}",
                            render(b),
                            at(i)
                        );
                    };
                    self.hex_val = self.hex_val * 16 + v;
                    self.hex_left -= 1;
                    i += 1;
                    if self.hex_left > 0 {
                        continue;
                    }
                    st = State::Str;
                    if self.mode == Mode::Skip {
                        continue;
                    }
                    let mut cp = self.hex_val;
                    if let Some(high) = self.high {
                        // this escape must be the low half of a pair
                        if (0xdc00..=0xdfff).contains(&cp) {
                            cp = 0x10000 + ((high - 0xd800) << 10) + (cp - 0xdc00);
                            self.high = None;
                        } else {
                            fail!(
                                MALFORMED,
                                at(i),
                                "lone surrogate in \\u escape at byte {}",
                                self.high_pos
                            );
                        }
                    } else if (0xd800..=0xdbff).contains(&cp) {
                        self.high = Some(cp);
                        self.high_pos = self.esc_pos;
                        st = State::SurrBs;
                        continue;
                    } else if (0xdc00..=0xdfff).contains(&cp) {
                        fail!(
                            MALFORMED,
                            at(i),
                            "lone surrogate in \\u escape at byte {}",
                            self.esc_pos
                        );
                    }
                    self.emit_char(cp);
                }

                State::SurrBs | State::SurrU => {
                    if st == State::SurrBs && b == b'\\' {
                        self.esc_pos = at(i);
                        st = State::SurrU;
                    } else if st == State::SurrU && b == b'u' {
                        self.hex_left = 4;
                        self.hex_val = 0;
                        st = State::Hex;
                    } else {
                        fail!(
                            MALFORMED,
                            at(i) + 1,
                            "lone surrogate in \\u escape at byte {}",
                            self.high_pos
                        );
                    }
                    i += 1;
                }

                State::Lit => {
                    if b != self.lit[self.lit_i] {
                        unexpected!(b, i);
                    }
                    self.lit_i += 1;
                    i += 1;
                    if self.lit_i == self.lit.len() {
                        st = State::After;
                    }
                }

                State::Top => {
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    if b != b'{' {
                        fail!(
                            MALFORMED,
                            at(i) + 1,
                            "body must be a JSON object, found {} at byte {}",
                            render(b),
                            at(i)
                        );
                    }
                    self.stack.push(b);
                    st = State::KeyOrEnd;
                    i += 1;
                }

                State::Done => {
                    if !is_ws(b) {
                        unexpected!(b, i);
                    }
                    i += 1;
                }

                // ---- numbers ----
                State::NInt | State::NFrac | State::NExp => {
                    if b.is_ascii_digit() {
                        i += 1;
                        while i < n && data[i].is_ascii_digit() {
                            i += 1;
                        }
                    } else if b == b'.' && st == State::NInt {
                        st = State::NFrac0;
                        i += 1;
                    } else if (b == b'e' || b == b'E') && st != State::NExp {
                        st = State::NExp0;
                        i += 1;
                    } else {
                        st = State::After; // the number ended; this byte is read again
                    }
                }
                State::NZero => {
                    if b == b'.' {
                        st = State::NFrac0;
                        i += 1;
                    } else if b == b'e' || b == b'E' {
                        st = State::NExp0;
                        i += 1;
                    } else {
                        st = State::After;
                    }
                }
                State::NMinus => {
                    if !b.is_ascii_digit() {
                        unexpected!(b, i);
                    }
                    st = if b == b'0' { State::NZero } else { State::NInt };
                    i += 1;
                }
                State::NFrac0 => {
                    if !b.is_ascii_digit() {
                        unexpected!(b, i);
                    }
                    st = State::NFrac;
                    i += 1;
                }
                State::NExp0 => {
                    if b.is_ascii_digit() {
                        st = State::NExp;
                    } else if b == b'+' || b == b'-' {
                        st = State::NExpSign;
                    } else {
                        unexpected!(b, i);
                    }
                    i += 1;
                }
                State::NExpSign => {
                    if !b.is_ascii_digit() {
                        unexpected!(b, i);
                    }
                    st = State::NExp;
                    i += 1;
                }
            }
        }

        self.state = st;
        self.offset = base + n as u64;
        if self.found {
            FOUND
        } else {
            NEED_DATA
        }
    }

    /// The body has ended: FOUND, or the sticky error, or MALFORMED.
    pub fn finish(&mut self) -> u8 {
        if self.status != NEED_DATA {
            return self.status;
        }
        let end = self.offset;
        match self.state {
            State::Done => FOUND, // Done without the model was already MISSING
            State::Top => self.fail(
                MALFORMED,
                format!("body must be a JSON object, found end of body at byte {end}"),
                end,
            ),
            State::Str | State::Esc | State::Hex | State::SurrBs | State::SurrU => {
                self.fail(MALFORMED, format!("unterminated string at byte {end}"), end)
            }
            _ => self.fail(
                MALFORMED,
                format!("unexpected end of body at byte {end}"),
                end,
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Python binding (registered by lib.rs)
// ---------------------------------------------------------------------------

#[cfg(feature = "python")]
pub mod python {
    use pyo3::prelude::*;
    use std::borrow::Cow;

    /// Chunks at least this long are scanned with the GIL released.
    const DETACH_AT: usize = 64 * 1024;

    #[pyclass(name = "ModelScanner", module = "aperture._native")]
    pub struct PyModelScanner {
        inner: super::ModelScanner,
    }

    #[pymethods]
    impl PyModelScanner {
        #[new]
        fn new() -> Self {
            PyModelScanner {
                inner: super::ModelScanner::new(),
            }
        }

        /// Scan the next chunk (bytes are read in place, bytearray is copied).
        fn feed(&mut self, py: Python<'_>, chunk: Cow<'_, [u8]>) -> u8 {
            if chunk.len() >= DETACH_AT {
                let inner = &mut self.inner;
                let data: &[u8] = &chunk;
                py.detach(move || inner.feed(data))
            } else {
                self.inner.feed(&chunk)
            }
        }

        fn finish(&mut self) -> u8 {
            self.inner.finish()
        }

        #[getter]
        fn model(&self) -> Option<&str> {
            self.inner.model.as_deref()
        }

        #[getter]
        fn model_start(&self) -> i64 {
            self.inner.model_start
        }

        #[getter]
        fn model_end(&self) -> i64 {
            self.inner.model_end
        }

        #[getter]
        fn offset(&self) -> u64 {
            self.inner.offset
        }

        #[getter]
        fn error(&self) -> Option<&str> {
            self.inner.error.as_deref()
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    struct Outcome {
        statuses: Vec<u8>,
        model: Option<String>,
        start: i64,
        end: i64,
        offset: u64,
        error: Option<String>,
    }

    fn run(doc: &[u8], step: usize) -> Outcome {
        let mut s = ModelScanner::new();
        let mut statuses = Vec::new();
        for chunk in doc.chunks(step.max(1)) {
            statuses.push(s.feed(chunk));
        }
        statuses.push(s.finish());
        Outcome {
            statuses,
            model: s.model,
            start: s.model_start,
            end: s.model_end,
            offset: s.offset,
            error: s.error,
        }
    }

    /// Final status, model and error, checked to be the same for every split.
    fn scan(doc: &[u8]) -> (u8, Option<String>, Option<String>) {
        let whole = run(doc, doc.len());
        for step in [1, 2, 3, 7, 16, 33] {
            let o = run(doc, step);
            assert_eq!(o.statuses.last(), whole.statuses.last(), "step {step}");
            assert_eq!(o.model, whole.model);
            assert_eq!(
                (o.start, o.end, o.offset),
                (whole.start, whole.end, whole.offset)
            );
            assert_eq!(o.error, whole.error);
        }
        (*whole.statuses.last().unwrap(), whole.model, whole.error)
    }

    #[test]
    fn finds_the_top_level_model_after_nested_ones() {
        let doc = br#"{"messages":[{"role":"user","content":[{"type":"tool_use","input":{"model":"inner"}}]}],"system":"be \"model\": x","model" : "claude-sonnet-4-5","stream":true}"#;
        let (st, model, err) = scan(doc);
        assert_eq!(
            (st, model.as_deref(), err),
            (FOUND, Some("claude-sonnet-4-5"), None)
        );
        let o = run(doc, 5);
        assert_eq!(
            &doc[o.start as usize..o.end as usize],
            b"\"claude-sonnet-4-5\""
        );
        assert_eq!(o.offset, doc.len() as u64);
        // NEED_DATA until the value closes, FOUND from then on
        let first_found = o.statuses.iter().position(|&s| s == FOUND).unwrap();
        assert!(o.statuses[..first_found].iter().all(|&s| s == NEED_DATA));
        assert!(o.statuses[first_found..].iter().all(|&s| s == FOUND));
    }

    #[test]
    fn decodes_escapes_in_keys_and_value() {
        let doc = br#"{"mod\u0065l":"cl\u00e9\ud83d\ude00\n\/x"}"#;
        assert_eq!(scan(doc).1.as_deref(), Some("cl\u{e9}\u{1f600}\n/x"));
        let doc = "{\"model\":\"h\u{e9}\u{4e2d}\"}".as_bytes();
        assert_eq!(scan(doc).1.as_deref(), Some("h\u{e9}\u{4e2d}"));
    }

    #[test]
    fn errors_and_their_messages() {
        let cases: &[(&[u8], u8, &str)] = &[
            (
                b"",
                MALFORMED,
                "body must be a JSON object, found end of body at byte 0",
            ),
            (
                b"  \n",
                MALFORMED,
                "body must be a JSON object, found end of body at byte 3",
            ),
            (
                b"[1]",
                MALFORMED,
                "body must be a JSON object, found '[' at byte 0",
            ),
            (
                b"{}",
                MISSING,
                "missing top-level \"model\" key (object closed at byte 1)",
            ),
            (
                br#"{"a":{"model":"x"}}"#,
                MISSING,
                "missing top-level \"model\" key (object closed at byte 18)",
            ),
            (
                br#"{"model":1}"#,
                NOT_STRING,
                "\"model\" must be a string, found '1' at byte 9",
            ),
            (
                br#"{"model":null}"#,
                NOT_STRING,
                "\"model\" must be a string, found 'n' at byte 9",
            ),
            (
                br#"{"model":x}"#,
                MALFORMED,
                "unexpected character 'x' at byte 9",
            ),
            (
                br#"{"model":"a","model":"b"}"#,
                DUPLICATE,
                "duplicate top-level \"model\" key at byte 13",
            ),
            (
                br#"{"model":"a","x":tru}"#,
                MALFORMED,
                "unexpected character '}' at byte 20",
            ),
            (
                br#"{"model":"a"} x"#,
                MALFORMED,
                "unexpected character 'x' at byte 14",
            ),
            (
                br#"{"model":"a"}{}"#,
                MALFORMED,
                "unexpected character '{' at byte 13",
            ),
            (
                br#"{"model":"a""#,
                MALFORMED,
                "unexpected end of body at byte 12",
            ),
            (
                br#"{"model":"a"#,
                MALFORMED,
                "unterminated string at byte 11",
            ),
            (
                b"{\"model\":\"a\x01\"}",
                MALFORMED,
                "control character 0x01 in string at byte 11",
            ),
            (
                br#"{"model":"a\q"}"#,
                MALFORMED,
                "invalid escape 'q' at byte 12",
            ),
            (
                br#"{"model":"a\u12g4"}"#,
                MALFORMED,
                "invalid \\u escape digit 'g' at byte 15",
            ),
            (
                br#"{"model":"\ud800"}"#,
                MALFORMED,
                "lone surrogate in \\u escape at byte 10",
            ),
            (
                br#"{"model":"\ud800\n"}"#,
                MALFORMED,
                "lone surrogate in \\u escape at byte 10",
            ),
            (
                br#"{"model":"\ud800\u0041"}"#,
                MALFORMED,
                "lone surrogate in \\u escape at byte 10",
            ),
            (
                br#"{"model":"\udc00"}"#,
                MALFORMED,
                "lone surrogate in \\u escape at byte 10",
            ),
            (
                b"{\"model\":\"\xc3(\"}",
                MALFORMED,
                "invalid UTF-8 at byte 11",
            ),
            (
                b"{\"model\":\"\xed\xa0\x80\"}",
                MALFORMED,
                "invalid UTF-8 at byte 11",
            ),
            (
                b"{\"model\":\"\xc3\"}",
                MALFORMED,
                "invalid UTF-8 at byte 11",
            ),
            (
                b"{\"mo\xffdel\":\"a\"}",
                MALFORMED,
                "invalid UTF-8 at byte 4",
            ),
            (b"{\"a\":\"\xff\",\"model\":\"m\"}", FOUND, ""), // skipped strings: not validated
            (
                br#"{"a":01}"#,
                MALFORMED,
                "unexpected character '1' at byte 6",
            ),
            (
                br#"{"a":1.}"#,
                MALFORMED,
                "unexpected character '}' at byte 7",
            ),
            (
                br#"{"a":-}"#,
                MALFORMED,
                "unexpected character '}' at byte 6",
            ),
            (
                br#"{"a":1e}"#,
                MALFORMED,
                "unexpected character '}' at byte 7",
            ),
            (
                br#"{"a":1,}"#,
                MALFORMED,
                "unexpected character '}' at byte 7",
            ),
            (
                br#"{"a":[1,]}"#,
                MALFORMED,
                "unexpected character ']' at byte 8",
            ),
            (
                br#"{"a" 1}"#,
                MALFORMED,
                "unexpected character '1' at byte 5",
            ),
            (
                b"{\"a\":\x0c1}",
                MALFORMED,
                "unexpected character 0x0c at byte 5",
            ),
            (
                br#"{"a":[}"#,
                MALFORMED,
                "unexpected character '}' at byte 6",
            ),
        ];
        for (doc, status, message) in cases {
            let (st, _, err) = scan(doc);
            assert_eq!(st, *status, "{}", String::from_utf8_lossy(doc));
            if !message.is_empty() {
                assert_eq!(
                    err.as_deref(),
                    Some(*message),
                    "{}",
                    String::from_utf8_lossy(doc)
                );
            }
        }
    }

    #[test]
    fn numbers_and_literals_accepted() {
        let doc = br#"{"a":[0,-0,1.5,-2e10,3E+2,4e-1,0.25e1,true,false,null,{},[],"",{"b":[[]]}],"model":"m"}"#;
        assert_eq!(scan(doc).0, FOUND);
        let doc = b" \t\r\n{ \"model\" \n: \"m\" , \"n\" : [ 1 , 2 ] } \r\n";
        assert_eq!(scan(doc).0, FOUND);
    }

    #[test]
    fn errors_are_sticky_and_found_survives_later_errors() {
        let mut s = ModelScanner::new();
        assert_eq!(s.feed(br#"{"model":"m","#), FOUND);
        assert_eq!(s.feed(b"}"), MALFORMED);
        assert_eq!(s.feed(br#""x":1}"#), MALFORMED);
        assert_eq!(s.finish(), MALFORMED);
        assert_eq!(s.model.as_deref(), Some("m"));
        assert_eq!(s.offset, 14);
    }

    #[test]
    fn depth_limit() {
        let ok = format!(
            "{{\"model\":\"m\",\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(scan(ok.as_bytes()).0, FOUND);
        let deep = format!(
            "{{\"model\":\"m\",\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        let (st, _, err) = scan(deep.as_bytes());
        assert_eq!(st, MALFORMED);
        assert_eq!(
            err.unwrap(),
            format!("nesting deeper than 1024 at byte {}", 17 + MAX_DEPTH - 1)
        );
    }

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn escaped_bits_match_the_byte_level_definition() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let blocks: Vec<u8> = (0..192)
                .map(|_| match xorshift(&mut seed) % 4 {
                    0 | 1 => b'\\',
                    2 => b'n',
                    _ => b'"',
                })
                .collect();
            let (mut c1, mut c2) = (0, 0);
            for block in blocks.chunks(64) {
                let bs = block
                    .iter()
                    .enumerate()
                    .fold(0u64, |m, (k, &b)| m | ((b == b'\\') as u64) << k);
                assert_eq!(
                    escaped_bits(bs, &mut c1),
                    escaped_bits_scalar(block, &mut c2)
                );
                assert_eq!(c1, c2);
            }
        }
    }

    /// What `skip_blocks` must find, byte by byte.
    fn skip_reference(h: &[u8]) -> Stop {
        let limit = h.len() / 64 * 64; // only whole blocks are read
        let mut k = 0;
        while k < limit {
            match h[k] {
                b'"' => return Stop::Quote(k),
                0..=0x1f => return Stop::Control(k),
                b'\\' if k + 1 == limit => return Stop::Escaped(limit),
                b'\\' if is_simple_escape(h[k + 1]) => k += 2,
                // an escape across two blocks is reported from the second one
                b'\\' if (k + 1) % 64 == 0 => return Stop::Escaped(k + 1),
                b'\\' => return Stop::Escape(k),
                _ => k += 1,
            }
        }
        Stop::Tail(limit)
    }

    #[test]
    fn skip_blocks_finds_the_first_stop() {
        let alphabet = b"ab\\\\\\\"nu/t\x01\xc3\xa9q  ";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..50_000 {
            let len = (xorshift(&mut seed) % 300) as usize;
            let dense = xorshift(&mut seed) % 8 + 1;
            let h: Vec<u8> = (0..len)
                .map(|_| {
                    let r = xorshift(&mut seed);
                    if r % 64 < dense {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    } else {
                        b'a'
                    }
                })
                .collect();
            assert_eq!(skip_blocks(&h, 0), skip_reference(&h), "{h:?}");
        }
    }

    #[test]
    fn finders_agree() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200usize {
            for _ in 0..20 {
                let h: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // mostly ordinary bytes, sometimes a special one
                        match seed % 97 {
                            0 => b'"',
                            1 => b'\\',
                            2 => (seed >> 8) as u8 & 0x1f,
                            _ => 0x20 + ((seed >> 8) as u8 % 0xdf),
                        }
                    })
                    .collect();
                for start in [0, 1, 5, 17].into_iter().filter(|&s| s <= len) {
                    let want = find_special_scalar(&h, start);
                    assert_eq!(find_special(&h, start), want);
                    assert_eq!(find_special_swar(&h, start), want);
                }
            }
        }
    }
}
