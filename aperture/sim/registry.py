"""The formats the simulator speaks, looked up by method and path.

This is the only list of them: a new format is one module (see
`aperture.sim.routes` for what it declares) plus its line in `FORMATS`.
"""

from __future__ import annotations

from types import ModuleType

from aperture.sim import anthropic, bedrock, gemini, openai_chat, openai_responses, vertex
from aperture.sim.routes import Route, sort_routes

FORMATS: tuple[ModuleType, ...] = (anthropic, openai_chat, openai_responses, gemini, vertex, bedrock)

#: the format of errors on paths no format owns, unless another one `owns` the request
DEFAULT: ModuleType = openai_chat

_ROUTES: tuple[Route, ...] = sort_routes(route for fmt in FORMATS for route in fmt.ROUTES)
_FORMAT_OF: dict[int, ModuleType] = {id(route): fmt for fmt in FORMATS for route in fmt.ROUTES}


def _index() -> tuple[dict[str, tuple[Route, ...]], tuple[Route, ...]]:
    """The routes a path may match, by the path's last segment or its
    ":verb": each entry keeps the order of `_ROUTES`. Matching a request
    then tries a handful of routes instead of all of them (this runs for
    every request of a benchmark that uses the simulator as upstream)."""
    wildcard = tuple(r for r in _ROUTES if r.last == "")
    keys = {r.last for r in _ROUTES if r.last}
    index = {}
    for key in keys:
        verb = key[key.rfind(":"):] if ":" in key else None
        index[key] = tuple(r for r in _ROUTES if r.last in ("", key) or (verb is not None and r.last == verb))
    return index, wildcard


_BY_LAST, _WILDCARD = _index()


def candidates(path: str) -> tuple[Route, ...]:
    """The routes that may match `path`, most specific first."""
    last = path[path.rfind("/") + 1:]
    found = _BY_LAST.get(last)
    if found is None:
        colon = last.rfind(":")
        if colon >= 0:
            found = _BY_LAST.get(last[colon:])
    return _WILDCARD if found is None else found


def match(method: str, path: str, headers: dict, query: dict
          ) -> tuple[ModuleType | None, Route | None, dict[str, str]]:
    """(format, route, path parameters) for `method path`.

    The route is None when the path is known but not for this method (answer
    405 in that format) and the format is None too when no shape fits (404).
    """
    known = None
    for route in candidates(path):
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
