"""`Period`: a time range named in a question, anchored on the DATA, not on the clock.

A demo database seeded once does not move with the calendar, so "last month"
means the last full calendar month before the latest timestamp in the table,
as an analyst would read it. `find_period(question)` recognises the phrase;
`Period.bounds(latest)` turns it into a half-open range `[start, end)` of
dates, with a description that the answer quotes. Absolute periods
("in 2024", "in March 2025") need no anchor. Pure: no I/O.

Recognised: last/previous/this month, week, year; last N days/weeks/months;
today, yesterday; in YYYY; in <month name> YYYY.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["Bounds", "Period", "date_of", "find_period"]

_MONTHS: Final = tuple(dt.date(2000, month, 1).strftime("%B").lower() for month in range(1, 13))
_RELATIVE: Final = re.compile(
    r"\b(last|previous|past|this|current)\s+(month|week|year)\b", re.IGNORECASE
)
_LAST_N: Final = re.compile(
    r"\b(?:last|past|previous)\s+(\d{1,4})\s+(day|week|month)s?\b", re.IGNORECASE
)
_DAY: Final = re.compile(r"\b(today|yesterday)\b", re.IGNORECASE)
_MONTH_YEAR: Final = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{4})\b", re.IGNORECASE)
_YEAR: Final = re.compile(r"\b(?:in|during|for|of)\s+((?:19|20)\d{2})\b", re.IGNORECASE)

Unit = Literal["day", "week", "month", "year"]


@dataclass(frozen=True, slots=True)
class Bounds:
    """Dates `[start, end)` and how the answer names them."""

    start: dt.date
    end: dt.date
    description: str


@dataclass(frozen=True, slots=True)
class Period:
    """A named period: `back` whole `unit`s before the anchor's, or `last_n` units up to it."""

    phrase: str
    unit: Unit
    back: int = 0
    last_n: int = 0
    absolute: dt.date | None = None

    @property
    def relative(self) -> bool:
        """Whether the range depends on the latest timestamp in the data."""
        return self.absolute is None

    def bounds(self, latest: dt.date | None) -> Bounds:
        """The range; `latest` is the date of the latest timestamp (ignored if absolute)."""
        if self.absolute is not None:
            start = self.absolute
            end = _add(start, self.unit, 1)
            return Bounds(start, end, f"{_name(start, self.unit)} ({_span(start, end)})")
        if latest is None:
            raise ValueError("a relative period needs the latest date in the data")
        if self.last_n:
            end = latest + dt.timedelta(days=1)
            start = _add(end, self.unit, -self.last_n)
            return Bounds(
                start,
                end,
                f"the {self.last_n} {self.unit}s up to the latest date in the data "
                f"({_span(start, end)})",
            )
        current = _floor(latest, self.unit)
        start = _add(current, self.unit, -self.back)
        end = _add(start, self.unit, 1)
        anchor = f"the latest date in the data, {latest.isoformat()}"
        if self.back == 0:
            end = latest + dt.timedelta(days=1)
            how = f"{self.unit} to date, up to {anchor}"
        elif self.unit == "day":
            how = f"the day before {anchor}"
        else:
            how = f"the last full calendar {self.unit} before {anchor}"
        return Bounds(start, end, f"{_name(start, self.unit)} ({_span(start, end)}, {how})")


def find_period(question: str) -> Period | None:
    """The period the question names, if any."""
    if (m := _LAST_N.search(question)) is not None:
        unit: Unit = m.group(2).lower()  # type: ignore[assignment]
        return Period(m.group(0), unit, last_n=int(m.group(1))) if int(m.group(1)) else None
    if (m := _RELATIVE.search(question)) is not None:
        unit = m.group(2).lower()  # type: ignore[assignment]
        back = 0 if m.group(1).lower() in ("this", "current") else 1
        return Period(m.group(0), unit, back=back)
    if (m := _DAY.search(question)) is not None:
        return Period(m.group(0), "day", back=1 if m.group(1).lower() == "yesterday" else 0)
    if (m := _MONTH_YEAR.search(question)) is not None:
        month = _MONTHS.index(m.group(1).lower()) + 1
        return Period(m.group(0), "month", absolute=dt.date(int(m.group(2)), month, 1))
    if (m := _YEAR.search(question)) is not None:
        return Period(m.group(0), "year", absolute=dt.date(int(m.group(1)), 1, 1))
    return None


def date_of(value: object) -> dt.date | None:
    """The (UTC) date of an ISO timestamp or date as a query returns it; None if not one."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC)
        return parsed.date()
    return None


def _floor(day: dt.date, unit: Unit) -> dt.date:
    if unit == "year":
        return day.replace(month=1, day=1)
    if unit == "month":
        return day.replace(day=1)
    if unit == "week":
        return day - dt.timedelta(days=day.weekday())
    return day


def _add(day: dt.date, unit: Unit, count: int) -> dt.date:
    if unit == "day":
        return day + dt.timedelta(days=count)
    if unit == "week":
        return day + dt.timedelta(weeks=count)
    months = count * (12 if unit == "year" else 1)
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    # Clamp the day (31 March - 1 month = 28/29 February).
    for last_day in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month + 1, min(day.day, last_day))
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has 28 days")


def _name(start: dt.date, unit: Unit) -> str:
    if unit == "year":
        return str(start.year)
    if unit == "month":
        return start.strftime("%B %Y")
    if unit == "week":
        return f"the week of {start.isoformat()}"
    return start.isoformat()


def _span(start: dt.date, end: dt.date) -> str:
    last = end - dt.timedelta(days=1)
    return start.isoformat() if last == start else f"{start.isoformat()} to {last.isoformat()}"
