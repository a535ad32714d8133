"""Choose the native scanners or their pure-Python twins, once, at import.

`APERTURE_PURE=1` forces the pure implementation; without it the native
extension is used when it can be imported. Both expose the same API
(see `aperture/_native.pyi`).
"""

from __future__ import annotations

import os

if os.environ.get("APERTURE_PURE") == "1":
    from aperture import _pure as _impl
else:
    try:
        from aperture import _native as _impl  # type: ignore[no-redef]
    except ImportError:  # extension not built: fall back to the twin
        from aperture import _pure as _impl  # type: ignore[no-redef]

IMPLEMENTATION = "pure" if _impl.__name__.endswith("_pure") else "native"

ModelScanner = _impl.ModelScanner
Meter = _impl.Meter
NEED_DATA = _impl.NEED_DATA
FOUND = _impl.FOUND
MALFORMED = _impl.MALFORMED
MISSING = _impl.MISSING
NOT_STRING = _impl.NOT_STRING
DUPLICATE = _impl.DUPLICATE
