"""The NOTIFY wake-up's one format: built and parsed in one module."""

from __future__ import annotations

import uuid

import pytest

from broker.store.notify import (
    CANCEL_CHANNEL,
    NOTIFY_CHANNEL,
    PAYLOAD_TEMPLATE,
    cancel_payload,
    notify_payload,
    notify_payloads,
    parse_cancel,
    parse_notify,
)
from models.ids import RunId


def test_a_payload_round_trips() -> None:
    run_id = RunId(uuid.uuid4())
    assert notify_payload(run_id, 42) == f"{run_id}:42"
    assert parse_notify(notify_payload(run_id, 42)) == (run_id, 42)


def test_one_wake_up_per_run_at_its_highest_seq() -> None:
    a, b = RunId(uuid.uuid4()), RunId(uuid.uuid4())
    payloads = notify_payloads([(a, 2), (b, 7), (a, 5), (a, 3)])
    assert sorted(map(parse_notify, payloads), key=str) == sorted([(a, 5), (b, 7)], key=str)
    assert notify_payloads([]) == []


@pytest.mark.parametrize(
    "payload", ["", "garbage", "not-a-uuid:3", f"{uuid.uuid4()}:", f"{uuid.uuid4()}:x", ":5"]
)
def test_anything_malformed_parses_to_none(payload: str) -> None:
    assert parse_notify(payload) is None


def test_the_template_reads_the_same_in_python_and_postgresql_format() -> None:
    # PostgreSQL's format() takes %s like Python's %: the flush hands it this template.
    assert PAYLOAD_TEMPLATE.count("%s") == 2 and "%" not in PAYLOAD_TEMPLATE.replace("%s", "")


def test_a_cancel_payload_round_trips_whatever_the_member_id_holds() -> None:
    run_id = RunId(uuid.uuid4())
    for member in ("alice", "a:b:c", "", "ünï code"):
        assert parse_cancel(cancel_payload(run_id, member)) == (run_id, member)


@pytest.mark.parametrize(
    "payload", ["", "garbage", "not-a-uuid:alice", ":alice", str(uuid.uuid4())]
)
def test_a_malformed_cancel_payload_parses_to_none(payload: str) -> None:
    assert parse_cancel(payload) is None


def test_the_two_channels_differ() -> None:
    assert CANCEL_CHANNEL != NOTIFY_CHANNEL
