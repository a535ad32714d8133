"""What an upstream response reader hands the exchange: aperture's own events,
whatever parses the bytes (llhttp through httptools, or h11 in the twin).

A response is one `ResponseHead`, then `BodyChunk`s, then `END`. Informational
(1xx) heads never appear: the readers skip them. Nothing of httptools or h11
leaves `aperture/upstream/` (STYLE.md, habit 7).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, eq=True)
class ResponseHead:
    """The final response head. `headers` keeps the order and repetitions of
    the wire; names are lowercased, values have no surrounding whitespace."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class BodyChunk:
    """Body bytes, as they arrived (never empty; only the framing is removed)."""

    data: bytes


class EndOfMessage:
    """The response is complete (its trailers, if any, were read and dropped)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = EndOfMessage()
