//! Gemini (the Gemini API and Gemini on Vertex, wire-formats.md §4).
//!
//! Every stream event and the whole body are a `GenerateContentResponse`.
//! - `usageMetadata` is cumulative: the last one wins as a whole (missing
//!   fields are 0): input = max(promptTokenCount − cachedContentTokenCount,
//!   0) plus toolUsePromptTokenCount, output = candidatesTokenCount plus
//!   thoughtsTokenCount, cache_read = cachedContentTokenCount, cache_write =
//!   0, reasoning = thoughtsTokenCount.
//! - Every `candidates[].content.parts[].functionCall` is a call: its `name`
//!   and `args` as compact JSON ("" when absent). A call arrives whole.
//! - A candidate with a non-empty string `finishReason` completes the stream.
//! - A top-level `error` object `{code, message, status}` is the error
//!   "STATUS: message" (the code when there is no status string).
//!
//! Only events with `usageMetadata`, `functionCall`, `finishReason` or
//! `"error"` are parsed.

use std::sync::LazyLock;

use super::{Extract, Markers, Tally, V};

static MARKERS: LazyLock<Markers> = LazyLock::new(|| {
    Markers::new(
        b'M',
        &[
            b"usageMetadata",
            b"functionCall",
            b"finishReason",
            b"\"error\"",
        ],
    )
});

#[derive(Default)]
pub struct Gemini;

fn read(r: V<'_>, t: &mut Tally) {
    let [usage, candidates, error] = r.pick(["usageMetadata", "candidates", "error"]);
    if let Some(u) = usage.filter(V::is_object) {
        let [prompt, cached, tool, candidates, thoughts] = u
            .pick([
                "promptTokenCount",
                "cachedContentTokenCount",
                "toolUsePromptTokenCount",
                "candidatesTokenCount",
                "thoughtsTokenCount",
            ])
            .map(|v| v.and_then(|v| v.u64()).unwrap_or(0));
        t.usage = [
            prompt.saturating_sub(cached).saturating_add(tool),
            candidates.saturating_add(thoughts),
            cached,
            0,
            thoughts,
        ];
    }
    for candidate in candidates.into_iter().flat_map(|c| c.items()) {
        if !candidate.is_object() {
            continue;
        }
        if candidate
            .get_str("finishReason")
            .is_some_and(|reason| !reason.is_empty())
        {
            t.complete = true;
        }
        let parts = candidate.obj("content").and_then(|c| c.get("parts"));
        for part in parts.into_iter().flat_map(|p| p.items()) {
            let Some(call) = part.is_object().then(|| part.obj("functionCall")).flatten() else {
                continue;
            };
            let args = call.get("args").map(|a| a.compact()).unwrap_or_default();
            let name = call.get_str("name");
            t.call(name.as_deref().unwrap_or(""), &args, String::new());
        }
    }
    if let Some(e) = error.filter(V::is_object) {
        let kind = match (e.get("status"), e.get("code")) {
            (Some(s), _) if s.str().is_some() => s.str().unwrap_or_default().into_owned(),
            (_, Some(c)) if c.str().is_some() => c.str().unwrap_or_default().into_owned(),
            (_, Some(c)) if c.is_number() => c.compact(),
            _ => "error".to_string(),
        };
        let message = e.get_str("message");
        t.error = Some(format!("{}: {}", kind, message.as_deref().unwrap_or("")));
    }
}

impl Extract for Gemini {
    fn event(&mut self, _name: &[u8], payload: &[u8], t: &mut Tally) {
        if MARKERS.any(payload) {
            t.read(payload, read);
        }
    }

    fn parsed_event(&mut self, _name: &[u8], payload: &[u8], root: V<'_>, t: &mut Tally) {
        if MARKERS.any(payload) {
            if root.is_object() {
                read(root, t);
            } else {
                t.bad_events += 1;
            }
        }
    }

    fn body(&mut self, body: V<'_>, t: &mut Tally) {
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
