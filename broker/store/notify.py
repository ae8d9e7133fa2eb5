"""The one owner of the NOTIFY wake-ups: their channels and payloads.

Two channels: `raw_stream_events` says "run R has rows up to seq S" (payload
`run_id:seq`, for the tails of the read side); `run_cancel` says "a member
asked to cancel run R" (payload `run_id:member`, for the run's producer on
whichever replica writes it).

NOTIFY is a wake-up, the table is the truth: a payload says "run R has rows up
to seq S"; a lost or malformed one costs latency, never data. The format is
one template, `PAYLOAD_TEMPLATE`, which Python's `%` and PostgreSQL's
`format()` read the same way, so the SQL of the flush is handed the template
as a parameter instead of writing the format a second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Final

from models.ids import RunId

__all__ = [
    "CANCEL_CHANNEL",
    "CANCEL_TEMPLATE",
    "NOTIFY_CHANNEL",
    "PAYLOAD_TEMPLATE",
    "cancel_payload",
    "notify_payload",
    "notify_payloads",
    "parse_cancel",
    "parse_notify",
]

NOTIFY_CHANNEL: Final = "raw_stream_events"
"""The LISTEN/NOTIFY channel of flushed events."""

PAYLOAD_TEMPLATE: Final = "%s:%s"
"""`run_id:last_seq`, for Python's `%` and PostgreSQL's `format()` alike."""

CANCEL_CHANNEL: Final = "run_cancel"
"""The LISTEN/NOTIFY channel of cancel requests; the flag in `runs` is the truth."""

CANCEL_TEMPLATE: Final = "%s:%s"
"""`run_id:member`: a UUID has no colon, so the member id may hold any character."""


def notify_payload(run_id: uuid.UUID, seq: int) -> str:
    """The wake-up of run `run_id` whose rows now reach `seq`."""
    return PAYLOAD_TEMPLATE % (run_id, seq)


def notify_payloads(pairs: Iterable[tuple[RunId, int]]) -> list[str]:
    """One wake-up per run among `(run_id, seq)` pairs, at its highest seq."""
    heads: dict[RunId, int] = {}
    for run_id, seq in pairs:
        heads[run_id] = max(seq, heads.get(run_id, 0))
    return [notify_payload(run_id, seq) for run_id, seq in heads.items()]


def parse_notify(payload: str) -> tuple[RunId, int] | None:
    """`run_id:last_seq` back to its parts; None for anything malformed."""
    run_id, _, seq = payload.partition(":")
    try:
        return RunId(uuid.UUID(run_id)), int(seq)
    except ValueError:
        return None


def cancel_payload(run_id: uuid.UUID, by: str) -> str:
    """The cancel wake-up of run `run_id`, asked for by member `by`."""
    return CANCEL_TEMPLATE % (run_id, by)


def parse_cancel(payload: str) -> tuple[RunId, str] | None:
    """`run_id:member` back to its parts; None for anything malformed."""
    run_id, colon, by = payload.partition(":")
    if not colon:
        return None
    try:
        return RunId(uuid.UUID(run_id)), by
    except ValueError:
        return None
