"""Content negotiation on `Accept` (design 4.2), without I/O.

The broker offers, in its order of preference: `text/event-stream`,
`application/x-ndjson`, `application/json`, `text/markdown`, `text/plain`.
Each offer takes the quality of the most specific media range that matches
it (`type/subtype` over `type/*` over `*/*`, RFC 9110 §12.5.1); the highest
quality wins and ties go to the broker's order, so `*/*` or no header at
all gets the event stream. A range with a malformed `q` is ignored rather
than guessed at; nothing acceptable is `NotAcceptable` (406).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from subscribe.errors import NotAcceptable

__all__ = ["Format", "MediaRange", "negotiate", "parse_accept"]

_Q: Final = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


class Format(enum.Enum):
    """What a subscription can answer in, by media type."""

    SSE = "text/event-stream"
    NDJSON = "application/x-ndjson"
    JSON = "application/json"
    MARKDOWN = "text/markdown"
    PLAIN = "text/plain"


@dataclass(frozen=True, slots=True)
class MediaRange:
    type: str
    subtype: str
    q: float

    def specificity(self, media_type: str) -> int:
        """How specifically this range names `media_type`: 2, 1, 0; -1 if it does not."""
        kind, _, sub = media_type.partition("/")
        if self.type == kind and self.subtype == sub:
            return 2
        if self.type == kind and self.subtype == "*":
            return 1
        if self.type == "*" and self.subtype == "*":
            return 0
        return -1


def parse_accept(header: str) -> list[MediaRange]:
    """The media ranges of an `Accept` header; malformed ones are left out."""
    ranges: list[MediaRange] = []
    for part in header.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        kind, slash, sub = media.lower().partition("/")
        if not slash or not kind or not sub or (kind == "*" and sub != "*"):
            continue
        q = 1.0
        valid = True
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                valid = _Q.fullmatch(value) is not None
                q = float(value) if valid else 0.0
        if valid:
            ranges.append(MediaRange(kind, sub, q))
    return ranges


def _quality(offer: Format, ranges: list[MediaRange]) -> float:
    best = -1
    quality = 0.0
    for media_range in ranges:
        specificity = media_range.specificity(offer.value)
        if specificity > best:
            best, quality = specificity, media_range.q
    return quality


def negotiate(accept: str | None) -> Format:
    """The format to answer in, or `NotAcceptable` if the client accepts none of them."""
    if accept is None or not accept.strip():
        return Format.SSE
    ranges = parse_accept(accept)
    chosen: Format | None = None
    chosen_q = 0.0
    for offer in Format:
        q = _quality(offer, ranges)
        if q > chosen_q:
            chosen, chosen_q = offer, q
    if chosen is None:
        offered = ", ".join(offer.value for offer in Format)
        raise NotAcceptable(f"cannot answer {accept[:100]!r}; offered: {offered}")
    return chosen
