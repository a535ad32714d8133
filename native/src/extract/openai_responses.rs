//! OpenAI Responses (wire-formats.md §3).
//!
//! Stream: the JSON `type` decides, not the SSE `event:` line.
//! - `response.created` / `response.in_progress`: `response.id` is the
//!   response id (the first one seen).
//! - `response.output_item.added` with `item.type` function_call or
//!   custom_tool_call: a new call named `item.name`, found later by `item.id`
//!   or, failing that, by `output_index`.
//! - `response.function_call_arguments.delta` /
//!   `response.custom_tool_call_input.delta`: `delta` is appended to the call
//!   of that `item_id` (else of that `output_index`).
//! - When a call's deltas add up to nothing, its arguments are the
//!   `arguments` / `input` of its `….done` event or of its item in
//!   `response.output_item.done` (the last one seen).
//! - `response.completed` / `response.incomplete` / `response.failed`
//!   complete; usage from `response.usage`; `response.failed` with a
//!   `response.error` object sets the error "code: message".
//! - A bare `error` event `{type:"error", code, message}` sets the error
//!   "code: message" ("error" when the code is not a string).
//!
//! Usage: cached = `input_tokens_details.cached_tokens`, written =
//! `input_tokens_details.cache_write_tokens`, input = `input_tokens` − cached −
//! written (≥ 0), output = `output_tokens`, reasoning =
//! `output_tokens_details.reasoning_tokens`; missing fields are 0.
//!
//! Body (a `Response`): the id, usage as above, calls from `output[]` items
//! function_call (`arguments`) / custom_tool_call (`input`), and an `error`
//! object as "type-or-code: message".

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use super::{
    arr, count, count0, keyed_error_text, obj, string, uncached, Extract, Markers, Object, Tally,
};

static MARKERS: LazyLock<Markers> = LazyLock::new(|| {
    Markers::new(&[
        b"response.created",
        b"response.in_progress",
        b"response.output_item.",
        b"function_call_arguments.",
        b"custom_tool_call_input.",
        b"response.completed",
        b"response.incomplete",
        b"response.failed",
        b"\"error\"",
    ])
});

#[derive(Default)]
pub struct OpenaiResponses {
    by_id: HashMap<String, usize>,
    by_index: HashMap<Option<u64>, usize>,
}

fn read_usage(usage: &Object, t: &mut Tally) {
    let input = obj(usage.get("input_tokens_details"));
    let output = obj(usage.get("output_tokens_details"));
    let cached = count0(input.and_then(|d| d.get("cached_tokens")));
    let written = count0(input.and_then(|d| d.get("cache_write_tokens")));
    t.usage = [
        uncached(count0(usage.get("input_tokens")), cached, written),
        count0(usage.get("output_tokens")),
        cached,
        written,
        count0(output.and_then(|d| d.get("reasoning_tokens"))),
    ];
}

/// The key of a tool item's arguments: function_call → arguments,
/// custom_tool_call → input; None for other items.
fn args_key(item: &Object) -> Option<&'static str> {
    match string(item.get("type")) {
        Some("function_call") => Some("arguments"),
        Some("custom_tool_call") => Some("input"),
        _ => None,
    }
}

impl OpenaiResponses {
    fn find(&self, item_id: Option<&str>, output_index: Option<u64>) -> Option<usize> {
        if let Some(&k) = item_id.and_then(|id| self.by_id.get(id)) {
            return Some(k);
        }
        self.by_index.get(&output_index).copied()
    }
}

impl Extract for OpenaiResponses {
    fn event(&mut self, _name: &[u8], payload: &[u8], t: &mut Tally) {
        if !MARKERS.any(payload) {
            return;
        }
        let Some(ev) = t.parse(payload) else { return };
        let Some(kind) = string(ev.get("type")) else {
            return;
        };
        let output_index = count(ev.get("output_index"));
        match kind {
            "response.created" | "response.in_progress" => {
                if t.response_id.is_none() {
                    let response = obj(ev.get("response"));
                    if let Some(id) = string(response.and_then(|r| r.get("id"))) {
                        t.response_id = Some(id.to_string());
                    }
                }
            }
            "response.output_item.added" => {
                let Some(item) = obj(ev.get("item")) else {
                    return;
                };
                if args_key(item).is_none() {
                    return;
                }
                let k = t.call(string(item.get("name")).unwrap_or(""), "", String::new());
                if let Some(id) = string(item.get("id")) {
                    self.by_id.insert(id.to_string(), k);
                }
                self.by_index.insert(output_index, k);
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let Some(delta) = string(ev.get("delta")) else {
                    return;
                };
                if let Some(k) = self.find(string(ev.get("item_id")), output_index) {
                    t.calls[k].args.push_str(delta);
                }
            }
            "response.function_call_arguments.done" | "response.custom_tool_call_input.done" => {
                let key = if kind.starts_with("response.function") {
                    "arguments"
                } else {
                    "input"
                };
                let Some(args) = string(ev.get(key)) else {
                    return;
                };
                if let Some(k) = self.find(string(ev.get("item_id")), output_index) {
                    t.calls[k].fallback = args.to_string();
                }
            }
            "response.output_item.done" => {
                let Some(item) = obj(ev.get("item")) else {
                    return;
                };
                let Some(key) = args_key(item) else { return };
                let Some(args) = string(item.get(key)) else {
                    return;
                };
                if let Some(k) = self.find(string(item.get("id")), output_index) {
                    t.calls[k].fallback = args.to_string();
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                t.complete = true;
                let Some(response) = obj(ev.get("response")) else {
                    return;
                };
                if let Some(usage) = obj(response.get("usage")) {
                    read_usage(usage, t);
                }
                if kind == "response.failed" {
                    if let Some(e) = obj(response.get("error")) {
                        t.error = Some(keyed_error_text(e, &["code"]));
                    }
                }
            }
            "error" => t.error = Some(keyed_error_text(&ev, &["code"])),
            _ => {}
        }
    }

    fn body(&mut self, body: &Object, t: &mut Tally) {
        if let Some(id) = string(body.get("id")) {
            t.response_id = Some(id.to_string());
        }
        if let Some(usage) = obj(body.get("usage")) {
            read_usage(usage, t);
        }
        for item in arr(body.get("output")).into_iter().flatten() {
            let Some(item) = item.as_object() else {
                continue;
            };
            let Some(key) = args_key(item) else { continue };
            t.call(
                string(item.get("name")).unwrap_or(""),
                string(item.get(key)).unwrap_or(""),
                String::new(),
            );
        }
        if let Some(Value::Object(e)) = body.get("error") {
            t.error = Some(keyed_error_text(e, &["type", "code"]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(payloads: &[&str]) -> Tally {
        let mut d = OpenaiResponses::default();
        let mut t = Tally::default();
        for p in payloads {
            d.event(b"", p.as_bytes(), &mut t);
        }
        t
    }

    #[test]
    fn reference_example() {
        let t = stream(&[
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_demo","object":"response","status":"in_progress","output":[],"usage":null}}"#,
            r#"{"type":"response.in_progress","response":{"id":"resp_other"}}"#,
            r#"{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"type":"function_call","id":"fc_demo","call_id":"call_demo1","name":"check_stock","arguments":"","status":"in_progress"}}"#,
            r#"{"type":"response.output_text.delta","item_id":"msg","delta":"hello"}"#,
            r#"{"type":"response.function_call_arguments.delta","sequence_number":2,"item_id":"fc_demo","output_index":0,"delta":"{\"sku\":\"X-91\"}"}"#,
            r#"{"type":"response.function_call_arguments.done","sequence_number":3,"item_id":"fc_demo","output_index":0,"name":"check_stock","arguments":"{\"sku\":\"X-91\"}"}"#,
            r#"{"type":"response.completed","sequence_number":5,"response":{"id":"resp_demo","usage":{"input_tokens":300,"input_tokens_details":{"cached_tokens":128},"output_tokens":22,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":322}}}"#,
        ]);
        assert!(t.complete);
        assert_eq!(t.response_id.as_deref(), Some("resp_demo"));
        assert_eq!(t.usage, [172, 22, 128, 0, 4]);
        assert_eq!(
            t.tool_calls(),
            vec![("check_stock".into(), "{\"sku\":\"X-91\"}".into())]
        );
    }

    #[test]
    fn arguments_from_done_events_when_no_deltas() {
        let t = stream(&[
            r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"custom_tool_call","name":"sh"}}"#,
            r#"{"type":"response.output_item.added","output_index":1,"item":{"type":"function_call","id":"fc","name":"f"}}"#,
            r#"{"type":"response.custom_tool_call_input.done","output_index":0,"input":"ls -l"}"#,
            r#"{"type":"response.output_item.done","output_index":1,"item":{"type":"function_call","id":"fc","arguments":"{}"}}"#,
            r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#,
        ]);
        assert_eq!(
            t.tool_calls(),
            vec![("sh".into(), "ls -l".into()), ("f".into(), "{}".into())]
        );
        assert_eq!(
            (t.complete, t.error.as_deref()),
            (true, Some("server_error: boom"))
        );
        let t = stream(&[r#"{"type":"error","code":null,"message":"bad"}"#]);
        assert_eq!(t.error.as_deref(), Some("error: bad"));
    }
}
