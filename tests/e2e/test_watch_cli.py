"""`broker watch` and `broker ask` as a user runs them: real processes, a real pty, real servers.

The final screen is read through `pyte`, a terminal emulator, so "the answer appears once"
is what a person would see after the live display has been replaced by the final print.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.client import BrokerClient
from broker.store.postgres import Store
from broker.web.settings import Settings
from tests.e2e.client_harness import PtyProcess, System, running_system

BROKER = str(Path(sys.executable).parent / "broker")


@pytest.fixture
async def system(settings: Settings, store: Store, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(settings, store, tmp_path / "reader-data") as running:
        yield running


def bench(events: int, rate: int) -> str:
    return f"bench events={events} rate={rate} size=9"


def assert_answer_once(text: str, events: int) -> None:
    """Every bench label 0..N-1 exactly once, in order, and the run shown as completed."""
    labels = re.findall(r"(?<![-\w])\d{8}(?![-\w])", text)
    assert labels == [f"{i:08d}" for i in range(events)], text
    assert text.count("● completed") == 1, text


async def start_run(system: System, message: str) -> str:
    async with BrokerClient(system.broker_url, system.token) as client:
        thread = await client.create_thread()
        return (await client.start_run(thread.thread_id, message)).run_id


async def run_piped(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        BROKER, *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_ask_in_a_terminal_shows_the_answer_and_exits_0(system: System) -> None:
    events = 40
    pty = PtyProcess([BROKER, "ask", bench(events, 100)], env=system.cli_env())
    await pty.start()
    try:
        await pty.wait_for("00000003")
        assert await pty.wait() == 0
    finally:
        pty.close()
    assert_answer_once(pty.text(), events)
    assert "Traceback" not in pty.raw.decode(errors="replace")


async def test_watch_survives_the_reading_broker_killed_and_restarted(system: System) -> None:
    events = 120
    reader = system.reader()
    await reader.start()
    run_id = await start_run(system, bench(events, 40))
    pty = PtyProcess([BROKER, "watch", run_id], env=system.cli_env(reader.url))
    await pty.start()
    try:
        await pty.wait_for("00000005")
        await pty.wait_for("● live")
        async with BrokerClient(system.broker_url, system.token) as client:
            assert (await client.run(run_id)).status == "streaming"
        await reader.kill()
        await pty.wait_for("● reconnecting")
        await reader.start()
        assert await pty.wait() == 0
    finally:
        pty.close()
        await reader.stop()
    assert_answer_once(pty.text(), events)


async def test_ctrl_c_leaves_cleanly_with_exit_130(system: System) -> None:
    run_id = await start_run(system, bench(2000, 20))
    pty = PtyProcess([BROKER, "watch", run_id], env=system.cli_env())
    await pty.start()
    try:
        await pty.wait_for("● live")
        pty.interrupt()
        assert await pty.wait() == 130
    finally:
        pty.close()
    output = pty.raw.decode(errors="replace")
    assert "Traceback" not in output
    assert "interrupted" in pty.text()


async def test_watch_of_a_finished_run_prints_the_whole_transcript_and_exits_0(
    system: System,
) -> None:
    events = 25
    run_id = await start_run(system, bench(events, 500))
    async with BrokerClient(system.broker_url, system.token) as client:
        [s async for s in client.events(run_id)]  # wait for the end
    code, out, err = await run_piped("watch", run_id, env=system.cli_env())
    assert (code, err) == (0, "")
    assert_answer_once(out, events)
    code, out, err = await run_piped(
        "watch", run_id, "--plain", "--cursor", "20", env=system.cli_env()
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["seq"] for line in lines] == list(range(21, events + 3))
    assert lines[-1]["event_type"] == "complete"


async def test_watch_from_the_end_of_a_finished_run_has_nothing_due_and_exits_0(
    system: System,
) -> None:
    run_id = await start_run(system, bench(2, 500))
    async with BrokerClient(system.broker_url, system.token) as client:
        [s async for s in client.events(run_id)]  # wait for the end
        last_seq = (await client.run(run_id)).last_seq
        assert [s async for s in client.events(run_id, last_seq + 5)] == []
    for cursor in (str(last_seq), str(last_seq + 100), "now"):
        code, out, err = await run_piped(
            "watch", run_id, "--plain", "--cursor", cursor, env=system.cli_env()
        )
        assert (code, out) == (0, ""), (cursor, err)
        assert "gave up" not in err


async def test_plain_output_into_a_pipe_closed_early_exits_0_without_traceback(
    system: System,
) -> None:
    run_id = await start_run(system, bench(2000, 50))
    read_end, write_end = os.pipe()
    process = await asyncio.create_subprocess_exec(
        BROKER,
        "watch",
        run_id,
        "--plain",
        env=system.cli_env(),
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:  # the reader takes one line and leaves
        first = await asyncio.to_thread(reader.readline)
    assert json.loads(first)["event_type"] == "run_started"
    assert process.stderr is not None
    err = await asyncio.wait_for(process.stderr.read(), timeout=60)
    assert await process.wait() == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err


async def test_ask_plain_on_a_given_thread_writes_ndjson(system: System) -> None:
    async with BrokerClient(system.broker_url, system.token) as client:
        thread_id = (await client.create_thread()).thread_id
    code, out, err = await run_piped(
        "ask", bench(3, 500), "--thread", thread_id, "--plain", env=system.cli_env()
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["event_type"] == "run_started"
    assert lines[0]["data"]["thread_id"] == thread_id
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]


async def test_bad_or_missing_token_is_a_clear_message_and_exit_2(system: System) -> None:
    run_id = await start_run(system, bench(1, 500))
    env = system.cli_env()
    code, _, err = await run_piped("watch", run_id, "--token", "forged", env=env)
    assert code == 2
    assert "refused the token" in err and "Traceback" not in err
    code, _, err = await run_piped("ask", "hello", "--token", "forged", env=env)
    assert code == 2 and "refused the token" in err
    del env["BROKER_TOKEN"]
    code, _, err = await run_piped("watch", run_id, env=env)
    assert code == 2 and "no token" in err
    assert "`broker token --workspace default`" in err  # `broker up` prints a login link


async def test_unknown_run_or_thread_is_a_clear_message_and_exit_2(system: System) -> None:
    unknown = str(uuid.uuid4())
    code, _, err = await run_piped("watch", unknown, env=system.cli_env())
    assert code == 2
    assert "not found" in err and "Traceback" not in err
    code, _, err = await run_piped("ask", "hello", "--thread", unknown, env=system.cli_env())
    assert code == 2 and "not found" in err
    code, _, err = await run_piped("watch", unknown, "--cursor", "soon", env=system.cli_env())
    assert code == 2 and "invalid_cursor" in err
