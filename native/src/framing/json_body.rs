//! A whole JSON body (a non-streamed response).
//!
//! The body is kept up to `MAX_EVENT_BYTES`; a longer one is dropped (nothing
//! is counted from it, and it is one bad event at the end). At the end it is
//! parsed: an object is one event, read by the dialect's whole-body rules, and
//! makes the response complete; anything else is a bad event.

use super::MAX_EVENT_BYTES;
use crate::extract::{Extract, Tally};

#[derive(Default)]
pub struct JsonBody {
    buf: Vec<u8>,
    over: bool,
    /// The body parsed as a JSON object.
    pub parsed: bool,
}

impl JsonBody {
    pub fn feed(&mut self, chunk: &[u8], _t: &mut Tally) {
        if self.over {
            return;
        }
        if self.buf.len() + chunk.len() > MAX_EVENT_BYTES {
            self.over = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(chunk);
    }

    pub fn finish<E: Extract>(&mut self, d: &mut E, t: &mut Tally) {
        let body = std::mem::take(&mut self.buf);
        if self.over {
            t.bad_events += 1;
            return;
        }
        let mut parser = std::mem::take(&mut t.parser);
        match parser.parse(&body) {
            Some(root) if root.is_object() => {
                t.events += 1;
                self.parsed = true;
                d.body(root, t);
            }
            _ => t.bad_events += 1,
        }
        parser.trim();
        t.parser = parser;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Recorder;


    fn read(parts: &[&[u8]]) -> (Vec<String>, Tally, bool) {
        let (mut f, mut d, mut t) = (JsonBody::default(), Recorder::default(), Tally::default());
        for part in parts {
            f.feed(part, &mut t);
        }
        f.finish(&mut d, &mut t);
        (d.bodies, t, f.parsed)
    }

    #[test]
    fn an_object_is_one_event() {
        let (bodies, t, parsed) = read(&[b" {\"a\":", b"[1, 2]} \r\n"]);
        assert_eq!(bodies, vec!["{\"a\":[1, 2]}"]);
        assert_eq!((t.events, t.bad_events, parsed), (1, 0, true));
    }

    #[test]
    fn anything_else_is_a_bad_event() {
        for body in [&b""[..], b"[]", b"1", b"{", b"{} {}", b"{\"a\":\"\xff\"}"] {
            let (bodies, t, parsed) = read(&[body]);
            assert!(bodies.is_empty());
            assert_eq!((t.events, t.bad_events, parsed), (0, 1, false));
        }
    }

    #[test]
    fn an_oversized_body_is_dropped() {
        let big = vec![b' '; MAX_EVENT_BYTES];
        let (bodies, t, _) = read(&[b"{}", &big]);
        assert!(bodies.is_empty());
        assert_eq!((t.events, t.bad_events), (0, 1));
        let (bodies, t, _) = read(&[b"{}", &big[2..]]); // exactly the bound
        assert_eq!((bodies.len(), t.events, t.bad_events), (1, 1, 0));
    }
}
