//! Anthropic Messages (also Claude on Vertex, and Claude on Bedrock
//! InvokeModel, whose event-stream chunks carry the same events).
//!
//! Stream (wire-formats.md §1.5): usage from `message_start.message.usage`,
//! then each `message_delta.usage` (cumulative: a present integer replaces the
//! earlier value, nothing is added). Each `content_block_start` of type
//! `tool_use` / `server_tool_use` is a call keyed by its `index`; its
//! arguments are its `input_json_delta.partial_json` fragments joined, or,
//! when they add up to nothing, `content_block.input` as compact JSON.
//! `message_stop` completes; on Bedrock it may carry
//! `amazon-bedrock-invocationMetrics` (§6.3), whose present integers replace
//! input, output, cache read and cache write. An `error` event sets the error.
//! The JSON `type` decides; the SSE `event:` line is not read.
//!
//! Body (a `Message`, §1.4): usage from `usage`; each `content[]` block of
//! type tool_use / server_tool_use is a call (`input` as compact JSON, `{}`
//! when absent); a top-level `error` object is the error.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::{error_text, Extract, Markers, Tally, V};

static MARKERS: LazyLock<Markers> = LazyLock::new(|| {
    Markers::new(
        b'_',
        &[
            b"message_start",
            b"message_delta",
            b"message_stop",
            b"content_block_start",
            b"input_json_delta",
            b"\"error\"",
        ],
    )
});

#[derive(Default)]
pub struct Anthropic {
    by_block: HashMap<Option<u64>, usize>,
}

const USAGE_KEYS: [&str; 4] = [
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
];

const BEDROCK_KEYS: [&str; 4] = [
    "inputTokenCount",
    "outputTokenCount",
    "cacheReadInputTokenCount",
    "cacheWriteInputTokenCount",
];

/// Present integers of `usage` replace the readings; nothing is added.
fn read_usage(usage: Option<V<'_>>, t: &mut Tally) {
    let Some(usage) = usage.filter(V::is_object) else {
        return;
    };
    for (slot, key) in USAGE_KEYS.iter().enumerate() {
        if let Some(v) = usage.count(key) {
            t.usage[slot] = v;
        }
    }
    if let Some(details) = usage.obj("output_tokens_details") {
        if let Some(v) = details.count("reasoning_tokens") {
            t.usage[4] = v;
        }
    }
}

fn is_tool_block(block: V<'_>) -> bool {
    block.is_object()
        && block
            .get("type")
            .is_some_and(|k| k.is_str("tool_use") || k.is_str("server_tool_use"))
}

impl Anthropic {
    fn read(&mut self, ev: V<'_>, t: &mut Tally) {
        let Some(kind) = ev.get_str("type") else {
            return;
        };
        match &*kind {
            "message_start" => {
                if let Some(msg) = ev.obj("message") {
                    read_usage(msg.get("usage"), t);
                }
            }
            "message_delta" => read_usage(ev.get("usage"), t),
            "message_stop" => {
                t.complete = true;
                if let Some(m) = ev.obj("amazon-bedrock-invocationMetrics") {
                    for (slot, key) in BEDROCK_KEYS.iter().enumerate() {
                        if let Some(v) = m.count(key) {
                            t.usage[slot] = v;
                        }
                    }
                }
            }
            "content_block_start" => {
                let Some(block) = ev.get("content_block").filter(|b| is_tool_block(*b)) else {
                    return;
                };
                let fallback = block.get("input").map(|v| v.compact()).unwrap_or_default();
                let name = block.get_str("name");
                let k = t.call(name.as_deref().unwrap_or(""), "", fallback);
                self.by_block.insert(ev.count("index"), k);
            }
            "content_block_delta" => {
                let Some(delta) = ev.obj("delta") else { return };
                if !delta
                    .get("type")
                    .is_some_and(|k| k.is_str("input_json_delta"))
                {
                    return;
                }
                let Some(part) = delta.get_str("partial_json") else {
                    return;
                };
                if let Some(&k) = self.by_block.get(&ev.count("index")) {
                    t.calls[k].args.push_str(&part);
                }
            }
            "error" => t.error = Some(error_text(ev.get("error"))),
            _ => {}
        }
    }
}

impl Extract for Anthropic {
    fn event(&mut self, _name: &[u8], payload: &[u8], t: &mut Tally) {
        if MARKERS.any(payload) {
            t.read(payload, |ev, t| self.read(ev, t));
        }
    }

    fn body(&mut self, body: V<'_>, t: &mut Tally) {
        read_usage(body.get("usage"), t);
        for block in body.get("content").into_iter().flat_map(|c| c.items()) {
            if is_tool_block(block) {
                let args = block.get("input").map(|v| v.compact());
                let name = block.get_str("name");
                let args = args.as_deref().unwrap_or("{}");
                t.call(name.as_deref().unwrap_or(""), args, String::new());
            }
        }
        if let Some(e) = body.obj("error") {
            t.error = Some(error_text(Some(e)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(payloads: &[&str]) -> Tally {
        let mut d = Anthropic::default();
        let mut t = Tally::default();
        for p in payloads {
            d.event(b"", p.as_bytes(), &mut t);
        }
        t
    }

    #[test]
    fn stream_usage_tools_and_stop() {
        let t = events(&[
            r#"{"type":"message_start","message":{"usage":{"input_tokens":250,"cache_creation_input_tokens":7,"cache_read_input_tokens":1200,"output_tokens":2}}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","name":"check_stock","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"sku\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" 1}"}}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"server_tool_use","name":"web","input":{"q":"x",  "n": 1.5E3}}}"#,
            r#"{"type":"message_delta","usage":{"output_tokens":61,"cache_creation_input_tokens":null,"output_tokens_details":{"reasoning_tokens":12}}}"#,
            r#"{"type":"message_stop"       }"#,
        ]);
        assert!(t.complete);
        assert_eq!(t.usage, [250, 61, 1200, 7, 12]);
        assert_eq!(
            t.tool_calls(),
            vec![
                ("check_stock".into(), "{\"sku\": 1}".into()),
                ("web".into(), "{\"q\":\"x\",\"n\":1.5e+3}".into())
            ]
        );
    }

    #[test]
    fn bedrock_invocation_metrics_replace_usage() {
        let t = events(&[
            r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":5}}}"#,
            r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":40,"invocationLatency":900,"cacheWriteInputTokenCount":3}}"#,
        ]);
        assert!(t.complete);
        assert_eq!(t.usage, [12, 40, 5, 3, 0]);
    }

    #[test]
    fn unmarked_events_are_not_parsed_and_bad_ones_counted() {
        let t = events(&[
            "{\"type\":\"text\" oops",
            "{\"type\":\"message_stop\"",
            "[\"message_stop\"]",
        ]);
        assert_eq!((t.bad_events, t.complete), (2, false));
    }

    fn body_of(src: &str) -> Tally {
        let mut t = Tally::default();
        let mut p = super::super::Parser::default();
        Anthropic::default().body(p.parse(src.as_bytes()).unwrap(), &mut t);
        t
    }

    #[test]
    fn body() {
        let t = body_of(
            r#"{"type":"message","content":[{"type":"text","text":"hi"},{"type":"tool_use","name":"a","input":{"x":[1,2]}},{"type":"server_tool_use","name":"b"}],
                "usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":5,"cache_creation_input_tokens":6,"output_tokens_details":{"reasoning_tokens":2}}}"#,
        );
        assert_eq!(t.usage, [3, 4, 5, 6, 2]);
        assert_eq!(
            t.tool_calls(),
            vec![
                ("a".into(), "{\"x\":[1,2]}".into()),
                ("b".into(), "{}".into())
            ]
        );
        let t = body_of(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(t.error.as_deref(), Some("overloaded_error: Overloaded"));
    }
}
