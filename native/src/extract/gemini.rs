//! Gemini (the Gemini API and Gemini on Vertex, wire-formats.md §4).
//!
//! Every stream event and the whole body are a `GenerateContentResponse`.
//! - `usageMetadata` is cumulative: the last one wins as a whole (missing
//!   fields are 0). input = max(promptTokenCount − cachedContentTokenCount, 0)
//!   + toolUsePromptTokenCount, output = candidatesTokenCount +
//!   thoughtsTokenCount, cache_read = cachedContentTokenCount, cache_write = 0,
//!   reasoning = thoughtsTokenCount.
//! - Every `candidates[].content.parts[].functionCall` is a call: its `name`
//!   and `args` as compact JSON ("" when absent). A call arrives whole.
//! - A candidate with a non-empty string `finishReason` completes the stream.
//! - A top-level `error` object `{code, message, status}` is the error
//!   "STATUS: message" (the code when there is no status string).
//!
//! Only events with `usageMetadata`, `functionCall`, `finishReason` or
//! `"error"` are parsed.

use std::sync::LazyLock;

use serde_json::Value;

use super::{arr, compact, count0, obj, string, Extract, Markers, Object, Tally};

static MARKERS: LazyLock<Markers> = LazyLock::new(|| {
    Markers::new(&[
        b"usageMetadata",
        b"functionCall",
        b"finishReason",
        b"\"error\"",
    ])
});

#[derive(Default)]
pub struct Gemini;

fn read(r: &Object, t: &mut Tally) {
    if let Some(u) = obj(r.get("usageMetadata")) {
        let prompt = count0(u.get("promptTokenCount"));
        let cached = count0(u.get("cachedContentTokenCount"));
        let tool = count0(u.get("toolUsePromptTokenCount"));
        let candidates = count0(u.get("candidatesTokenCount"));
        let thoughts = count0(u.get("thoughtsTokenCount"));
        t.usage = [
            prompt.saturating_sub(cached).saturating_add(tool),
            candidates.saturating_add(thoughts),
            cached,
            0,
            thoughts,
        ];
    }
    for candidate in arr(r.get("candidates")).into_iter().flatten() {
        let Some(candidate) = candidate.as_object() else {
            continue;
        };
        if let Some(reason) = string(candidate.get("finishReason")) {
            if !reason.is_empty() {
                t.complete = true;
            }
        }
        let parts = arr(obj(candidate.get("content")).and_then(|c| c.get("parts")));
        for part in parts.into_iter().flatten() {
            let Some(call) = obj(part.as_object().and_then(|p| p.get("functionCall"))) else {
                continue;
            };
            let args = call.get("args").map(compact).unwrap_or_default();
            t.call(string(call.get("name")).unwrap_or(""), &args, String::new());
        }
    }
    if let Some(Value::Object(e)) = r.get("error") {
        let kind = match (e.get("status"), e.get("code")) {
            (Some(Value::String(s)), _) => s.clone(),
            (_, Some(Value::String(s))) => s.clone(),
            (_, Some(n @ Value::Number(_))) => compact(n),
            _ => "error".to_string(),
        };
        t.error = Some(format!(
            "{}: {}",
            kind,
            string(e.get("message")).unwrap_or("")
        ));
    }
}

impl Extract for Gemini {
    fn event(&mut self, _name: &[u8], payload: &[u8], t: &mut Tally) {
        if !MARKERS.any(payload) {
            return;
        }
        if let Some(r) = t.parse(payload) {
            read(&r, t);
        }
    }

    fn body(&mut self, body: &Object, t: &mut Tally) {
        read(body, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_usage_calls_and_finish() {
        let mut t = Tally::default();
        let mut d = Gemini;
        for p in [
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me check"}]},"index":0}],"usageMetadata":{"promptTokenCount":31,"candidatesTokenCount":3,"totalTokenCount":34}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"no markers here"}]}}]}"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"check_stock","args":{"sku":"X-91"}}},{"functionCall":{"name":"noargs"}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1310,"cachedContentTokenCount":1024,"toolUsePromptTokenCount":5,"candidatesTokenCount":14,"thoughtsTokenCount":50}}"#,
        ] {
            d.event(b"", p.as_bytes(), &mut t);
        }
        assert!(t.complete);
        assert_eq!(t.usage, [291, 64, 1024, 0, 50]);
        assert_eq!(
            t.tool_calls(),
            vec![
                ("check_stock".into(), "{\"sku\":\"X-91\"}".into()),
                ("noargs".into(), "".into())
            ]
        );
    }

    #[test]
    fn errors() {
        for (p, want) in [
            (
                r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#,
                "INVALID_ARGUMENT: bad",
            ),
            (r#"{"error":{"code":503,"message":"later"}}"#, "503: later"),
            (r#"{"error":{}}"#, "error: "),
        ] {
            let mut t = Tally::default();
            Gemini.event(b"", p.as_bytes(), &mut t);
            assert_eq!(t.error.as_deref(), Some(want));
        }
    }
}
