//! The meter: one framing × one dialect, reading usage and tool calls off a
//! response as its bytes pass (see `framing` and `extract`, and the stub
//! `aperture/_native.pyi`). `aperture/_pure/meter.py` is its twin.

use crate::extract::{self, Dialect, Tally};
use crate::framing::{self, Framing};

pub struct Meter {
    framing: Framing,
    dialect: Dialect,
    tally: Tally,
    finished: bool,
}

impl Meter {
    /// A meter for `framing` × `dialect`; Err(message) on an unknown name.
    /// Every combination works; providers send the ones listed in the stub.
    pub fn new(framing: &str, dialect: &str) -> Result<Meter, String> {
        let Some(f) = Framing::from_name(framing) else {
            return Err(format!(
                "unknown meter framing: '{framing}' (expected one of {})",
                framing::NAMES.join(", ")
            ));
        };
        let Some(d) = Dialect::from_name(dialect) else {
            return Err(format!(
                "unknown meter dialect: '{dialect}' (expected one of {})",
                extract::NAMES.join(", ")
            ));
        };
        Ok(Meter {
            framing: f,
            dialect: d,
            tally: Tally::default(),
            finished: false,
        })
    }

    /// Read the next chunk of the body. Never fails on bad input; ignored
    /// after `finish`.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.finished {
            self.framing.feed(chunk, &mut self.dialect, &mut self.tally);
        }
    }

    /// The body ended (idempotent).
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.framing.finish(&mut self.dialect, &mut self.tally);
        }
    }

    /// (input, output, cache_read, cache_write, reasoning)
    pub fn usage(&self) -> (u64, u64, u64, u64, u64) {
        let u = self.tally.usage;
        (u[0], u[1], u[2], u[3], u[4])
    }

    pub fn tool_calls(&self) -> Vec<(String, String)> {
        self.tally.tool_calls()
    }

    pub fn complete(&self) -> bool {
        self.framing.complete(&self.tally)
    }

    pub fn events(&self) -> u64 {
        self.tally.events
    }

    pub fn bad_events(&self) -> u64 {
        self.tally.bad_events
    }

    pub fn error(&self) -> Option<&str> {
        self.tally.error.as_deref()
    }

    pub fn response_id(&self) -> Option<&str> {
        self.tally.response_id.as_deref()
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

    /// Chunks at least this long are read with the GIL released.
    const DETACH_AT: usize = 64 * 1024;

    #[pyclass(name = "Meter", module = "aperture._native")]
    pub struct PyMeter {
        inner: super::Meter,
    }

    #[pymethods]
    impl PyMeter {
        #[new]
        fn new(framing: &str, dialect: &str) -> PyResult<Self> {
            super::Meter::new(framing, dialect)
                .map(|inner| PyMeter { inner })
                .map_err(PyValueError::new_err)
        }

        /// Read the next chunk (bytes are read in place, bytearray is copied).
        fn feed(&mut self, py: Python<'_>, chunk: Cow<'_, [u8]>) {
            if chunk.len() >= DETACH_AT {
                let inner = &mut self.inner;
                let data: &[u8] = &chunk;
                py.detach(move || inner.feed(data))
            } else {
                self.inner.feed(&chunk)
            }
        }

        fn finish(&mut self) {
            self.inner.finish()
        }

        fn usage(&self) -> (u64, u64, u64, u64, u64) {
            self.inner.usage()
        }

        fn tool_calls(&self) -> Vec<(String, String)> {
            self.inner.tool_calls()
        }

        #[getter]
        fn complete(&self) -> bool {
            self.inner.complete()
        }

        #[getter]
        fn events(&self) -> u64 {
            self.inner.events()
        }

        #[getter]
        fn bad_events(&self) -> u64 {
            self.inner.bad_events()
        }

        #[getter]
        fn error(&self) -> Option<&str> {
            self.inner.error()
        }

        #[getter]
        fn response_id(&self) -> Option<&str> {
            self.inner.response_id()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Meter::new("sse", "anthropic").is_ok());
        assert_eq!(
            Meter::new("sse", "x").err().unwrap(),
            "unknown meter dialect: 'x' (expected one of anthropic, openai_chat, openai_responses, gemini, converse)"
        );
        assert!(Meter::new("ws", "gemini").is_err());
    }

    #[test]
    fn json_body_and_finish() {
        let mut m = Meter::new("json", "gemini").unwrap();
        m.feed(
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}]}}],"#,
        );
        m.feed(br#""usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2}}"#);
        assert!(!m.complete());
        m.finish();
        m.finish();
        m.feed(b"ignored");
        assert!(m.complete());
        assert_eq!((m.events(), m.bad_events()), (1, 0));
        assert_eq!(m.usage(), (9, 2, 0, 0, 0));
        assert_eq!(m.tool_calls(), vec![("f".to_string(), "{}".to_string())]);
        let mut m = Meter::new("json", "anthropic").unwrap();
        m.feed(b"[1]");
        m.finish();
        assert_eq!((m.complete(), m.events(), m.bad_events()), (false, 0, 1));
    }

    #[test]
    fn gemini_array_needs_its_closing_bracket() {
        let body =
            br#"[{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3}}"#;
        let mut m = Meter::new("json_array", "gemini").unwrap();
        m.feed(body);
        assert!(!m.complete());
        m.feed(b"\n]");
        assert!(m.complete());
        assert_eq!(m.usage(), (3, 0, 0, 0, 0));
    }
}
