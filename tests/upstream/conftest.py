from __future__ import annotations

import pytest

from .helpers import READERS


@pytest.fixture(params=READERS)
def reader_class(request):
    """Each behaviour test runs against both readers (STYLE.md, habit 12)."""
    return request.param
