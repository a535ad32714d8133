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
//! Block events without `"toolUse"` are not parsed; other events are ignored.
//! Exceptions are read by the event-stream framing.
//!
//! Body (a `ConverseResponse`): usage from `usage` (same keys); calls from
//! `output.message.content[].toolUse` (`input` as compact JSON, "" when
//! absent).

use std::collections::HashMap;

use memchr::memmem;

use super::{arr, compact, count, count0, obj, string, Extract, Object, Tally};

#[derive(Default)]
pub struct Converse {
    by_block: HashMap<Option<u64>, usize>,
}

fn read_usage(u: &Object, t: &mut Tally) {
    t.usage = [
        count0(u.get("inputTokens")),
        count0(u.get("outputTokens")),
        count0(u.get("cacheReadInputTokens")),
        count0(u.get("cacheWriteInputTokens")),
        0,
    ];
}

impl Extract for Converse {
    fn event(&mut self, name: &[u8], payload: &[u8], t: &mut Tally) {
        match name {
            b"contentBlockStart" | b"contentBlockDelta" => {
                if memmem::find(payload, b"\"toolUse\"").is_none() {
                    return;
                }
                let Some(ev) = t.parse(payload) else { return };
                let index = count(ev.get("contentBlockIndex"));
                if name == b"contentBlockStart" {
                    let start = obj(ev.get("start"));
                    let Some(tool) = obj(start.and_then(|s| s.get("toolUse"))) else {
                        return;
                    };
                    let k = t.call(string(tool.get("name")).unwrap_or(""), "", String::new());
                    self.by_block.insert(index, k);
                } else {
                    let delta = obj(ev.get("delta"));
                    let tool = obj(delta.and_then(|d| d.get("toolUse")));
                    let Some(input) = string(tool.and_then(|u| u.get("input"))) else {
                        return;
                    };
                    if let Some(&k) = self.by_block.get(&index) {
                        t.calls[k].args.push_str(input);
                    }
                }
            }
            b"metadata" => {
                let Some(ev) = t.parse(payload) else { return };
                if let Some(u) = obj(ev.get("usage")) {
                    read_usage(u, t);
                }
                t.complete = true;
            }
            _ => {}
        }
    }

    fn body(&mut self, body: &Object, t: &mut Tally) {
        if let Some(u) = obj(body.get("usage")) {
            read_usage(u, t);
        }
        let message = obj(obj(body.get("output")).and_then(|o| o.get("message")));
        for block in arr(message.and_then(|m| m.get("content")))
            .into_iter()
            .flatten()
        {
            let Some(tool) = obj(block.as_object().and_then(|b| b.get("toolUse"))) else {
                continue;
            };
            let args = tool.get("input").map(compact).unwrap_or_default();
            t.call(string(tool.get("name")).unwrap_or(""), &args, String::new());
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
        let body: serde_json::Value = serde_json::from_str(
            r#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"},{"toolUse":{"toolUseId":"t1","name":"f","input":{"a":1}}}]}},
                "stopReason":"tool_use","usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7,"cacheWriteInputTokens":2}}"#,
        )
        .unwrap();
        let mut t = Tally::default();
        Converse::default().body(body.as_object().unwrap(), &mut t);
        assert_eq!(t.usage, [3, 4, 0, 2, 0]);
        assert_eq!(t.tool_calls(), vec![("f".into(), "{\"a\":1}".into())]);
    }
}
