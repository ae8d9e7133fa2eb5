"""Content negotiation on `Accept` (design 4.2), q-values included."""

from __future__ import annotations

import pytest

from subscribe.errors import NotAcceptable
from subscribe.negotiation import Format, MediaRange, negotiate, parse_accept


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, Format.SSE),
        ("", Format.SSE),
        ("*/*", Format.SSE),
        ("text/event-stream", Format.SSE),
        ("application/x-ndjson", Format.NDJSON),
        ("application/json", Format.JSON),
        ("text/markdown", Format.MARKDOWN),
        ("text/plain", Format.PLAIN),
        ("TEXT/PLAIN; charset=utf-8", Format.PLAIN),
        ("application/*", Format.NDJSON),
        ("text/*", Format.SSE),
        ("application/json, text/event-stream;q=0.5", Format.JSON),
        ("text/event-stream;q=0.1, text/plain;q=0.9", Format.PLAIN),
        ("*/*;q=0.1, text/markdown", Format.MARKDOWN),
        # The browser's default for a navigation: the HTML it lacks, then anything.
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", Format.SSE),
        # A more specific range decides, even when it lowers the quality.
        ("text/event-stream;q=0, */*", Format.NDJSON),
        ("image/png, application/json;q=0.2", Format.JSON),
        ("application/json;q=bogus, text/plain", Format.PLAIN),
    ],
)
def test_the_best_offer_wins(accept: str | None, expected: Format) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize(
    "accept",
    [
        "image/png",
        "application/xml",
        "text/html",
        "*/*;q=0",
        "application/json;q=0",
        "nonsense",
        "application/json;q=2",
        "application/json;q=bogus",
    ],
)
def test_nothing_acceptable_is_refused(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept)


def test_malformed_ranges_are_left_out() -> None:
    assert parse_accept("text/plain;q=0.5, garbage, */json, a/b;q=1.0001, */*") == [
        MediaRange("text", "plain", 0.5),
        MediaRange("*", "*", 1.0),
    ]
