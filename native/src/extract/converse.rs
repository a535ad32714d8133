//! Bedrock Converse / ConverseStream (wire-formats.md §6.5).
//!
//! Stream events are named by their event-stream `:event-type`:
//! - `contentBlockStart` with `start.toolUse {toolUseId, name}`: a new call,
//!   keyed by `contentBlockIndex`;
//! - `contentBlockDelta` with a string `delta.toolUse.input`: appended to the
//!   call of that `contentBlockIndex`;
//! - `metadata`: usage (the last one wins as a whole; missing fields are 0):
//!   input = inputTokens, output = outputTokens, cache_read =
//!   cacheReadInputTokens, cache_write = cacheWriteInputTokens, reasoning 0.
//!   It completes the stream.
//!
//! Block events without `"toolUse"` are not parsed; other events are ignored.
//! Exceptions are read by the event-stream framing.
//!
//! Body (a `ConverseResponse`): usage from `usage` (same keys); calls from
//! `output.message.content[].toolUse` (`input` as compact JSON, "" when
//! absent).

use std::collections::HashMap;

use memchr::memmem;

use super::{Extract, Tally, V};

#[derive(Default)]
pub struct Converse {
    by_block: HashMap<Option<u64>, usize>,
}

fn read_usage(u: V<'_>, t: &mut Tally) {
    t.usage = [
        u.count0("inputTokens"),
        u.count0("outputTokens"),
        u.count0("cacheReadInputTokens"),
        u.count0("cacheWriteInputTokens"),
        0,
    ];
}

impl Converse {
    fn block_start(&mut self, ev: V<'_>, t: &mut Tally) {
        let Some(tool) = ev.obj("start").and_then(|s| s.obj("toolUse")) else {
            return;
        };
        let name = tool.get_str("name");
        let k = t.call(name.as_deref().unwrap_or(""), "", String::new());
        self.by_block.insert(ev.count("contentBlockIndex"), k);
    }

    fn block_delta(&mut self, ev: V<'_>, t: &mut Tally) {
        let tool = ev.obj("delta").and_then(|d| d.obj("toolUse"));
        let Some(input) = tool.and_then(|u| u.get_str("input")) else {
            return;
        };
        if let Some(&k) = self.by_block.get(&ev.count("contentBlockIndex")) {
            t.calls[k].args.push_str(&input);
        }
    }
}

impl Extract for Converse {
    fn event(&mut self, name: &[u8], payload: &[u8], t: &mut Tally) {
        match name {
            b"contentBlockStart" | b"contentBlockDelta" => {
                if memmem::find(payload, b"\"toolUse\"").is_none() {
                    return;
                }
                if name == b"contentBlockStart" {
                    t.read(payload, |ev, t| self.block_start(ev, t));
                } else {
                    t.read(payload, |ev, t| self.block_delta(ev, t));
                }
            }
            b"metadata" => t.read(payload, |ev, t| {
                if let Some(u) = ev.obj("usage") {
                    read_usage(u, t);
                }
                t.complete = true;
            }),
            _ => {}
        }
    }

    fn body(&mut self, body: V<'_>, t: &mut Tally) {
        if let Some(u) = body.obj("usage") {
            read_usage(u, t);
        }
        let message = body.obj("output").and_then(|o| o.obj("message"));
        let content = message.and_then(|m| m.get("content"));
        for block in content.into_iter().flat_map(|c| c.items()) {
            let Some(tool) = block.is_object().then(|| block.obj("toolUse")).flatten() else {
                continue;
            };
            let args = tool.get("input").map(|v| v.compact()).unwrap_or_default();
            let name = tool.get_str("name");
            t.call(name.as_deref().unwrap_or(""), &args, String::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_example() {
        let mut d = Converse::default();
        let mut t = Tally::default();
        for (name, p) in [
            ("messageStart", r#"{"role":"assistant"}"#),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Checking."}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            (
                "contentBlockStart",
                r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_demo1","name":"check_stock"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"sku\":"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"X-91\"}"}}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
            ("messageStop", r#"{"stopReason":"tool_use"}"#),
            (
                "metadata",
                r#"{"usage":{"inputTokens":250,"outputTokens":40,"totalTokens":290,"cacheReadInputTokens":7},"metrics":{"latencyMs":812}}"#,
            ),
        ] {
            d.event(name.as_bytes(), p.as_bytes(), &mut t);
        }
        assert!(t.complete);
        assert_eq!(t.usage, [250, 40, 7, 0, 0]);
        assert_eq!(
            t.tool_calls(),
            vec![("check_stock".into(), "{\"sku\":\"X-91\"}".into())]
        );
    }

    #[test]
    fn body() {
        let src = r#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"},{"toolUse":{"toolUseId":"t1","name":"f","input":{"a":1}}}]}},
                "stopReason":"tool_use","usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7,"cacheWriteInputTokens":2}}"#;
        let mut t = Tally::default();
        let mut p = super::super::Parser::default();
        Converse::default().body(p.parse(src.as_bytes()).unwrap(), &mut t);
        assert_eq!(t.usage, [3, 4, 0, 2, 0]);
        assert_eq!(t.tool_calls(), vec![("f".into(), "{\"a\":1}".into())]);
    }
}
