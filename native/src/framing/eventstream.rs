//! AWS event-stream framing (`application/vnd.amazon.eventstream`), Bedrock's
//! streamed responses (wire-formats.md §6.4).
//!
//! Theory of operation
//! -------------------
//! A message is `total_length u32 | headers_length u32 | prelude_crc u32 |
//! headers | payload | message_crc u32`, integers big-endian, both CRCs the
//! IEEE CRC-32, the prelude CRC over the first 8 bytes and the message CRC
//! over every byte before it. Messages are read in place from the chunk when
//! they are whole in it; otherwise the bytes are carried until the prelude (12
//! bytes) and then the whole message (`total_length`) are in hand, so a split
//! anywhere, even one byte at a time, reads the same.
//!
//! Damage is handled at two levels, as botocore's `EventStreamBuffer` does:
//! - A prelude whose CRC does not match, or whose lengths are impossible
//!   (total < 16, headers longer than total − 16, headers over 128 KiB,
//!   payload over 24 MiB), means the lengths cannot be trusted, so nothing
//!   after it can be framed: one bad event, and the stream is not read any
//!   further.
//! - A whole message whose CRC does not match, or whose header section is
//!   malformed (a header running past the section, an unknown value type,
//!   a name or string value that is not UTF-8), is one bad event; reading
//!   goes on with the next message.
//!
//! Every whole message counts in `events`. Headers of all ten value types are
//! read; only string values (type 7) of the standard headers are used (the
//! last occurrence of a name wins; a non-string value makes it absent).
//! By `:message-type`:
//! - `event` with `:event-type` `chunk` (InvokeModelWithResponseStream): the
//!   payload is a JSON object whose `bytes` string is standard base64 with
//!   padding (canonical, as the `base64` crate's STANDARD engine requires);
//!   the decoded bytes go to the extractor as one unnamed event. Anything else
//!   (not an object, no string `bytes`, bad base64) is a bad event. Other
//!   members of the object (Bedrock's `"p"` filler) are ignored.
//! - `event` of any other type (ConverseStream): the payload goes to the
//!   extractor, named by `:event-type` ("" when absent).
//! - `exception`: the error "<:exception-type>: <message>", the message being
//!   the payload's string `message` (just the type when there is none; the
//!   type is "exception" when the header is absent).
//! - `error`: the error "<:error-code>: <:error-message>" ("error" and ""
//!   when absent).
//!
//! Other message types are counted and ignored.
//!
//! `aperture/_pure/framing/eventstream.py` is the twin of this module.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::extract::{Extract, Parser, Tally, V};

pub const PRELUDE: usize = 12;
/// Prelude and message CRC.
pub const OVERHEAD: usize = 16;
pub const MAX_HEADERS: usize = 128 * 1024;
pub const MAX_PAYLOAD: usize = 24 * 1024 * 1024;

/// Buffers up to this capacity are kept for the next message.
const KEEP: usize = 256 * 1024;

#[derive(Default)]
pub struct EventStream {
    buf: Vec<u8>,
    /// The bytes of the last `chunk` (reused).
    inner: Vec<u8>,
    /// Length of the message being carried; 0 while its prelude is.
    total: usize,
    /// A prelude could not be trusted: nothing more is read.
    broken: bool,
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// The total length of the message whose prelude is `p` (12 bytes), or None
/// when the prelude cannot be trusted.
pub fn prelude(p: &[u8]) -> Option<usize> {
    let (total, headers) = (be32(&p[0..]), be32(&p[4..]));
    if crc32fast::hash(&p[..8]) as usize != be32(&p[8..]) {
        return None;
    }
    if total < OVERHEAD || headers > total - OVERHEAD || headers > MAX_HEADERS {
        return None;
    }
    if total - OVERHEAD - headers > MAX_PAYLOAD {
        return None;
    }
    Some(total)
}

/// The standard headers of one message (string values only).
#[derive(Default, Debug, PartialEq)]
pub struct Headers<'a> {
    pub message_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub exception_type: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
}

/// Header names and values as text: UTF-8 or malformed. Headers are short
/// and ASCII: checked as such first (the general check costs more to start).
#[inline]
fn utf8(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).ok()
}

/// Read a header section; None when it is malformed.
pub fn headers(mut h: &[u8]) -> Option<Headers<'_>> {
    let mut out = Headers::default();
    while let Some((&n, rest)) = h.split_first() {
        let n = n as usize;
        if rest.len() < n + 1 {
            return None;
        }
        let name = utf8(&rest[..n])?;
        let kind = rest[n];
        h = &rest[n + 1..];
        let fixed = match kind {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            6 | 7 => {
                if h.len() < 2 {
                    return None;
                }
                2 + u16::from_be_bytes([h[0], h[1]]) as usize
            }
            _ => return None,
        };
        if h.len() < fixed {
            return None;
        }
        let value = match kind {
            7 => Some(utf8(&h[2..fixed])?),
            _ => None,
        };
        h = &h[fixed..];
        match name {
            ":message-type" => out.message_type = value,
            ":event-type" => out.event_type = value,
            ":exception-type" => out.exception_type = value,
            ":error-code" => out.error_code = value,
            ":error-message" => out.error_message = value,
            _ => {}
        }
    }
    Some(out)
}

/// Decode the bytes a `chunk` payload wraps (`{"bytes": "<base64>", ...}`)
/// into `out`; false when the payload is anything else.
pub fn chunk_bytes(payload: &[u8], parser: &mut Parser, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(root) = parser.parse(payload).filter(V::is_object) else {
        return false;
    };
    let Some(b64) = root.get_str("bytes") else {
        return false;
    };
    STANDARD.decode_vec(b64.as_bytes(), out).is_ok()
}

impl EventStream {
    pub fn feed<E: Extract>(&mut self, chunk: &[u8], d: &mut E, t: &mut Tally) {
        let mut input = chunk;
        while !input.is_empty() && !self.broken {
            if self.buf.is_empty() {
                // Nothing carried: read whole messages in place.
                if input.len() < PRELUDE {
                    self.buf.extend_from_slice(input);
                    return;
                }
                let Some(total) = prelude(&input[..PRELUDE]) else {
                    return self.lose_framing(t);
                };
                if input.len() >= total {
                    message(&input[..total], &mut self.inner, d, t);
                    input = &input[total..];
                    continue;
                }
                self.total = total;
                self.buf.reserve(total);
                self.buf.extend_from_slice(input);
                return;
            }
            if self.total == 0 {
                let take = (PRELUDE - self.buf.len()).min(input.len());
                self.buf.extend_from_slice(&input[..take]);
                input = &input[take..];
                if self.buf.len() < PRELUDE {
                    return;
                }
                let Some(total) = prelude(&self.buf) else {
                    return self.lose_framing(t);
                };
                self.total = total;
                self.buf.reserve(total - PRELUDE);
            }
            let take = (self.total - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.buf.len() == self.total {
                let mut msg = std::mem::take(&mut self.buf);
                message(&msg, &mut self.inner, d, t);
                self.total = 0;
                if msg.capacity() <= KEEP {
                    msg.clear();
                    self.buf = msg;
                }
            }
        }
    }

    fn lose_framing(&mut self, t: &mut Tally) {
        t.bad_events += 1;
        self.broken = true;
        self.buf = Vec::new();
    }
}

/// One whole message (its prelude already checked).
fn message<E: Extract>(msg: &[u8], inner: &mut Vec<u8>, d: &mut E, t: &mut Tally) {
    t.events += 1;
    let end = msg.len() - 4;
    if crc32fast::hash(&msg[..end]) as usize != be32(&msg[end..]) {
        t.bad_events += 1;
        return;
    }
    let split = PRELUDE + be32(&msg[4..]);
    let Some(h) = headers(&msg[PRELUDE..split]) else {
        t.bad_events += 1;
        return;
    };
    let payload = &msg[split..end];
    match h.message_type {
        Some("event") => match h.event_type {
            Some("chunk") => {
                if chunk_bytes(payload, &mut t.parser, inner) {
                    d.event(b"", inner, t);
                } else {
                    t.bad_events += 1;
                }
                if inner.capacity() > KEEP {
                    *inner = Vec::new(); // an unusually large chunk
                }
            }
            name => d.event(name.unwrap_or("").as_bytes(), payload, t),
        },
        Some("exception") => {
            let kind = h.exception_type.unwrap_or("exception");
            let message = t
                .parser
                .parse(payload)
                .filter(V::is_object)
                .and_then(|p| p.get_str("message"))
                .map(|m| format!("{kind}: {m}"));
            t.error = Some(message.unwrap_or_else(|| kind.to_string()));
        }
        Some("error") => {
            t.error = Some(format!(
                "{}: {}",
                h.error_code.unwrap_or("error"),
                h.error_message.unwrap_or("")
            ));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Recorder;


    /// wire-formats.md §6.4, the worked example.
    const EXAMPLE: &str = "000000870000004b87ea2bf30b3a6576656e742d747970650700056368756e6b0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b226279746573223a2265794a306558426c496a6f696257567a6332466e5a56397a64473977496e303d227dba48ab22";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn encode(headers: &[(&str, u8, &[u8])], payload: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        for (name, kind, value) in headers {
            h.push(name.len() as u8);
            h.extend(name.as_bytes());
            h.push(*kind);
            h.extend(*value);
        }
        let total = (16 + h.len() + payload.len()) as u32;
        let mut m = total.to_be_bytes().to_vec();
        m.extend((h.len() as u32).to_be_bytes());
        m.extend(crc32fast::hash(&m).to_be_bytes());
        m.extend(h);
        m.extend(payload);
        m.extend(crc32fast::hash(&m).to_be_bytes());
        m
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    }

    fn read(stream: &[u8], step: usize) -> (Vec<(String, String)>, Tally) {
        let (mut f, mut d, mut t) = (EventStream::default(), Recorder::default(), Tally::default());
        for chunk in stream.chunks(step.max(1)) {
            f.feed(chunk, &mut d, &mut t);
        }
        (d.events, t)
    }

    #[test]
    fn worked_example_any_split() {
        let msg = unhex(EXAMPLE);
        assert_eq!(msg.len(), 135);
        let mut two = msg.clone();
        two.extend(&msg);
        for step in [1, 5, 12, 20, 134, 135, 136, 270] {
            let (events, t) = read(&two, step);
            assert_eq!((t.events, t.bad_events), (2, 0), "step {step}");
            assert_eq!(
                events,
                vec![("".into(), r#"{"type":"message_stop"}"#.into()); 2]
            );
        }
    }

    #[test]
    fn all_header_types_and_other_events() {
        let int64 = 7i64.to_be_bytes();
        let uuid = [9u8; 16];
        let msg = encode(
            &[
                ("t", 0, b""),
                ("f", 1, b""),
                ("b", 2, b"\x01"),
                ("s", 3, b"\x00\x02"),
                ("i", 4, b"\x00\x00\x00\x03"),
                ("l", 5, &int64),
                ("ba", 6, &string("raw")),
                (":event-type", 7, &string("metadata")),
                ("ts", 8, &int64),
                ("u", 9, &uuid),
                (":message-type", 7, &string("event")),
            ],
            b"{}",
        );
        let (events, t) = read(&msg, 3);
        assert_eq!(events, vec![("metadata".into(), "{}".into())]);
        assert_eq!((t.events, t.bad_events), (1, 0));
    }

    #[test]
    fn damaged_messages() {
        let good = unhex(EXAMPLE);
        // message CRC mismatch: one bad event, the next message is read
        let mut bad_crc = good.clone();
        bad_crc[100] ^= 1;
        let mut stream = bad_crc.clone();
        stream.extend(&good);
        let (events, t) = read(&stream, 7);
        assert_eq!((events.len(), t.events, t.bad_events), (1, 2, 1));
        // unknown header type, header past the section, bad UTF-8 name
        for h in [
            vec![("x", 10u8, &b""[..])],
            vec![("x", 7u8, &b"\x00\x09ab"[..])],
            vec![("\u{e9}", 0u8, &b""[..])],
        ] {
            let mut m = encode(&h, b"{}");
            if h[0].0 == "\u{e9}" {
                // turn the name into invalid UTF-8 and fix both CRCs
                m[13] = 0xff;
                let end = m.len() - 4;
                let crc = crc32fast::hash(&m[..end]).to_be_bytes();
                m[end..].copy_from_slice(&crc);
            }
            m.extend(&good);
            let (events, t) = read(&m, 1);
            assert_eq!((events.len(), t.events, t.bad_events), (1, 2, 1));
        }
        // bad base64 / not an object / no bytes
        for payload in [
            &br#"{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0"}"#[..],
            b"[]",
            br#"{"p":"x"}"#,
            br#"{"bytes":"QR=="}"#,
        ] {
            let m = encode(
                &[
                    (":event-type", 7, &string("chunk")),
                    (":message-type", 7, &string("event")),
                ],
                payload,
            );
            let (events, t) = read(&m, 4);
            assert_eq!((events.len(), t.events, t.bad_events), (0, 1, 1));
        }
        // a prelude CRC mismatch stops the reading for good
        let mut broken = good.clone();
        broken[9] ^= 1;
        broken.extend(&good);
        let (events, t) = read(&broken, 2);
        assert_eq!((events.len(), t.events, t.bad_events), (0, 0, 1));
        // impossible lengths (with a matching CRC) too
        for (total, hl) in [(15u32, 0u32), (20, 5), (200_000, 140_000), (30_000_000, 0)] {
            let mut m = total.to_be_bytes().to_vec();
            m.extend(hl.to_be_bytes());
            m.extend(crc32fast::hash(&m).to_be_bytes());
            m.extend(&good);
            let (_, t) = read(&m, 5);
            assert_eq!((t.events, t.bad_events), (0, 1));
        }
    }

    #[test]
    fn exceptions_and_errors() {
        let m = encode(
            &[
                (":exception-type", 7, &string("throttlingException")),
                (":message-type", 7, &string("exception")),
            ],
            br#"{"message":"Too many requests"}"#,
        );
        assert_eq!(
            read(&m, 9).1.error.as_deref(),
            Some("throttlingException: Too many requests")
        );
        let m = encode(
            &[
                (":exception-type", 7, &string("x")),
                (":message-type", 7, &string("exception")),
            ],
            b"oops",
        );
        assert_eq!(read(&m, 9).1.error.as_deref(), Some("x"));
        let m = encode(
            &[
                (":message-type", 7, &string("error")),
                (":error-code", 7, &string("InternalFailure")),
                (":error-message", 7, &string("boom")),
            ],
            b"",
        );
        assert_eq!(
            read(&m, 9).1.error.as_deref(),
            Some("InternalFailure: boom")
        );
    }
}
