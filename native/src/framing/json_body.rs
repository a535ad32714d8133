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
        t.parser = parser;
    }
}
