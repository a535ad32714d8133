//! Framings: how a response body is cut into events.
//!
//! - `sse`: text/event-stream (WHATWG rules, wire-formats.md §8);
//! - `eventstream`: the AWS binary event-stream (§6.4), Bedrock's streams;
//! - `json_array`: a streamed JSON array, one event per element (Gemini
//!   without `alt=sse`, §4.5);
//! - `json`: a whole JSON body, parsed at the end.
//!
//! Each framing counts events (`Tally::events`, `Tally::bad_events` for its
//! own damage) and hands each event to the dialect's extractor. None ever
//! fails on bad input, and what it reads never depends on how the bytes are
//! split into chunks.

pub mod eventstream;
pub mod json_array;
pub mod json_body;
pub mod sse;

use crate::extract::{Extract, Tally};

/// Largest event buffered: an SSE event (the sum of its lines), a JSON array
/// element, a whole JSON body.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Framing names, in the order error messages list them.
pub const NAMES: [&str; 4] = ["sse", "eventstream", "json_array", "json"];

pub enum Framing {
    Sse(sse::Sse),
    EventStream(eventstream::EventStream),
    JsonArray(json_array::JsonArray),
    Json(json_body::JsonBody),
}

impl Framing {
    pub fn from_name(name: &str) -> Option<Framing> {
        Some(match name {
            "sse" => Framing::Sse(Default::default()),
            "eventstream" => Framing::EventStream(Default::default()),
            "json_array" => Framing::JsonArray(Default::default()),
            "json" => Framing::Json(Default::default()),
            _ => return None,
        })
    }

    /// Read the next chunk of the body.
    #[inline]
    pub fn feed<E: Extract>(&mut self, chunk: &[u8], d: &mut E, t: &mut Tally) {
        match self {
            Framing::Sse(f) => f.feed(chunk, d, t),
            Framing::EventStream(f) => f.feed(chunk, d, t),
            Framing::JsonArray(f) => f.feed(chunk, d, t),
            Framing::Json(f) => f.feed(chunk, t),
        }
    }

    /// The body ended.
    pub fn finish<E: Extract>(&mut self, d: &mut E, t: &mut Tally) {
        if let Framing::Json(f) = self {
            f.finish(d, t)
        }
    }

    /// The response is complete: the dialect's terminal event, plus what the
    /// framing itself requires (the closing `]` of an array); a whole body is
    /// complete when it parsed as an object.
    pub fn complete(&self, t: &Tally) -> bool {
        match self {
            Framing::JsonArray(f) => f.closed && t.complete,
            Framing::Json(f) => f.parsed,
            _ => t.complete,
        }
    }
}

/// A dialect for the framings' own tests: it keeps what it is handed.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recorder {
    /// (event name, payload) of each event
    pub events: Vec<(String, String)>,
    /// the raw text of each whole body
    pub bodies: Vec<String>,
}

#[cfg(test)]
impl Recorder {
    /// The payloads of the events, in order.
    pub fn payloads(&self) -> Vec<String> {
        self.events.iter().map(|(_, p)| p.clone()).collect()
    }
}

#[cfg(test)]
impl crate::extract::Extract for Recorder {
    fn event(&mut self, name: &[u8], payload: &[u8], _t: &mut crate::extract::Tally) {
        self.events.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(payload).into_owned(),
        ));
    }
    fn body(&mut self, body: crate::extract::V<'_>, _t: &mut crate::extract::Tally) {
        self.bodies.push(String::from_utf8_lossy(body.raw()).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{Dialect, Tally};

    #[test]
    fn names_and_completeness() {
        for name in NAMES {
            assert!(Framing::from_name(name).is_some());
        }
        assert!(Framing::from_name("websocket").is_none());
        let mut t = Tally {
            complete: true,
            ..Tally::default()
        };
        let mut d = Dialect::from_name("gemini").unwrap();
        // an array also needs its closing bracket; a body, to be an object
        let mut f = Framing::from_name("json_array").unwrap();
        f.feed(b"[{}", &mut d, &mut t);
        assert!(!f.complete(&t));
        f.feed(b"]", &mut d, &mut t);
        assert!(f.complete(&t));
        let mut f = Framing::from_name("json").unwrap();
        assert!(!f.complete(&t));
        f.feed(b"{}", &mut d, &mut t);
        f.finish(&mut d, &mut t);
        assert!(f.complete(&t));
        assert!(Framing::from_name("sse").unwrap().complete(&t));
    }
}
