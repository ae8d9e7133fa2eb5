"""Pure rules of the write side: which agent frames are kept, how a terminal event ends a run."""

from __future__ import annotations

import json

import pytest

from broker.web.sse import ServerSentEvent
from broker.write.agent_frames import interpret_frame
from broker.write.run_stream import ending_of
from models.agent_api import AgentIntegration, RunRequest
from models.events import (
    Cancelled,
    CancelledData,
    ChatMessage,
    Complete,
    CompleteData,
    ErrorData,
    ErrorEvent,
    Text,
    TextData,
)
from models.ids import RunId, ThreadId, new_id


def _frame(data: str, id: str | None = "1") -> ServerSentEvent:
    return ServerSentEvent(data=data, id=id)


def test_a_valid_frame_becomes_its_typed_event() -> None:
    event = interpret_frame(_frame('{"event_type":"text","data":{"text":"hi"}}'))
    assert event == Text(data=TextData(text="hi"))


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        '{"event_type":"text"',
        '{"event_type":"telepathy","data":{}}',
        '{"event_type":"text","data":{"txt":"typo"}}',
        '{"event_type":"text","data":{"text":"hi"},"extra":1}',
        "[]",
        "",
    ],
)
def test_malformed_or_unknown_frames_are_dropped(data: str) -> None:
    assert interpret_frame(_frame(data)) == "malformed"


def test_the_agent_may_not_write_broker_events() -> None:
    data = json.dumps({"event_type": "run_started", "data": {"run_id": "r", "thread_id": "t"}})
    assert interpret_frame(_frame(data)) == "broker_only"


def test_an_id_too_long_to_resume_from_is_dropped() -> None:
    data = '{"event_type":"text","data":{"text":"hi"}}'
    assert interpret_frame(_frame(data, id="9" * 201)) == "bad_id"
    assert isinstance(interpret_frame(_frame(data, id="9" * 200)), Text)


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
def test_an_event_over_the_byte_limit_is_oversized_counting_utf8_bytes(char: str) -> None:
    def frame_of(count: int) -> ServerSentEvent:
        return _frame(
            json.dumps({"event_type": "text", "data": {"text": char * count}}, ensure_ascii=False)
        )

    size = len(char.encode())
    empty = len(frame_of(0).data.encode())
    limit = empty + 40 * size
    assert isinstance(interpret_frame(frame_of(40), max_bytes=limit), Text)
    assert interpret_frame(frame_of(41), max_bytes=limit) == "oversized"
    assert interpret_frame(_frame("not even json" * 10), max_bytes=10) == "oversized"
    assert isinstance(interpret_frame(frame_of(41)), Text)  # no limit given: none applies


def test_complete_ends_a_run_completed_with_its_messages() -> None:
    said = [ChatMessage(role="assistant", content="42")]
    ending = ending_of(Complete(data=CompleteData(new_messages=said)))
    assert ending is not None
    assert (ending.status, ending.messages) == ("completed", tuple(said))


def test_error_ends_a_run_failed_with_values_that_fit_the_columns() -> None:
    ending = ending_of(ErrorEvent(data=ErrorData(error="bad\x00thing", error_type="x" * 300)))
    assert ending is not None
    assert ending.status == "failed"
    assert ending.error == "badthing"  # PostgreSQL text cannot hold NUL
    assert ending.error_type == "x" * 100


def test_producer_lost_interrupts_a_run_and_no_other_error_type_does() -> None:
    lost = ending_of(ErrorEvent(data=ErrorData(error="gone", error_type="producer_lost")))
    assert lost is not None
    assert (lost.status, lost.error_type) == ("interrupted", "producer_lost")
    for other in ("agent_unavailable", "producer_lost ", "PRODUCER_LOST", ""):
        ending = ending_of(ErrorEvent(data=ErrorData(error="x", error_type=other)))
        assert ending is not None
        assert ending.status == "failed", other


def test_cancelled_ends_a_run_cancelled_by_whoever_cancelled_it() -> None:
    ending = ending_of(Cancelled(data=CancelledData(by="member-1")))
    assert ending is not None
    assert (ending.status, ending.aborted_by) == ("cancelled", "member-1")


def test_other_events_do_not_end_a_run() -> None:
    assert ending_of(Text(data=TextData(text="hi"))) is None


def test_agent_request_body_matches_the_agent_contract() -> None:
    run_id, thread_id = RunId(new_id()), ThreadId(new_id())
    body = RunRequest(
        run_id=str(run_id),
        thread_id=str(thread_id),
        history=[ChatMessage(role="user", content="q"), ChatMessage(role="assistant", content="a")],
        new_user_message="next",
        integrations=[AgentIntegration(id="i1", kind="postgres", name="shop")],
        capability="cap.sig",
    ).model_dump(mode="json")
    assert body == {
        "run_id": str(run_id),
        "thread_id": str(thread_id),
        "history": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "new_user_message": "next",
        "integrations": [{"id": "i1", "kind": "postgres", "name": "shop"}],
        "capability": "cap.sig",
    }
