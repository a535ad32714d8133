"""The formats the simulator speaks, looked up by method and path.

This is the only list of them: a new format is one module (see
`aperture.sim.routes` for what it declares) plus its line in `FORMATS`.
"""

from __future__ import annotations

from types import ModuleType

from aperture.sim import anthropic, openai_chat
from aperture.sim.routes import Route, sort_routes

FORMATS: tuple[ModuleType, ...] = (anthropic, openai_chat)

#: the format of errors on paths no format owns, unless another one `owns` the request
DEFAULT: ModuleType = openai_chat

_ROUTES: tuple[Route, ...] = sort_routes(route for fmt in FORMATS for route in fmt.ROUTES)
_FORMAT_OF: dict[int, ModuleType] = {id(route): fmt for fmt in FORMATS for route in fmt.ROUTES}


def match(method: str, path: str, headers: dict, query: dict
          ) -> tuple[ModuleType | None, Route | None, dict[str, str]]:
    """(format, route, path parameters) for `method path`.

    The route is None when the path is known but not for this method (answer
    405 in that format) and the format is None too when no shape fits (404).
    """
    known = None
    for route in _ROUTES:
        params = route.match(path)
        if params is None or (route.when is not None and not route.when(headers, query)):
            continue
        if route.method != method:
            if known is None:
                known = route
            continue
        return _FORMAT_OF[id(route)], route, params
    if known is not None:
        return _FORMAT_OF[id(known)], None, {}
    return None, None, {}


def guess(headers: dict, query: dict) -> ModuleType:
    """The format whose shape an unknown path's 404 takes."""
    for fmt in FORMATS:
        owns = getattr(fmt, "owns", None)
        if owns is not None and owns(headers, query):
            return fmt
    return DEFAULT


def new_states() -> dict[str, object]:
    """Fresh per-simulator state of every format that keeps some, by name."""
    return {fmt.NAME: fmt.new_state() for fmt in FORMATS if hasattr(fmt, "new_state")}


def usage_functions() -> dict:
    """Every api name `expected_usage` accepts, with its function."""
    out: dict = {}
    for fmt in FORMATS:
        out.update(fmt.USAGE)
    return out
