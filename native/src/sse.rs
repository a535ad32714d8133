//! Usage and tool calls read off a `text/event-stream` response as it passes.
//!
//! Theory of operation
//! -------------------
//! Lines are split on bytes: CR, LF or CRLF (wire-formats.md §8 rule 2). A CR
//! that ends one chunk and an LF that starts the next are one line ending, so
//! `skip_lf` is carried between chunks. Fields follow the WHATWG "interpreting
//! an event stream" rules: the name is what precedes the first colon, a single
//! space after the colon is dropped, `data` lines of one event are joined with
//! LF, lines starting with a colon are comments, a blank line dispatches, an
//! event left without its blank line at the end of the stream never is. A
//! byte order mark at the very start of the stream is dropped.
//!
//! Buffering is bounded: an event whose non-blank lines add up to more than
//! `MAX_EVENT_BYTES` is dropped and counted in `bad_events` (a single line that
//! long is not kept either, only its length is counted).
//!
//! Only events that can matter are parsed as JSON: a cheap substring test
//! picks them (per API format, below). Parsing is serde_json's with
//! `preserve_order` (a tool input re-serializes with its members in the
//! provider's order) and `arbitrary_precision` (numbers keep their text).
//! A token count is a JSON integer in 0..=u64::MAX; anything else is absent.
//!
//! `aperture/_pure.py` is the twin of this module and must agree with it on
//! every stream, however it is split.

use std::collections::HashMap;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use memchr::{memchr, memchr2};
use serde_json::Value;

/// Largest event (sum of its non-blank line lengths) that is buffered.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

const BOM: &[u8] = b"\xef\xbb\xbf";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Api {
    AnthropicMessages,
    OpenaiChat,
}

impl Api {
    pub fn from_name(name: &str) -> Option<Api> {
        match name {
            "anthropic_messages" => Some(Api::AnthropicMessages),
            "openai_chat" => Some(Api::OpenaiChat),
            _ => None,
        }
    }
}

/// Substrings of the Anthropic events that carry usage, tool calls, errors or
/// the end of the stream. Text deltas and pings have none of them.
static ANTHROPIC_MARKERS: LazyLock<[Finder<'static>; 6]> = LazyLock::new(|| {
    [
        Finder::new(b"message_start"),
        Finder::new(b"message_delta"),
        Finder::new(b"message_stop"),
        Finder::new(b"content_block_start"),
        Finder::new(b"input_json_delta"),
        Finder::new(b"\"error\""),
    ]
});
static TOOL_CALLS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"tool_calls\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

/// `"usage"` followed by optional JSON whitespace, ':', whitespace and '{'
/// (OpenAI chunks carry `"usage":null` until the last one).
fn has_usage_object(payload: &[u8]) -> bool {
    let mut from = 0;
    while let Some(k) = USAGE_KEY.find(&payload[from..]) {
        let mut j = from + k + b"\"usage\"".len();
        let skip_ws = |mut j: usize| {
            while j < payload.len() && matches!(payload[j], b' ' | b'\t' | b'\r' | b'\n') {
                j += 1;
            }
            j
        };
        j = skip_ws(j);
        if j < payload.len() && payload[j] == b':' {
            j = skip_ws(j + 1);
            if j < payload.len() && payload[j] == b'{' {
                return true;
            }
        }
        from += k + 1;
    }
    false
}

fn count(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

fn error_text(e: Option<&Value>) -> String {
    match e {
        Some(Value::Object(m)) => format!(
            "{}: {}",
            m.get("type").and_then(Value::as_str).unwrap_or("error"),
            m.get("message").and_then(Value::as_str).unwrap_or("")
        ),
        Some(Value::String(s)) => format!("error: {s}"),
        _ => "error: ".to_string(),
    }
}

struct Call {
    name: String,
    args: String,
    fallback: String, // used when the fragments add up to nothing
}

pub struct SseMeter {
    api: Api,
    /// The provider's terminal event was seen.
    pub complete: bool,
    /// Events dispatched so far.
    pub events: u64,
    /// Events whose JSON could not be read (or that were too large).
    pub bad_events: u64,
    /// Text of an error event.
    pub error: Option<String>,
    line: Vec<u8>,   // the unterminated line carried between chunks
    line_len: usize, // its length, also once dropped for being too long
    line_over: bool,
    skip_lf: bool,
    first_line: bool,
    data: Vec<u8>,
    has_data: bool,
    event_bytes: usize,
    oversized: bool,
    // anthropic: input, output, cache_read, cache_write, reasoning;
    // openai: prompt, completion, cached, cache_write, reasoning.
    u: [u64; 5],
    calls: Vec<Call>,
    by_block: HashMap<Option<u64>, usize>,
    by_choice_tool: HashMap<(u64, u64), usize>,
}

impl SseMeter {
    pub fn new(api: Api) -> Self {
        SseMeter {
            api,
            complete: false,
            events: 0,
            bad_events: 0,
            error: None,
            line: Vec::new(),
            line_len: 0,
            line_over: false,
            skip_lf: false,
            first_line: true,
            data: Vec::new(),
            has_data: false,
            event_bytes: 0,
            oversized: false,
            u: [0; 5],
            calls: Vec::new(),
            by_block: HashMap::new(),
            by_choice_tool: HashMap::new(),
        }
    }

    // -- line splitting ------------------------------------------------------

    /// Read the next chunk of the stream. Never fails on bad input.
    pub fn feed(&mut self, chunk: &[u8]) {
        let n = chunk.len();
        let mut i = 0;
        if self.skip_lf {
            self.skip_lf = false;
            if n > 0 && chunk[0] == b'\n' {
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
                self.on_line(&line, length, over);
                if line.capacity() <= 64 * 1024 {
                    line.clear();
                    self.line = line; // keep the small allocation
                }
            } else {
                self.on_line(&chunk[i..j], j - i, false);
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

    fn on_line(&mut self, line: &[u8], length: usize, over: bool) {
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
            self.dispatch();
            return;
        }
        self.event_bytes += length;
        if over || self.event_bytes > MAX_EVENT_BYTES {
            self.oversized = true;
            self.data = Vec::new();
        }
        if self.oversized || line[0] == b':' {
            return; // ':' starts a comment
        }
        let (name, value) = match memchr(b':', line) {
            None => (line, &line[line.len()..]),
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
        };
        if name == b"data" {
            self.data.extend_from_slice(value);
            self.data.push(b'\n');
            self.has_data = true;
        }
    }

    fn dispatch(&mut self) {
        if self.oversized {
            self.events += 1;
            self.bad_events += 1;
        } else if self.has_data {
            self.events += 1;
            let mut payload = std::mem::take(&mut self.data);
            payload.pop(); // the LF after the last data line
            match self.api {
                Api::AnthropicMessages => self.anthropic_event(&payload),
                Api::OpenaiChat => self.openai_event(&payload),
            }
            if payload.capacity() <= 64 * 1024 {
                payload.clear();
                self.data = payload; // keep the small allocation
            }
        }
        self.data.clear();
        self.has_data = false;
        self.event_bytes = 0;
        self.oversized = false;
    }

    fn parse(&mut self, payload: &[u8]) -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(m)) => Some(m),
            _ => {
                self.bad_events += 1;
                None
            }
        }
    }

    // -- anthropic_messages --------------------------------------------------

    fn anthropic_event(&mut self, payload: &[u8]) {
        if !ANTHROPIC_MARKERS.iter().any(|f| f.find(payload).is_some()) {
            return;
        }
        let Some(ev) = self.parse(payload) else {
            return;
        };
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(msg) = ev.get("message").and_then(Value::as_object) {
                    self.anthropic_usage(msg.get("usage"));
                }
            }
            Some("message_delta") => self.anthropic_usage(ev.get("usage")),
            Some("message_stop") => self.complete = true,
            Some("content_block_start") => {
                let Some(cb) = ev.get("content_block").and_then(Value::as_object) else {
                    return;
                };
                if !matches!(
                    cb.get("type").and_then(Value::as_str),
                    Some("tool_use" | "server_tool_use")
                ) {
                    return;
                }
                let call = Call {
                    name: cb
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    args: String::new(),
                    fallback: cb.get("input").map(|v| v.to_string()).unwrap_or_default(),
                };
                self.calls.push(call);
                self.by_block
                    .insert(count(ev.get("index")), self.calls.len() - 1);
            }
            Some("content_block_delta") => {
                let Some(delta) = ev.get("delta").and_then(Value::as_object) else {
                    return;
                };
                if delta.get("type").and_then(Value::as_str) != Some("input_json_delta") {
                    return;
                }
                let Some(part) = delta.get("partial_json").and_then(Value::as_str) else {
                    return;
                };
                if let Some(&k) = self.by_block.get(&count(ev.get("index"))) {
                    self.calls[k].args.push_str(part);
                }
            }
            Some("error") => self.error = Some(error_text(ev.get("error"))),
            _ => {}
        }
    }

    fn anthropic_usage(&mut self, usage: Option<&Value>) {
        let Some(usage) = usage.and_then(Value::as_object) else {
            return;
        };
        for (slot, key) in [
            (0, "input_tokens"),
            (1, "output_tokens"),
            (2, "cache_read_input_tokens"),
            (3, "cache_creation_input_tokens"),
        ] {
            if let Some(v) = count(usage.get(key)) {
                self.u[slot] = v;
            }
        }
        if let Some(details) = usage
            .get("output_tokens_details")
            .and_then(Value::as_object)
        {
            if let Some(v) = count(details.get("reasoning_tokens")) {
                self.u[4] = v;
            }
        }
    }

    // -- openai_chat -----------------------------------------------------------

    fn openai_event(&mut self, payload: &[u8]) {
        if payload.starts_with(b"[DONE]") {
            self.complete = true;
            return;
        }
        if TOOL_CALLS.find(payload).is_none()
            && ERROR_KEY.find(payload).is_none()
            && !has_usage_object(payload)
        {
            return;
        }
        let Some(ev) = self.parse(payload) else {
            return;
        };
        match ev.get("error") {
            None | Some(Value::Null) => {}
            Some(e) => self.error = Some(error_text(Some(e))),
        }
        if let Some(usage) = ev.get("usage").and_then(Value::as_object) {
            let prompt = usage.get("prompt_tokens_details");
            let completion = usage.get("completion_tokens_details");
            self.u = [
                count(usage.get("prompt_tokens")).unwrap_or(0),
                count(usage.get("completion_tokens")).unwrap_or(0),
                count(prompt.and_then(|d| d.get("cached_tokens"))).unwrap_or(0),
                count(prompt.and_then(|d| d.get("cache_write_tokens"))).unwrap_or(0),
                count(completion.and_then(|d| d.get("reasoning_tokens"))).unwrap_or(0),
            ];
        }
        let Some(choices) = ev.get("choices").and_then(Value::as_array) else {
            return;
        };
        for (cpos, choice) in choices.iter().enumerate() {
            let Some(choice) = choice.as_object() else {
                continue;
            };
            let Some(delta) = choice.get("delta").and_then(Value::as_object) else {
                continue;
            };
            let Some(tool_calls) = delta.get("tool_calls").and_then(Value::as_array) else {
                continue;
            };
            let ci = count(choice.get("index")).unwrap_or(cpos as u64);
            for (tpos, tc) in tool_calls.iter().enumerate() {
                let Some(tc) = tc.as_object() else { continue };
                let ti = count(tc.get("index")).unwrap_or(tpos as u64);
                let function = tc.get("function").and_then(Value::as_object);
                let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
                let args = function
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match self.by_choice_tool.get(&(ci, ti)) {
                    None => {
                        self.calls.push(Call {
                            name: name.unwrap_or("").to_string(),
                            args: args.to_string(),
                            fallback: String::new(),
                        });
                        self.by_choice_tool.insert((ci, ti), self.calls.len() - 1);
                    }
                    Some(&k) => {
                        let call = &mut self.calls[k];
                        call.args.push_str(args);
                        if let Some(name) = name {
                            if !name.is_empty() && call.name.is_empty() {
                                call.name = name.to_string();
                            }
                        }
                    }
                }
            }
        }
    }

    // -- results ---------------------------------------------------------------

    /// (input, output, cache_read, cache_write, reasoning) tokens seen so far.
    pub fn usage(&self) -> (u64, u64, u64, u64, u64) {
        let u = &self.u;
        match self.api {
            Api::AnthropicMessages => (u[0], u[1], u[2], u[3], u[4]),
            Api::OpenaiChat => (
                u[0].saturating_sub(u[2]).saturating_sub(u[3]),
                u[1],
                u[2],
                u[3],
                u[4],
            ),
        }
    }

    /// (name, arguments JSON text) of each tool call seen so far, in order.
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

// ---------------------------------------------------------------------------
// Python binding (registered by lib.rs)
// ---------------------------------------------------------------------------

#[cfg(feature = "python")]
pub mod python {
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use std::borrow::Cow;

    #[pyclass(name = "SseMeter", module = "aperture._native")]
    pub struct PySseMeter {
        inner: super::SseMeter,
    }

    #[pymethods]
    impl PySseMeter {
        #[new]
        fn new(api: &str) -> PyResult<Self> {
            match super::Api::from_name(api) {
                Some(api) => Ok(PySseMeter {
                    inner: super::SseMeter::new(api),
                }),
                None => Err(PyValueError::new_err(format!(
                    "unknown SseMeter api: {api} (expected anthropic_messages or openai_chat)"
                ))),
            }
        }

        /// Read the next chunk (bytes are read in place, bytearray is copied).
        fn feed(&mut self, chunk: Cow<'_, [u8]>) {
            self.inner.feed(&chunk)
        }

        fn usage(&self) -> (u64, u64, u64, u64, u64) {
            self.inner.usage()
        }

        fn tool_calls(&self) -> Vec<(String, String)> {
            self.inner.tool_calls()
        }

        #[getter]
        fn complete(&self) -> bool {
            self.inner.complete
        }

        #[getter]
        fn events(&self) -> u64 {
            self.inner.events
        }

        #[getter]
        fn bad_events(&self) -> u64 {
            self.inner.bad_events
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

    const ANTHROPIC: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":250,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":1200,\"output_tokens\":2}}}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
        "\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n",
        "\n",
        ": keepalive\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking\\u2028 stock.\"}}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"check_stock\",\"input\":{}}}\n",
        "\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n",
        "\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"sku\\\": \\\"X-9\"}}\n",
        "\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1\\\"}\"}}\n",
        "\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srv_1\",\"name\":\"web_search\",\"input\":{\"q\":\"x\",  \"n\": 1.5E3, \"a\":[true,null]}}}\n",
        "\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":61,\"cache_creation_input_tokens\":null,\"output_tokens_details\":{\"reasoning_tokens\":12}}}\n",
        "\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"       }\n",
        "\n",
    );

    fn meter(api: Api, stream: &[u8], step: usize) -> SseMeter {
        let mut m = SseMeter::new(api);
        for chunk in stream.chunks(step.max(1)) {
            m.feed(chunk);
        }
        m
    }

    fn check_anthropic(m: &SseMeter) {
        assert!(m.complete);
        assert_eq!(m.events, 11);
        assert_eq!(m.bad_events, 0);
        assert_eq!(m.usage(), (250, 61, 1200, 7, 12));
        assert_eq!(
            m.tool_calls(),
            vec![
                ("check_stock".to_string(), "{\"sku\": \"X-91\"}".to_string()),
                (
                    "web_search".to_string(),
                    "{\"q\":\"x\",\"n\":1.5e+3,\"a\":[true,null]}".to_string()
                ),
            ]
        );
    }

    #[test]
    fn anthropic_stream_any_split_any_line_ending() {
        for ending in ["\n", "\r\n", "\r"] {
            let stream = ANTHROPIC.replace('\n', ending);
            for step in [1, 2, 3, 5, 64, stream.len()] {
                check_anthropic(&meter(Api::AnthropicMessages, stream.as_bytes(), step));
            }
        }
    }

    #[test]
    fn cr_at_chunk_end_then_lf_is_one_line_ending() {
        let mut m = SseMeter::new(Api::OpenaiChat);
        m.feed(b"data: [DONE]\r");
        m.feed(b"\n");
        assert!(
            !m.complete,
            "CRLF split across chunks is one line ending, not a blank line"
        );
        m.feed(b"\r\n");
        assert!(m.complete);
        assert_eq!(m.events, 1);
    }

    #[test]
    fn field_parsing_rules() {
        // one space dropped, no space accepted, multi-line data joined with LF,
        // a bare `data` line adds an empty line, `data :` is another field.
        let mut m = SseMeter::new(Api::AnthropicMessages);
        m.feed(b"\xef\xbb\xbfdata:{\"type\":\ndata\ndata:  \"message_stop\"}\ndata :x\n\n");
        assert!(m.complete);
        assert_eq!((m.events, m.bad_events), (1, 0));
        // an unterminated event is never dispatched
        let mut m = SseMeter::new(Api::AnthropicMessages);
        m.feed(b"data: {\"type\":\"message_stop\"}\n");
        assert!(!m.complete);
        assert_eq!(m.events, 0);
    }

    #[test]
    fn bad_and_oversized_events() {
        let mut m = SseMeter::new(Api::AnthropicMessages);
        m.feed(b"data: {\"type\":\"message_stop\"\n\n");
        m.feed(b"data: [\"message_stop\"]\n\n");
        m.feed(b"data: {\"type\":\"text\"}\n\n"); // filtered out: not parsed
        assert_eq!((m.events, m.bad_events), (3, 2));
        let big = vec![b'x'; MAX_EVENT_BYTES];
        m.feed(b"data: ");
        m.feed(&big);
        m.feed(b"\n\n");
        assert_eq!((m.events, m.bad_events), (4, 3));
        m.feed(b"data: {\"type\":\"message_stop\"}\n\n");
        assert!(m.complete);
        assert_eq!((m.events, m.bad_events), (5, 3));
    }

    #[test]
    fn error_event() {
        let m = meter(
            Api::AnthropicMessages,
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            7,
        );
        assert_eq!(m.error.as_deref(), Some("overloaded_error: Overloaded"));
        let m = meter(
            Api::OpenaiChat,
            b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
            3,
        );
        assert_eq!(m.error.as_deref(), Some("server_error: boom"));
    }

    #[test]
    fn openai_stream() {
        let stream = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"check_stock\",\"arguments\":\"\"}}]}}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"function\":{\"name\":\"other\",\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"sku\\\":\\\"X-91\\\"}\"}}]}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\": {\"prompt_tokens\":812,\"completion_tokens\":40,\"prompt_tokens_details\":{\"cached_tokens\":512,\"cache_write_tokens\":100},\"completion_tokens_details\":{\"reasoning_tokens\":9}}}\n\n",
            "data: [DONE]\n\n",
        );
        for step in [1, 4, stream.len()] {
            let m = meter(Api::OpenaiChat, stream.as_bytes(), step);
            assert!(m.complete);
            assert_eq!((m.events, m.bad_events), (6, 0));
            assert_eq!(m.usage(), (200, 40, 512, 100, 9));
            assert_eq!(
                m.tool_calls(),
                vec![
                    ("check_stock".to_string(), "{\"sku\":\"X-91\"}".to_string()),
                    ("other".to_string(), "{}".to_string())
                ]
            );
        }
        // input never goes below zero
        let m = meter(
            Api::OpenaiChat,
            b"data: {\"usage\":{\"prompt_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":9}}}\n\n",
            100,
        );
        assert_eq!(m.usage(), (0, 0, 9, 0, 0));
    }

    #[test]
    fn usage_object_prefilter() {
        assert!(has_usage_object(b"{\"usage\" :\r\n {\"a\":1}}"));
        assert!(has_usage_object(b"{\"usage\":null,\"x\":{\"usage\":{}}}"));
        assert!(!has_usage_object(b"{\"usage\":null}"));
        assert!(!has_usage_object(b"{\"usage\""));
    }
}
