"""A buffered event keeps its JSON; only a terminal one keeps its parsed model."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from broker.store.records import PendingEvent
from broker.web.heap import THRESHOLDS, startup_heap_frozen
from models.events import ChatMessage, Complete, CompleteData, Text, TextData
from models.ids import RunId, new_id


def test_a_non_terminal_event_is_kept_as_its_json_and_parsed_again_equal() -> None:
    event = Text(data=TextData(text="héllo \u2028 world"))
    pending = PendingEvent(RunId(new_id()), 2, event, datetime.now(UTC), "a1")
    assert pending.body == event.model_dump_json().encode()
    assert pending.size == len(pending.body)
    assert (pending.event_type, pending.terminal) == ("text", False)
    assert pending.event == event and pending.event is not event  # parsed again
    assert not any(referent is event for referent in gc.get_referents(pending))


def test_a_terminal_event_keeps_its_model_for_the_run_s_ending() -> None:
    answer = ChatMessage(role="assistant", content="done")
    event = Complete(data=CompleteData(new_messages=[answer]))
    pending = PendingEvent(RunId(new_id()), 3, event, datetime.now(UTC))
    assert pending.terminal and pending.event is event


def test_the_heap_is_frozen_and_the_thresholds_raised_only_while_serving() -> None:
    before = gc.get_threshold()
    with startup_heap_frozen():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
