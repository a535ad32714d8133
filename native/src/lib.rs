//! `aperture._native`: the byte scanners that must run at memory speed.
//! This file only registers; the logic lives in `scan` and `sse` (see their
//! module docs and `aperture/_native.pyi`).

pub mod scan;
pub mod sse;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<scan::python::PyModelScanner>()?;
    m.add_class::<sse::python::PySseMeter>()?;
    m.add("NEED_DATA", scan::NEED_DATA)?;
    m.add("FOUND", scan::FOUND)?;
    m.add("MALFORMED", scan::MALFORMED)?;
    m.add("MISSING", scan::MISSING)?;
    m.add("NOT_STRING", scan::NOT_STRING)?;
    m.add("DUPLICATE", scan::DUPLICATE)?;
    Ok(())
}
