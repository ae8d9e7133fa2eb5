"""The flush-timing decision and the backoff schedule, as plain arithmetic."""

from __future__ import annotations

import itertools

import pytest

from broker.write.batching import Backoff, next_flush_at

INTERVAL = 0.1


def test_first_event_ever_is_flushed_at_once() -> None:
    assert next_flush_at(now=5.0, pending=True, last_started=None, interval=INTERVAL) == 5.0


def test_first_event_after_an_idle_spell_is_flushed_at_once() -> None:
    assert next_flush_at(now=5.0, pending=True, last_started=4.0, interval=INTERVAL) == 5.0


def test_under_load_the_next_flush_waits_an_interval_after_the_previous_started() -> None:
    # The previous flush started 30 ms ago (and has ended): wait the remaining 70 ms.
    at = next_flush_at(now=5.03, pending=True, last_started=5.0, interval=INTERVAL)
    assert at == pytest.approx(5.1)


def test_a_flush_that_took_longer_than_the_interval_is_followed_at_once() -> None:
    assert next_flush_at(now=5.25, pending=True, last_started=5.0, interval=INTERVAL) == 5.25


def test_interval_zero_is_group_commit() -> None:
    assert next_flush_at(now=5.001, pending=True, last_started=5.0, interval=0) == 5.001


def test_nothing_pending_and_no_lease_to_renew_waits_for_events() -> None:
    assert next_flush_at(now=5.0, pending=False, last_started=4.9, interval=INTERVAL) is None


def test_a_due_lease_renewal_makes_a_flush_without_events() -> None:
    at = next_flush_at(now=5.0, pending=False, last_started=1.0, interval=INTERVAL, renew_due=7.0)
    assert at == 7.0


def test_renewal_does_not_delay_pending_events() -> None:
    at = next_flush_at(now=5.0, pending=True, last_started=1.0, interval=INTERVAL, renew_due=9.0)
    assert at == 5.0


def test_nothing_starts_before_the_retry_time_after_a_failure() -> None:
    at = next_flush_at(
        now=5.0, pending=True, last_started=4.99, interval=INTERVAL, retry_at=5.4, renew_due=5.2
    )
    assert at == 5.4


def _simulate(arrivals: list[float], interval: float, flush_s: float) -> list[float]:
    """Drive the decision like the flush loop does; return when each flush started."""
    starts: list[float] = []
    pending = 0
    now = 0.0
    last: float | None = None
    index = 0
    while index < len(arrivals) or pending:
        at = next_flush_at(now=now, pending=pending > 0, last_started=last, interval=interval)
        upcoming = arrivals[index] if index < len(arrivals) else None
        if at is not None and (upcoming is None or at <= upcoming):
            now = max(now, at)
            starts.append(now)
            last, pending = now, 0
            now += flush_s
            # Events that arrived during the flush are pending for the next one.
            while index < len(arrivals) and arrivals[index] <= now:
                index, pending = index + 1, pending + 1
        else:
            assert upcoming is not None
            now = max(now, upcoming)
            index, pending = index + 1, pending + 1
    return starts


def test_2000_events_over_one_second_take_about_ten_flushes() -> None:
    arrivals = [i / 2000 for i in range(2000)]
    starts = _simulate(arrivals, interval=0.1, flush_s=0.005)
    assert 10 <= len(starts) <= 12
    assert starts[0] == 0.0  # the first event did not wait for an interval


def test_sparse_events_are_each_flushed_on_arrival() -> None:
    arrivals = [0.0, 0.5, 1.0, 1.5]
    assert _simulate(arrivals, interval=0.1, flush_s=0.005) == arrivals


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    assert [backoff.delay(n, rand=lambda: 1.0) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    assert backoff.delay(10_000, rand=lambda: 1.0) == 1.0


def test_backoff_jitter_stays_between_half_and_the_full_delay() -> None:
    backoff = Backoff(base=0.4, cap=10)
    assert backoff.delay(1, rand=lambda: 0.0) == pytest.approx(0.2)
    assert backoff.delay(1, rand=lambda: 0.999) == pytest.approx(0.3998)


def test_bounded_backoff_yields_one_delay_between_each_pair_of_tries() -> None:
    assert len(list(Backoff(base=0.01, attempts=5).delays())) == 4
    assert list(Backoff(attempts=1).delays()) == []


def test_unbounded_backoff_never_runs_out() -> None:
    delays = list(itertools.islice(Backoff(base=0.01, cap=0.05).delays(), 100))
    assert len(delays) == 100
    assert max(delays) <= 0.05
