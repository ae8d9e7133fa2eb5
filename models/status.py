"""A run's status, and the one mapping between terminal events and final statuses.

    run_started ──▶ streaming ──▶ complete  ──▶ completed
                                  error     ──▶ failed
                                  cancelled ──▶ cancelled
                                  error (producer_lost) ──▶ interrupted (a run given up)

The write side reads the table left to right (a stored terminal event ends
the run with its status); the read side right to left (a run whose rows are
gone is shown with the terminal event its status stands for).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "ACTIVE_STATUSES",
    "PRODUCER_LOST",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "RunStatus",
    "TerminalEventType",
    "event_type_of_status",
    "status_of_event_type",
]

RunStatus = Literal["pending", "streaming", "completed", "failed", "cancelled", "interrupted"]
TerminalEventType = Literal["complete", "error", "cancelled"]

RUN_STATUSES: Final[tuple[RunStatus, ...]] = get_args(RunStatus)
ACTIVE_STATUSES: Final[frozenset[RunStatus]] = frozenset({"pending", "streaming"})
TERMINAL_STATUSES: Final[frozenset[RunStatus]] = frozenset(RUN_STATUSES) - ACTIVE_STATUSES

_STATUS_OF: Final[dict[str, RunStatus]] = {
    "complete": "completed",
    "error": "failed",
    "cancelled": "cancelled",
}
_EVENT_OF: Final[dict[RunStatus, TerminalEventType]] = {
    "completed": "complete",
    "failed": "error",
    "cancelled": "cancelled",
    "interrupted": "error",
}


PRODUCER_LOST: Final = "producer_lost"
"""The `error_type` of a run given up: nobody can produce it any more (status `interrupted`)."""


def status_of_event_type(event_type: str, error_type: str | None = None) -> RunStatus | None:
    """The final status a terminal event gives its run; None for any other event.

    An `error` whose `error_type` is `producer_lost` interrupts the run rather than failing it.
    """
    if event_type == "error" and error_type == PRODUCER_LOST:
        return "interrupted"
    return _STATUS_OF.get(event_type)


def event_type_of_status(status: RunStatus) -> TerminalEventType | None:
    """The terminal event a finished run is shown with; None while it is active."""
    return _EVENT_OF.get(status)
