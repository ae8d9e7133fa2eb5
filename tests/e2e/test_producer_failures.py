"""A misbehaving agent: every run still ends with exactly one terminal event, and no junk."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from broker.store.postgres import Store
from broker.web.capability import verify_capability
from broker.web.settings import Settings
from tests.e2e.producer_harness import Stack, broker_and_agent, unbound_url
from tests.fakes.agent import DROP, Raw, Step, complete, error, event, text


async def _run(
    stack: Stack, message: str, *steps: Step, failures: list[int] | None = None
) -> tuple[str, list[Any], Any]:
    """Script the agent, start a run, wait for its end: (run_id, event types, runs row)."""
    stack.fake.script(message, *steps, failures=failures)
    run_id = (await stack.start_run(await stack.new_thread(), message))["run_id"]
    await stack.finished(run_id)
    events = await stack.events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    return run_id, events, await stack.run_row(run_id)


def _types(events: list[Any]) -> list[str]:
    return [e.event.event_type for e in events]


async def test_5xx_before_the_first_event_is_retried_until_the_agent_answers(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        _, events, row = await _run(
            stack, "flaky", text("ok"), complete("ok"), failures=[503, 500, 502]
        )
        assert stack.fake.attempts["flaky"] == 4
    assert _types(events) == ["run_started", "text", "complete"]
    assert (row.status, row.agent_cursor) == ("completed", "2")


async def test_an_agent_that_always_answers_5xx_ends_the_run_with_agent_unavailable(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        _, events, row = await _run(stack, "down", complete("never"), failures=[503] * 10)
        assert stack.fake.attempts["down"] == 5  # the bounded schedule: 5 tries in all
    assert _types(events) == ["run_started", "error"]
    assert events[-1].event.data.error_type == "agent_unavailable"
    assert (row.status, row.error_type, row.writer_id) == ("failed", "agent_unavailable", None)


async def test_a_refused_connection_ends_the_run_with_agent_unavailable(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store, agent_url=unbound_url()) as stack:
        _, events, row = await _run(stack, "nobody home")
    assert _types(events) == ["run_started", "error"]
    assert (row.status, row.error_type) == ("failed", "agent_unavailable")
    assert "unreachable" in row.error


async def test_a_4xx_is_not_retried_and_ends_the_run_with_agent_rejected(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        _, events, row = await _run(stack, "bad request", complete("x"), failures=[400])
        assert stack.fake.attempts["bad request"] == 1
    assert _types(events) == ["run_started", "error"]
    assert row.error_type == "agent_rejected"


async def test_a_409_means_the_agent_already_runs_it_so_the_broker_reattaches(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        run_id, events, row = await _run(
            stack, "in flight", text("a"), complete("a"), failures=[409]
        )
        (reattached,) = [c for c in stack.fake.calls if c.path == f"/runs/{run_id}/stream"]
        # A re-attach hands the run's tools a fresh capability for the same run.
        secret = settings.require(settings.secret, "BROKER_SECRET")
        granted = verify_capability(secret, reattached.headers["x-run-capability"])
        assert (str(granted.run_id), granted.workspace_id) == (run_id, stack.workspace_id)
    assert _types(events) == ["run_started", "text", "complete"]
    assert row.status == "completed"


async def test_a_stream_that_ends_without_a_terminal_event_is_agent_stream_truncated(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        run_id, events, row = await _run(stack, "truncated", text("a"), text("b"))
        assert run_id in stack.fake.cancelled  # the agent is told to stop working on it
    assert _types(events) == ["run_started", "text", "text", "error"]
    assert (row.status, row.error_type, row.agent_cursor) == (
        "failed",
        "agent_stream_truncated",
        "2",
    )


async def test_a_stream_that_breaks_off_mid_run_is_agent_stream_failed(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        run_id, events, row = await _run(stack, "cut", text("a"), DROP)
        assert run_id in stack.fake.cancelled
    assert _types(events) == ["run_started", "text", "error"]
    assert (row.status, row.error_type) == ("failed", "agent_stream_failed")


async def test_malformed_and_unknown_frames_are_dropped_and_the_run_goes_on(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        _, events, row = await _run(
            stack,
            "noisy",
            text("a"),
            Raw(b"data: {not json\n\n"),
            Raw(b'data: {"event_type":"telepathy","data":{}}\n\n'),
            Raw(b'data: {"event_type":"run_started","data":{"run_id":"x","thread_id":"y"}}\n\n'),
            Raw(b'data: {"event_type":"text","data":{"text":"half a fr'),
            Raw(b'ame"}}\n\n'),  # split across chunks: one valid event
            Raw(b": keepalive\n\n"),
            text("b"),
            complete("ab"),
        )
        assert stack.metric("broker_events_dropped_total") == 3
        assert stack.metric("broker_events_received_total") == 7
    assert _types(events) == ["run_started", "text", "text", "text", "complete"]
    assert [e.event.data.text for e in events[1:4]] == ["a", "half a frame", "b"]
    assert (row.status, row.last_seq) == ("completed", 5)


async def test_frames_after_the_terminal_event_are_not_stored(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        _, events, row = await _run(
            stack, "chatty", error("model fell over"), text("zombie"), complete("zombie")
        )
    assert _types(events) == ["run_started", "error"]
    assert (row.status, row.error, row.error_type) == ("failed", "model fell over", "model_error")


async def test_an_agent_cancelled_event_ends_the_run_cancelled(
    settings: Settings, store: Store
) -> None:
    async with broker_and_agent(settings, store) as stack:
        _, events, row = await _run(stack, "stop", text("a"), event("cancelled", by="agent"))
    assert _types(events) == ["run_started", "text", "cancelled"]
    assert (row.status, row.aborted_by) == ("cancelled", "agent")


async def test_a_50_mb_event_is_refused_counted_and_the_run_completes(
    settings: Settings, store: Store
) -> None:
    huge = text("x" * 50 * 1024 * 1024)
    async with broker_and_agent(settings, store) as stack:
        with capture_logs() as logs:
            _, events, row = await _run(
                stack, "huge", text("before "), huge, text("after"), complete("before after")
            )
        metrics = stack.app.state.metrics.render().decode()
    assert _types(events) == ["run_started", "text", "text", "complete"]
    assert [e.event.data.text for e in events[1:3]] == ["before ", "after"]
    assert row.status == "completed"
    assert "broker_events_oversized_total 1.0" in metrics
    (dropped,) = [e for e in logs if e["event"] == "agent_event_dropped"]
    assert dropped["reason"] == "oversized"
    assert dropped["size"] > settings.max_event_bytes
    assert "xxxx" not in repr(dropped)  # the refusal is logged, never its content
