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

use super::{keyed_error_text, openai_usage, Extract, Markers, OpenaiUsageKeys, Tally, V};

static MARKERS: LazyLock<Markers> = LazyLock::new(|| {
    Markers::new(
        b'.',
        &[
            b"response.created",
            b"response.in_progress",
            b"response.output_item.",
            b"function_call_arguments.",
            b"custom_tool_call_input.",
            b"response.completed",
            b"response.incomplete",
            b"response.failed",
            b"\"error\"",
        ],
    )
});

#[derive(Default)]
pub struct OpenaiResponses {
    by_id: HashMap<String, usize>,
    by_index: HashMap<Option<u64>, usize>,
}

const USAGE: OpenaiUsageKeys = OpenaiUsageKeys {
    input: "input_tokens",
    input_details: "input_tokens_details",
    output: "output_tokens",
    output_details: "output_tokens_details",
};

/// The key of a tool item's arguments: function_call → arguments,
/// custom_tool_call → input; None for other items.
fn args_key(item: V<'_>) -> Option<&'static str> {
    let kind = item.get("type")?;
    if kind.is_str("function_call") {
        Some("arguments")
    } else if kind.is_str("custom_tool_call") {
        Some("input")
    } else {
        None
    }
}

impl OpenaiResponses {
    fn find(&self, item_id: Option<&str>, output_index: Option<u64>) -> Option<usize> {
        if let Some(&k) = item_id.and_then(|id| self.by_id.get(id)) {
            return Some(k);
        }
        self.by_index.get(&output_index).copied()
    }

    fn read(&mut self, ev: V<'_>, t: &mut Tally) {
        let Some(kind) = ev.get_str("type") else {
            return;
        };
        let output_index = ev.count("output_index");
        match &*kind {
            "response.created" | "response.in_progress" if t.response_id.is_none() => {
                if let Some(id) = ev.obj("response").and_then(|r| r.get_str("id")) {
                    t.response_id = Some(id.into_owned()); // the first one seen
                }
            }
            "response.output_item.added" => {
                let Some(item) = ev.obj("item") else { return };
                if args_key(item).is_none() {
                    return;
                }
                let name = item.get_str("name");
                let k = t.call(name.as_deref().unwrap_or(""), "", String::new());
                if let Some(id) = item.get_str("id") {
                    self.by_id.insert(id.into_owned(), k);
                }
                self.by_index.insert(output_index, k);
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let Some(delta) = ev.get_str("delta") else {
                    return;
                };
                if let Some(k) = self.find(ev.get_str("item_id").as_deref(), output_index) {
                    t.calls[k].args.push_str(&delta);
                }
            }
            "response.function_call_arguments.done" | "response.custom_tool_call_input.done" => {
                let key = if kind.starts_with("response.function") {
                    "arguments"
                } else {
                    "input"
                };
                let Some(args) = ev.get_str(key) else { return };
                if let Some(k) = self.find(ev.get_str("item_id").as_deref(), output_index) {
                    t.calls[k].fallback = args.into_owned();
                }
            }
            "response.output_item.done" => {
                let Some(item) = ev.obj("item") else { return };
                let Some(key) = args_key(item) else { return };
                let Some(args) = item.get_str(key) else {
                    return;
                };
                if let Some(k) = self.find(item.get_str("id").as_deref(), output_index) {
                    t.calls[k].fallback = args.into_owned();
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                t.complete = true;
                let Some(response) = ev.obj("response") else {
                    return;
                };
                if let Some(usage) = response.obj("usage") {
                    t.usage = openai_usage(usage, &USAGE);
                }
                if &*kind == "response.failed" {
                    if let Some(e) = response.obj("error") {
                        t.error = Some(keyed_error_text(e, &["code"]));
                    }
                }
            }
            "error" => t.error = Some(keyed_error_text(ev, &["code"])),
            _ => {}
        }
    }
}

impl Extract for OpenaiResponses {
    fn event(&mut self, _name: &[u8], payload: &[u8], t: &mut Tally) {
        if MARKERS.any(payload) {
            t.read(payload, |ev, t| self.read(ev, t));
        }
    }

    fn body(&mut self, body: V<'_>, t: &mut Tally) {
        if let Some(id) = body.get_str("id") {
            t.response_id = Some(id.into_owned());
        }
        if let Some(usage) = body.obj("usage") {
            t.usage = openai_usage(usage, &USAGE);
        }
        for item in body.get("output").into_iter().flat_map(|o| o.items()) {
            if !item.is_object() {
                continue;
            }
            let Some(key) = args_key(item) else { continue };
            let (name, args) = (item.get_str("name"), item.get_str(key));
            t.call(
                name.as_deref().unwrap_or(""),
                args.as_deref().unwrap_or(""),
                String::new(),
            );
        }
        if let Some(e) = body.obj("error") {
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
