"""When to flush, and how long to wait before trying again: pure timing decisions.

The flush loop (`broker/write/streams.py`) asks `next_flush_at` what to do and
sleeps until then; nothing here reads a clock or touches I/O, so the rules of
design §9 "Flushing" are unit-tested as plain arithmetic:

- one flush in flight at a time (the loop is sequential, so the function is
  only asked between flushes);
- with events pending, the next flush starts `interval` after the previous
  one *started*, or at once if that moment has passed — so after an idle
  spell the first event is written at once, and under load the batch size
  grows with the rate instead of the flush rate growing with it;
- `interval == 0` is group commit: flush whenever the previous one ended;
- a backlog (the previous flush left events behind, cut by its bounds) is
  flushed at once: the bounds split a batch, they do not slow the drain;
- leases are renewed by flushes too, so a run with nothing to write still
  makes a (small) flush happen when its renewal is due;
- after a failed flush, nothing starts before the retry time.

`Backoff` is the shared retry schedule (exponential, capped, jittered) of a
failed flush and of an agent that refuses a run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from broker.store.records import PendingEvent

__all__ = ["Backoff", "Pending", "next_flush_at", "take_counts"]

_K = TypeVar("_K", bound=Hashable)


class _Sized(Protocol):
    @property
    def size(self) -> int: ...


def next_flush_at(
    *,
    now: float,
    pending: bool,
    last_started: float | None,
    interval: float,
    backlog: bool = False,
    renew_due: float | None = None,
    retry_at: float | None = None,
) -> float | None:
    """The time the next flush should start (≤ `now`: at once), or None for "wait for events".

    `last_started` is when the previous flush started (None: never), `backlog`
    whether it left events behind (cut by its bounds), `renew_due` the
    earliest moment a lease must be renewed, `retry_at` the end of the backoff
    after a failed flush.
    """
    due: float | None = None
    if pending:
        due = now if last_started is None or backlog else max(now, last_started + interval)
    if renew_due is not None:
        due = renew_due if due is None else min(due, renew_due)
    if due is not None and retry_at is not None:
        due = max(due, retry_at)
    return due


@dataclass(slots=True)
class Pending:
    """A run's events waiting for the next flush, in seq order."""

    events: list[PendingEvent] = field(default_factory=list)

    @property
    def agent_event_id(self) -> str | None:
        """The agent's SSE id of the newest event that has one."""
        ids = (e.agent_event_id for e in reversed(self.events))
        return next((agent_id for agent_id in ids if agent_id is not None), None)


def take_counts(
    pending: Mapping[_K, Sequence[_Sized]], *, max_events: int, max_bytes: int
) -> dict[_K, int]:
    """How many of each run's oldest events the next flush takes, within its bounds.

    `pending` maps runs, in order, to their events oldest first. Runs are
    taken in order; the answer names every run reached, the last one possibly
    cut (fewer than all its events, even 0 when its first event would break the
    byte bound); runs not named were not reached. At least one event is taken,
    however large, and never more than `max_events` nor, past the first event,
    more than `max_bytes` of `size`.
    """
    counts: dict[_K, int] = {}
    count = size = 0
    for run_id, events in pending.items():
        if count >= max_events:
            break
        n = 0
        for item in events:
            if count + n >= max_events or (count + n > 0 and size + item.size > max_bytes):
                break
            size += item.size
            n += 1
        counts[run_id] = n
        count += n
        if n < len(events):
            break
    return counts


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: `base * 2**n` capped at `cap`, each delay jittered to 50 to 100 %.

    The jitter keeps the replicas of a fleet (or the runs of one broker) from
    retrying in lockstep after a shared outage; the lower half is cut off so a
    delay is never much shorter than the schedule promises.
    """

    base: float = 0.1
    cap: float = 5.0
    attempts: int | None = None
    """How many tries in all (the first one included); None: unbounded."""

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after the `failures`-th consecutive failure (1 → about `base`)."""
        exponent = min(max(failures - 1, 0), 60)  # past the cap long before; no huge ints
        ceiling = min(self.cap, self.base * float(2**exponent))
        return ceiling * (0.5 + rand() / 2)

    def delays(self, rand: Callable[[], float] = random.random) -> Iterator[float]:
        """The waits between tries: `attempts - 1` of them (endless if unbounded)."""
        failures = 0
        while self.attempts is None or failures < self.attempts - 1:
            failures += 1
            yield self.delay(failures, rand)
