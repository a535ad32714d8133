"""The meter: one framing × one dialect (twin of `native/src/meter.rs`; the
rules are documented in `aperture/_native.pyi`)."""

from __future__ import annotations

from aperture._pure.extract import Tally, _dialects
from aperture._pure.framing import _framings

_FRAMINGS = _framings()
_DIALECTS = _dialects()


class Meter:
    """Usage and tool calls read off a response as its bytes pass."""

    __slots__ = ("_framing", "_dialect", "_tally", "_finished")

    def __init__(self, framing: str, dialect: str) -> None:
        if not isinstance(framing, str) or not isinstance(dialect, str):
            raise TypeError("framing and dialect must be str")
        f = _FRAMINGS.get(framing)
        if f is None:
            raise ValueError(_unknown("framing", framing, _FRAMINGS))
        d = _DIALECTS.get(dialect)
        if d is None:
            raise ValueError(_unknown("dialect", dialect, _DIALECTS))
        self._framing = f()
        self._dialect = d()
        self._tally = Tally()
        self._finished = False

    def feed(self, chunk: bytes) -> None:
        """Read the next chunk (bytes read in place, bytearray copied). Never
        raises on bad input; ignored after finish()."""
        data = chunk if type(chunk) is bytes else bytes(memoryview(chunk))
        if not self._finished:
            self._framing.feed(data, self._dialect, self._tally)

    def finish(self) -> None:
        """The body ended (idempotent)."""
        if not self._finished:
            self._finished = True
            self._framing.finish(self._dialect, self._tally)

    def usage(self) -> tuple[int, int, int, int, int]:
        """(input, output, cache_read, cache_write, reasoning)"""
        u = self._tally.usage
        return (u[0], u[1], u[2], u[3], u[4])

    def tool_calls(self) -> list[tuple[str, str]]:
        """(name, arguments JSON text) of each tool call, in order."""
        return self._tally.tool_calls()

    @property
    def complete(self) -> bool:
        return self._framing.complete(self._tally)

    @property
    def events(self) -> int:
        return self._tally.events

    @property
    def bad_events(self) -> int:
        return self._tally.bad_events

    @property
    def error(self) -> str | None:
        return self._tally.error

    @property
    def response_id(self) -> str | None:
        return self._tally.response_id


def _unknown(what: str, name: str, known: dict) -> str:
    return f"unknown meter {what}: '{name}' (expected one of {', '.join(known)})"
