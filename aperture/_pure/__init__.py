"""Pure-Python twin of `aperture._native` (same names, same behaviour).

It is the fallback when the extension is missing (or `APERTURE_PURE=1`) and
the oracle the property tests compare the native module against, so every
rule here is mirrored in `native/src/`, file for file:

    scan.py                 native/src/scan.rs          ModelScanner
    meter.py                native/src/meter.rs         Meter = framing × dialect
    framing/sse.py          native/src/framing/sse.rs
    framing/eventstream.py  native/src/framing/eventstream.rs
    framing/json_array.py   native/src/framing/json_array.rs
    framing/json_body.py    native/src/framing/json_body.rs
    extract/*.py            native/src/extract/*.rs     one per dialect
    jsonrules.py            native/src/extract/json.rs  serde_json's rules for reading JSON
"""

from __future__ import annotations

from aperture._pure.meter import Meter
from aperture._pure.scan import DUPLICATE, FOUND, MALFORMED, MISSING, NEED_DATA, NOT_STRING, ModelScanner

__all__ = [
    "NEED_DATA",
    "FOUND",
    "MALFORMED",
    "MISSING",
    "NOT_STRING",
    "DUPLICATE",
    "ModelScanner",
    "Meter",
]
