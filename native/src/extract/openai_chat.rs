//! OpenAI Chat Completions.
//!
//! Stream (wire-formats.md §2.4): `data: [DONE]` completes. The last non-null
//! `usage` object wins as a whole (missing fields are 0): input is
//! `prompt_tokens` less `cached_tokens` and `cache_write_tokens` (never below
//! 0), output `completion_tokens`, reasoning
//! `completion_tokens_details.reasoning_tokens`. Each new (choice index,
//! `tool_calls[].index`) pair is a call named by `function.name`; later
//! fragments append `function.arguments` (a later non-empty name fills an
//! empty one). A non-null top-level `error` is the error. Only chunks with
//! `"tool_calls"`, `"error"` or a `"usage"` object are parsed.
//!
//! Body (a `chat.completion`, §2.3): tool calls from
//! `choices[].message.tool_calls[].function` (the `arguments` string, or its
//! compact JSON when it is not a string, "" when absent); usage as in the
//! stream; a top-level `error` object is the error.

use std::collections::HashMap;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::{error_text, openai_usage, Extract, OpenaiUsageKeys, Tally, V};

static TOOL_CALLS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"tool_calls\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

/// `"usage"` followed by optional JSON whitespace, ':', whitespace and '{'
/// (chunks carry `"usage":null` until the last one).
pub fn has_usage_object(payload: &[u8]) -> bool {
    let skip_ws = |mut j: usize| {
        while j < payload.len() && matches!(payload[j], b' ' | b'\t' | b'\r' | b'\n') {
            j += 1;
        }
        j
    };
    let mut from = 0;
    while let Some(k) = USAGE_KEY.find(&payload[from..]) {
        let mut j = skip_ws(from + k + b"\"usage\"".len());
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

#[derive(Default)]
pub struct OpenaiChat {
    by_choice_tool: HashMap<(u64, u64), usize>,
}

const USAGE: OpenaiUsageKeys = OpenaiUsageKeys {
    input: "prompt_tokens",
    input_details: "prompt_tokens_details",
    output: "completion_tokens",
    output_details: "completion_tokens_details",
};

impl OpenaiChat {
    fn read(&mut self, ev: V<'_>, t: &mut Tally) {
        if let Some(e) = ev.get("error").filter(|e| !e.is_null()) {
            t.error = Some(error_text(Some(e)));
        }
        if let Some(usage) = ev.obj("usage") {
            t.usage = openai_usage(usage, &USAGE);
        }
        let Some(choices) = ev.get("choices") else {
            return;
        };
        for (cpos, choice) in choices.items().enumerate() {
            let Some(delta) = choice.is_object().then(|| choice.obj("delta")).flatten() else {
                continue;
            };
            let Some(tool_calls) = delta.get("tool_calls") else {
                continue;
            };
            let ci = choice.count("index").unwrap_or(cpos as u64);
            for (tpos, tc) in tool_calls.items().enumerate() {
                if !tc.is_object() {
                    continue;
                }
                let ti = tc.count("index").unwrap_or(tpos as u64);
                let function = tc.obj("function");
                let name = function.and_then(|f| f.get_str("name"));
                let args = function.and_then(|f| f.get_str("arguments"));
                let args = args.as_deref().unwrap_or("");
                match self.by_choice_tool.get(&(ci, ti)) {
                    None => {
                        let k = t.call(name.as_deref().unwrap_or(""), args, String::new());
                        self.by_choice_tool.insert((ci, ti), k);
                    }
                    Some(&k) => {
                        let call = &mut t.calls[k];
                        call.args.push_str(args);
                        if let Some(name) = name {
                            if !name.is_empty() && call.name.is_empty() {
                                call.name = name.into_owned();
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Extract for OpenaiChat {
    fn event(&mut self, _name: &[u8], payload: &[u8], t: &mut Tally) {
        if payload.starts_with(b"[DONE]") {
            t.complete = true;
            return;
        }
        if TOOL_CALLS.find(payload).is_some()
            || ERROR_KEY.find(payload).is_some()
            || has_usage_object(payload)
        {
            t.read(payload, |ev, t| self.read(ev, t));
        }
    }

    fn body(&mut self, body: V<'_>, t: &mut Tally) {
        for choice in body.get("choices").into_iter().flat_map(|c| c.items()) {
            let message = choice.is_object().then(|| choice.obj("message")).flatten();
            let calls = message.and_then(|m| m.get("tool_calls"));
            for call in calls.into_iter().flat_map(|c| c.items()) {
                let Some(function) = call.is_object().then(|| call.obj("function")).flatten()
                else {
                    continue;
                };
                let args = match function.get("arguments") {
                    None => String::new(),
                    Some(v) => match v.str() {
                        Some(s) => s.into_owned(),
                        None => v.compact(),
                    },
                };
                let name = function.get_str("name");
                t.call(name.as_deref().unwrap_or(""), &args, String::new());
            }
        }
        if let Some(usage) = body.obj("usage") {
            t.usage = openai_usage(usage, &USAGE);
        }
        if let Some(e) = body.obj("error") {
            t.error = Some(error_text(Some(e)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream() {
        let mut d = OpenaiChat::default();
        let mut t = Tally::default();
        for p in [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"check_stock","arguments":""}}]}}],"usage":null}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"name":"other","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"sku\":1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#,
            r#"{"choices":[],"usage": {"prompt_tokens":812,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":512,"cache_write_tokens":100},"completion_tokens_details":{"reasoning_tokens":9}}}"#,
            "[DONE]",
        ] {
            d.event(b"", p.as_bytes(), &mut t);
        }
        assert!(t.complete);
        assert_eq!(t.usage, [200, 40, 512, 100, 9]);
        assert_eq!(
            t.tool_calls(),
            vec![
                ("check_stock".into(), "{\"sku\":1}".into()),
                ("other".into(), "{}".into())
            ]
        );
    }

    #[test]
    fn usage_object_prefilter() {
        assert!(has_usage_object(b"{\"usage\" :\r\n {\"a\":1}}"));
        assert!(has_usage_object(b"{\"usage\":null,\"x\":{\"usage\":{}}}"));
        assert!(!has_usage_object(b"{\"usage\":null}"));
        assert!(!has_usage_object(b"{\"usage\""));
    }

    #[test]
    fn body() {
        let src = r#"{"object":"chat.completion","choices":[{"message":{"tool_calls":[
                {"function":{"name":"a","arguments":"{\"x\":1}"}},{"function":{"name":"b","arguments":{"y":2}}},{"function":{"name":"c"}}]}}],
                "usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":9}}}"#;
        let mut t = Tally::default();
        let mut p = super::super::Parser::default();
        OpenaiChat::default().body(p.parse(src.as_bytes()).unwrap(), &mut t);
        assert_eq!(t.usage, [0, 2, 9, 0, 0]);
        assert_eq!(
            t.tool_calls(),
            vec![
                ("a".into(), "{\"x\":1}".into()),
                ("b".into(), "{\"y\":2}".into()),
                ("c".into(), "".into())
            ]
        );
    }
}
