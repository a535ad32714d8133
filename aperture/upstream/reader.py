"""Choose the upstream response reader once, at import.

`APERTURE_PURE=1` selects the h11 twin, as it selects the pure scanners and
meters (aperture/accel.py); otherwise llhttp reads responses. Both have the
same interface (http1.py says what they must agree on).
"""

from __future__ import annotations

import os

if os.environ.get("APERTURE_PURE") == "1":
    from aperture.upstream.h11_reader import H11Reader as ResponseReader
else:
    from aperture.upstream.llhttp_reader import LlhttpReader as ResponseReader  # type: ignore[assignment]

#: "h11" or "llhttp"
IMPLEMENTATION = "h11" if ResponseReader.__name__ == "H11Reader" else "llhttp"

__all__ = ["IMPLEMENTATION", "ResponseReader"]
