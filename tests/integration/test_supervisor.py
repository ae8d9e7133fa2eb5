"""`broker.supervisor` with real processes but no database: lock, records, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from broker.supervisor import STATE_FILE, Child, Refused, Stopped, Supervisor, describe_port
from tests.e2e.up_harness import free_port


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process that must survive whatever the supervisor does."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_a_second_supervisor_on_the_same_directory_is_refused_with_the_first_pid(
    tmp_path: Path,
) -> None:
    refused = rf"another `broker up` \(pid {os.getpid()}\)"
    with Supervisor(tmp_path), pytest.raises(Refused, match=refused):
        Supervisor(tmp_path).__enter__()
    with Supervisor(tmp_path):  # released on exit
        pass


def test_a_recorded_pid_now_used_by_another_process_is_left_alone(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    started = psutil.Process(sleeper.pid).create_time()
    record = {"name": "agent service", "pid": sleeper.pid, "started": started - 100}
    (tmp_path / STATE_FILE).write_text(json.dumps({"supervisor": 1, "children": [record]}))
    with Supervisor(tmp_path):
        assert sleeper.poll() is None
    assert not (tmp_path / STATE_FILE).exists()


@pytest.mark.parametrize("content", ["", "{", '{"children": [{"pid": "x"}]}', "[]"])
def test_a_damaged_record_is_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / STATE_FILE).write_text(content)
    with Supervisor(tmp_path):
        assert not (tmp_path / STATE_FILE).exists()


def test_signals_are_recorded_then_stop_start_up(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGHUP)
    with Supervisor(tmp_path) as supervisor:
        supervisor.check()
        os.kill(os.getpid(), signal.SIGHUP)  # recorded, not raised
        assert supervisor.signals == [signal.SIGHUP]
        with pytest.raises(Stopped):
            supervisor.check()
        assert supervisor.run() == 0
    assert signal.getsignal(signal.SIGHUP) == previous


def test_a_child_that_exits_on_its_own_ends_the_run_with_1(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as supervisor:
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        supervisor.children.append(Child("agent service", process, 5))
        assert supervisor.run() == 1


def test_a_child_that_never_becomes_ready_is_refused_and_stopped(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as supervisor, pytest.raises(Refused, match="exited with code 2"):
        supervisor.start(
            "agent service", ["--no-such-option"], dict(os.environ), ready=lambda c: False
        )
    assert supervisor.children == []


def test_describe_port_tells_free_from_taken(sleeper: subprocess.Popen[bytes]) -> None:
    port = free_port()
    assert describe_port(port) is None
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while describe_port(port) is None:
            assert server.poll() is None
        assert describe_port(port) == {}  # answers, but not JSON: an unknown program
    finally:
        server.kill()
        server.wait()
