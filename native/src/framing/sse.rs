//! text/event-stream framing.
//!
//! Theory of operation
//! -------------------
//! Lines are split on bytes: CR, LF or CRLF (wire-formats.md §8 rule 2). A CR
//! that ends one chunk and an LF that starts the next are one line ending, so
//! `skip_lf` is carried between chunks. Fields follow the WHATWG "interpreting
//! an event stream" rules: the name is what precedes the first colon, a single
//! space after the colon is dropped, `data` lines of one event are joined with
//! LF, `event` sets the event's name, lines starting with a colon are
//! comments, a blank line dispatches, an event left without its blank line at
//! the end of the stream never is. A byte order mark at the very start of the
//! stream is dropped.
//!
//! An event is dispatched when it has data: it counts in `events` and goes to
//! the extractor as (name, data). Buffering is bounded: an event whose
//! non-blank lines add up to more than `MAX_EVENT_BYTES` is dropped and
//! counted as an event and a bad event (a single line that long is not kept
//! either, only its length is counted).
//!
//! `aperture/_pure/framing/sse.py` is the twin of this module.

use memchr::{memchr, memchr2};

use super::MAX_EVENT_BYTES;
use crate::extract::{Extract, Tally};

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Buffers up to this capacity are kept for the next event or line.
const KEEP: usize = 64 * 1024;

pub struct Sse {
    line: Vec<u8>,   // the unterminated line carried between chunks
    line_len: usize, // its length, also once dropped for being too long
    line_over: bool,
    skip_lf: bool,
    first_line: bool,
    data: Vec<u8>,
    has_data: bool,
    name: Vec<u8>,
    event_bytes: usize,
    oversized: bool,
}

impl Default for Sse {
    fn default() -> Self {
        Sse {
            line: Vec::new(),
            line_len: 0,
            line_over: false,
            skip_lf: false,
            first_line: true,
            data: Vec::new(),
            has_data: false,
            name: Vec::new(),
            event_bytes: 0,
            oversized: false,
        }
    }
}

impl Sse {
    pub fn feed<E: Extract>(&mut self, chunk: &[u8], d: &mut E, t: &mut Tally) {
        let n = chunk.len();
        let mut i = 0;
        if self.skip_lf && n > 0 {
            // an empty chunk says nothing about the byte after a CR
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                i = 1;
            }
        }
        while i < n {
            let Some(k) = memchr2(b'\r', b'\n', &chunk[i..]) else {
                self.carry(&chunk[i..]);
                return;
            };
            let j = i + k;
            if self.line_len > 0 {
                self.carry(&chunk[i..j]);
                let mut line = std::mem::take(&mut self.line);
                let (length, over) = (self.line_len, self.line_over);
                self.line_len = 0;
                self.line_over = false;
                self.on_line(&line, length, over, d, t);
                if line.capacity() <= KEEP {
                    line.clear();
                    self.line = line; // keep the small allocation
                }
            } else {
                self.on_line(&chunk[i..j], j - i, false, d, t);
            }
            if chunk[j] == b'\r' {
                if j + 1 < n {
                    i = if chunk[j + 1] == b'\n' { j + 2 } else { j + 1 };
                } else {
                    self.skip_lf = true;
                    i = j + 1;
                }
            } else {
                i = j + 1;
            }
        }
    }

    /// Keep `part`, the start of a line, for the next chunk (bounded).
    fn carry(&mut self, part: &[u8]) {
        self.line_len += part.len();
        if self.line_over {
            return;
        }
        if self.line_len > MAX_EVENT_BYTES {
            self.line_over = true;
            self.line = Vec::new();
            return;
        }
        self.line.extend_from_slice(part);
    }

    fn on_line<E: Extract>(
        &mut self,
        line: &[u8],
        length: usize,
        over: bool,
        d: &mut E,
        t: &mut Tally,
    ) {
        let mut line = line;
        let mut length = length;
        if self.first_line {
            self.first_line = false;
            if line.starts_with(BOM) {
                line = &line[3..];
                length -= 3;
            }
        }
        if length == 0 {
            self.dispatch(d, t);
            return;
        }
        self.event_bytes += length;
        if over || self.event_bytes > MAX_EVENT_BYTES {
            self.oversized = true;
            self.data = Vec::new();
            self.name = Vec::new();
        }
        if self.oversized || line[0] == b':' {
            return; // ':' starts a comment
        }
        let (field, value) = match memchr(b':', line) {
            None => (line, &line[line.len()..]),
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
        };
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
            }
            _ => {}
        }
    }

    fn dispatch<E: Extract>(&mut self, d: &mut E, t: &mut Tally) {
        if self.oversized {
            t.events += 1;
            t.bad_events += 1;
        } else if self.has_data {
            t.events += 1;
            let mut payload = std::mem::take(&mut self.data);
            payload.pop(); // the LF after the last data line
            d.event(&self.name, &payload, t);
            if payload.capacity() <= KEEP {
                payload.clear();
                self.data = payload; // keep the small allocation
            }
        }
        self.data.clear();
        self.name.clear();
        self.has_data = false;
        self.event_bytes = 0;
        self.oversized = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Recorder;


    fn read(stream: &[u8], step: usize) -> (Vec<(String, String)>, Tally) {
        let (mut f, mut d, mut t) = (Sse::default(), Recorder::default(), Tally::default());
        for chunk in stream.chunks(step.max(1)) {
            f.feed(chunk, &mut d, &mut t);
        }
        (d.events, t)
    }

    #[test]
    fn fields_names_and_line_endings() {
        let stream = "\u{feff}: hi\nevent: one\ndata: a\ndata\ndata:  b\nid: 1\ndata :x\n\nevent: lost\n\ndata: c\n\ndata: unterminated\n";
        for ending in ["\n", "\r\n", "\r"] {
            let s = stream.replace('\n', ending);
            for step in [1, 2, 3, 7, s.len()] {
                let (events, t) = read(s.as_bytes(), step);
                assert_eq!(
                    events,
                    vec![("one".into(), "a\n\n b".into()), ("".into(), "c".into())],
                    "{ending:?} {step}"
                );
                assert_eq!((t.events, t.bad_events), (2, 0));
            }
        }
    }

    #[test]
    fn cr_at_chunk_end_then_lf_is_one_line_ending() {
        let (mut f, mut d, mut t) = (Sse::default(), Recorder::default(), Tally::default());
        f.feed(b"data: x\r", &mut d, &mut t);
        f.feed(b"", &mut d, &mut t);
        f.feed(b"\n", &mut d, &mut t);
        assert_eq!(t.events, 0);
        f.feed(b"\r\n", &mut d, &mut t);
        assert_eq!(t.events, 1);
    }

    #[test]
    fn oversized_events_are_counted_and_dropped() {
        let (mut f, mut d, mut t) = (Sse::default(), Recorder::default(), Tally::default());
        f.feed(b"data: ", &mut d, &mut t);
        f.feed(&vec![b'x'; MAX_EVENT_BYTES], &mut d, &mut t);
        f.feed(b"\n\ndata: ok\n\n", &mut d, &mut t);
        assert_eq!((t.events, t.bad_events), (2, 1));
        assert_eq!(d.events, vec![("".into(), "ok".into())]);
        // just under the bound is read
        let mut line = b"data: ".to_vec();
        line.extend(vec![b'y'; MAX_EVENT_BYTES - 6]);
        line.extend(b"\n\n");
        let (events, t) = read(&line, 1 << 20);
        assert_eq!((events.len(), t.bad_events), (1, 0));
    }
}
