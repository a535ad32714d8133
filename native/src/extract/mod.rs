//! Extractors: what one API dialect's events and bodies say about usage, tool
//! calls, errors and the end of a response.
//!
//! A framing (`crate::framing`) cuts the bytes into events and hands each one
//! to an extractor as `(name, payload)`: the SSE `event:` field or the
//! event-stream `:event-type` (empty when the framing has no names), and the
//! event's bytes. A whole JSON body is parsed by the framing and handed over
//! as an object. Extractors write what they read into a [`Tally`], the
//! meter's readings, which the framings also update (event counts).
//!
//! Rules shared by every dialect:
//! - Only events that can matter are parsed: a cheap substring test (the
//!   dialect's markers) picks them. An event that is parsed and is not a JSON
//!   object counts in `bad_events`; one that is not parsed never does. The
//!   markers are part of the observable behaviour and are mirrored exactly by
//!   `aperture/_pure/extract/`.
//! - JSON is read by serde_json's rules (`json.rs` validates them in one pass
//!   and reads the document without building a tree); a value written back (a
//!   tool input) is serde_json's compact text with `preserve_order` (members
//!   in the provider's order) and `arbitrary_precision` (numbers keep their
//!   text). A token count is a JSON integer in 0..=u64::MAX; anything else is
//!   absent.
//! - `input` is the input NOT served from cache (Anthropic's meaning),
//!   `output` includes reasoning, `reasoning` is the part of output spent on
//!   reasoning. Sums saturate at u64::MAX, differences at 0.

pub mod anthropic;
pub mod converse;
pub mod gemini;
pub mod json;
pub mod openai_chat;
pub mod openai_responses;

use memchr::memmem::Finder;

pub use json::{Parser, V};

/// One tool call: its name and its arguments as they are joined from
/// fragments; `fallback` is used when the fragments add up to nothing.
#[derive(Default, Debug)]
pub struct Call {
    pub name: String,
    pub args: String,
    pub fallback: String,
}

/// The meter's readings, written by the framing (event counts) and by the
/// extractor (everything else).
#[derive(Default, Debug)]
pub struct Tally {
    /// The dialect's terminal event was seen (the framing may add its own
    /// condition, see `Framing::complete`).
    pub complete: bool,
    pub events: u64,
    pub bad_events: u64,
    pub error: Option<String>,
    pub response_id: Option<String>,
    /// input, output, cache_read, cache_write, reasoning
    pub usage: [u64; 5],
    pub calls: Vec<Call>,
    /// Buffers reused by every event's parse.
    pub parser: Parser,
}

impl Tally {
    /// Read an event payload that must be a JSON object with `f`; anything
    /// else is a bad event.
    pub fn read(&mut self, payload: &[u8], f: impl FnOnce(V<'_>, &mut Tally)) {
        let mut parser = std::mem::take(&mut self.parser);
        match parser.parse(payload) {
            Some(root) if root.is_object() => f(root, self),
            _ => self.bad_events += 1,
        }
        parser.trim();
        self.parser = parser;
    }

    /// Start a new tool call; returns its position.
    pub fn call(&mut self, name: &str, args: &str, fallback: String) -> usize {
        self.calls.push(Call {
            name: name.to_string(),
            args: args.to_string(),
            fallback,
        });
        self.calls.len() - 1
    }

    /// (name, arguments) of each call, in order.
    pub fn tool_calls(&self) -> Vec<(String, String)> {
        self.calls
            .iter()
            .map(|c| {
                let args = if c.args.is_empty() {
                    &c.fallback
                } else {
                    &c.args
                };
                (c.name.clone(), args.clone())
            })
            .collect()
    }
}

/// What every dialect implements: the rules for one stream event and for a
/// whole (non-streamed) body.
pub trait Extract {
    /// One stream event. `name` is the SSE `event:` field or the event-stream
    /// `:event-type`, empty when there is none.
    fn event(&mut self, name: &[u8], payload: &[u8], t: &mut Tally);
    /// A whole JSON body, already parsed as an object.
    fn body(&mut self, body: V<'_>, t: &mut Tally);

    /// One stream event whose payload the framing has already validated as
    /// JSON (`root`); the same reading as `event`, without a second parse.
    fn parsed_event(&mut self, name: &[u8], payload: &[u8], _root: V<'_>, t: &mut Tally) {
        self.event(name, payload, t)
    }
}

/// The dialects, as one type the meter holds (static dispatch: one `match`
/// per event, no vtable).
pub enum Dialect {
    Anthropic(anthropic::Anthropic),
    OpenaiChat(openai_chat::OpenaiChat),
    OpenaiResponses(openai_responses::OpenaiResponses),
    Gemini(gemini::Gemini),
    Converse(converse::Converse),
}

/// Dialect names, in the order error messages list them.
pub const NAMES: [&str; 5] = [
    "anthropic",
    "openai_chat",
    "openai_responses",
    "gemini",
    "converse",
];

impl Dialect {
    pub fn from_name(name: &str) -> Option<Dialect> {
        Some(match name {
            "anthropic" => Dialect::Anthropic(Default::default()),
            "openai_chat" => Dialect::OpenaiChat(Default::default()),
            "openai_responses" => Dialect::OpenaiResponses(Default::default()),
            "gemini" => Dialect::Gemini(Default::default()),
            "converse" => Dialect::Converse(Default::default()),
            _ => return None,
        })
    }
}

impl Extract for Dialect {
    #[inline]
    fn event(&mut self, name: &[u8], payload: &[u8], t: &mut Tally) {
        match self {
            Dialect::Anthropic(d) => d.event(name, payload, t),
            Dialect::OpenaiChat(d) => d.event(name, payload, t),
            Dialect::OpenaiResponses(d) => d.event(name, payload, t),
            Dialect::Gemini(d) => d.event(name, payload, t),
            Dialect::Converse(d) => d.event(name, payload, t),
        }
    }

    fn parsed_event(&mut self, name: &[u8], payload: &[u8], root: V<'_>, t: &mut Tally) {
        match self {
            Dialect::Gemini(d) => d.parsed_event(name, payload, root, t),
            _ => self.event(name, payload, t),
        }
    }

    fn body(&mut self, body: V<'_>, t: &mut Tally) {
        match self {
            Dialect::Anthropic(d) => d.body(body, t),
            Dialect::OpenaiChat(d) => d.body(body, t),
            Dialect::OpenaiResponses(d) => d.body(body, t),
            Dialect::Gemini(d) => d.body(body, t),
            Dialect::Converse(d) => d.body(body, t),
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the dialects (mirrored in aperture/_pure/extract/__init__.py)
// ---------------------------------------------------------------------------

/// Substring markers of the events worth parsing: `any` says whether a
/// payload contains at least one of them.
///
/// Needles that contain the anchor byte are found in one pass: every
/// occurrence of the anchor (`memchr`) is checked against the needles it can
/// be part of, at the needle's first anchor. This is the same test as one
/// substring search per needle, without a full scan for each. The other
/// needles get a substring search each.
pub struct Markers {
    anchor: u8,
    /// (needle, offset of its first anchor byte)
    anchored: Vec<(&'static [u8], usize)>,
    others: Vec<Finder<'static>>,
}

impl Markers {
    pub fn new(anchor: u8, needles: &[&'static [u8]]) -> Markers {
        let mut m = Markers {
            anchor,
            anchored: Vec::new(),
            others: Vec::new(),
        };
        for &n in needles {
            match memchr::memchr(anchor, n) {
                Some(k) => m.anchored.push((n, k)),
                None => m.others.push(Finder::new(n)),
            }
        }
        m
    }

    #[inline]
    pub fn any(&self, payload: &[u8]) -> bool {
        if !self.anchored.is_empty() {
            for p in memchr::memchr_iter(self.anchor, payload) {
                for &(needle, k) in &self.anchored {
                    // the first byte and the byte after the anchor first:
                    // most candidates fail there, without a memcmp call
                    if p >= k
                        && payload[p - k] == needle[0]
                        && needle
                            .get(k + 1)
                            .is_none_or(|b| payload.get(p + 1) == Some(b))
                        && payload[p - k..].starts_with(needle)
                    {
                        return true;
                    }
                }
            }
        }
        self.others.iter().any(|f| f.find(payload).is_some())
    }
}

/// "type: message" of an Anthropic / OpenAI error (an object; a string
/// reads "error: <it>"; anything else "error: ").
pub fn error_text(e: Option<V<'_>>) -> String {
    match e {
        Some(e) if e.is_object() => format!(
            "{}: {}",
            e.get_str("type").as_deref().unwrap_or("error"),
            e.get_str("message").as_deref().unwrap_or("")
        ),
        Some(e) => match e.str() {
            Some(s) => format!("error: {s}"),
            None => "error: ".to_string(),
        },
        None => "error: ".to_string(),
    }
}

/// "<first string among `keys`, else 'error'>: <message or ''>".
pub fn keyed_error_text(e: V<'_>, keys: &[&str]) -> String {
    let kind = keys.iter().find_map(|k| e.get_str(k));
    format!(
        "{}: {}",
        kind.as_deref().unwrap_or("error"),
        e.get_str("message").as_deref().unwrap_or("")
    )
}

/// The OpenAI usage arithmetic: input is the total less what was read from
/// and written to the cache, never below 0.
#[inline]
pub fn uncached(total: u64, cached: u64, written: u64) -> u64 {
    total.saturating_sub(cached).saturating_sub(written)
}

/// The key names of an OpenAI usage object: Chat Completions says
/// prompt/completion, the Responses API input/output.
pub struct OpenaiUsageKeys {
    pub input: &'static str,
    pub input_details: &'static str,
    pub output: &'static str,
    pub output_details: &'static str,
}

/// An OpenAI usage object as the five counts: the cached and cache-written
/// parts of the input are reported inside it, so input is the rest.
pub fn openai_usage(usage: V<'_>, keys: &OpenaiUsageKeys) -> [u64; 5] {
    let input = usage.obj(keys.input_details);
    let output = usage.obj(keys.output_details);
    let cached = input.map_or(0, |d| d.count0("cached_tokens"));
    let written = input.map_or(0, |d| d.count0("cache_write_tokens"));
    [
        uncached(usage.count0(keys.input), cached, written),
        usage.count0(keys.output),
        cached,
        written,
        output.map_or(0, |d| d.count0("reasoning_tokens")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_find_what_a_substring_search_finds() {
        let needles: &[&'static [u8]] = &[
            b"message_start",
            b"input_json_delta",
            b"x.",
            b".y",
            b"\"error\"",
            b"_z",
        ];
        // payloads made of needles, their pieces and other bytes
        let pieces: &[&[u8]] = &[
            b"message_start",
            b"message_",
            b"_start",
            b"input_json",
            b"_json_delta",
            b"x",
            b".",
            b"y",
            b"\"error",
            b"error\"",
            b"\"error\"",
            b"_",
            b"z",
            b"e",
            b"ab",
        ];
        let mut state: u64 = 0x2545F4914F6CDD1D;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut found = 0;
        for anchor in [b'_', b'.', b'e', b'#'] {
            let markers = Markers::new(anchor, needles);
            for _ in 0..20_000 {
                let payload: Vec<u8> = (0..next(6))
                    .flat_map(|_| pieces[next(pieces.len())].to_vec())
                    .collect();
                let want = needles
                    .iter()
                    .any(|n| memchr::memmem::find(&payload, n).is_some());
                found += want as usize;
                assert_eq!(
                    markers.any(&payload),
                    want,
                    "{:?}",
                    String::from_utf8_lossy(&payload)
                );
            }
        }
        assert!(found > 10_000 && found < 70_000, "{found}");
    }
}
