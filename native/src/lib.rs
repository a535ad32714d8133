//! `aperture._native`: the byte scanners that must run at memory speed.
//! This file only registers; the logic lives in `scan` (the request model
//! scanner) and in `meter` = `framing` × `extract` (the response meters), see
//! their module docs and `aperture/_native.pyi`.

pub mod extract;
pub mod framing;
pub mod meter;
pub mod scan;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<scan::python::PyModelScanner>()?;
    m.add_class::<meter::python::PyMeter>()?;
    m.add("NEED_DATA", scan::NEED_DATA)?;
    m.add("FOUND", scan::FOUND)?;
    m.add("MALFORMED", scan::MALFORMED)?;
    m.add("MISSING", scan::MISSING)?;
    m.add("NOT_STRING", scan::NOT_STRING)?;
    m.add("DUPLICATE", scan::DUPLICATE)?;
    Ok(())
}
