"""Follow-up questions: "And the month before?" read against the thread's history.

`standalone(questions)` takes the user's messages of a thread in order (the
last one being the question to answer) and returns that question as a
standalone one: a follow-up that shifts or names a period is the previous
data question with its period replaced ("How many orders were placed last
month?" then "And the month before?" -> "... placed 2 months ago?"). A
follow-up it cannot resolve is returned as is; `is_follow_up` tells the model
to treat it as a data question anyway, so it answers with what can be asked
rather than small talk. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Final

from agents.periods import Period, find_period

__all__ = ["asks_for_data", "is_follow_up", "standalone"]

_DATA_WORDS: Final = re.compile(
    r"\b(data|rows?|records?|query|queries|table|tables|sql|select|count|database|"
    r"how many|how much|average|total|sum|top|most|least|which|list|show|spent|spend|"
    r"sales|revenue|monthly|number of|per|by)\b",
    re.IGNORECASE,
)
_LEAD: Final = re.compile(
    r"^\s*(?:and|what about|how about|same for|same but|now|then)\b", re.IGNORECASE
)
_UNIT: Final = r"(day|week|month|year)"
_SHIFT: Final = re.compile(
    rf"\b{_UNIT}\s+(?:before|prior|earlier)\b|\b(?:previous|prior|preceding)\s+(?:one|{_UNIT})\b",
    re.IGNORECASE,
)


def asks_for_data(text: str) -> bool:
    """Whether a message asks for data (rows, counts, a query...)."""
    return _DATA_WORDS.search(text) is not None


def is_follow_up(text: str) -> bool:
    """Whether a message only makes sense after an earlier question ("And last year?")."""
    return _LEAD.search(text) is not None or _SHIFT.search(text) is not None


def standalone(questions: Sequence[str]) -> str:
    """The last of `questions` (a thread's user messages, oldest first), made standalone.

    Returns "" for no questions; the last question unchanged when it is not a
    follow-up or cannot be resolved.
    """
    previous: str | None = None
    current = ""
    for text in questions:
        current = _resolve(text.strip(), previous)
        if asks_for_data(current):
            previous = current
    return current


def _resolve(text: str, previous: str | None) -> str:
    if previous is None or asks_for_data(text) or not is_follow_up(text):
        return text
    earlier = find_period(previous)
    if earlier is None:
        return text
    own = find_period(text)
    shift = _SHIFT.search(text)
    # "the previous month" after a question is the one before its period, not "last month".
    if shift is not None:
        unit = (shift.group(1) or shift.group(2) or earlier.unit).lower()
        phrase = _one_back(earlier) if unit == earlier.unit else None
    else:
        phrase = own.phrase if own is not None else None
    if phrase is None:
        return text
    return previous.replace(earlier.phrase, phrase, 1)


def _one_back(period: Period) -> str | None:
    """The phrase for the period one unit before `period`, or None (a "last N days" span)."""
    if period.last_n:
        return None
    if period.absolute is not None:
        if period.unit == "year":
            return period.phrase.replace(str(period.absolute.year), str(period.absolute.year - 1))
        start = (period.absolute - dt.timedelta(days=1)).replace(day=1)
        return start.strftime("%B %Y")
    back = period.back + 1
    if back == 1:
        return "yesterday" if period.unit == "day" else f"last {period.unit}"
    return f"{back} {period.unit}s ago"
