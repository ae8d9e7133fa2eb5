"""`broker up` driven as a user does: the venv's console script, real signals, real processes.

Each test checks the process tree afterwards: the supervisor, the broker and
agent children, and the embedded PostgreSQL's postmaster must all be gone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from broker.supervisor import STATE_FILE
from broker.web.settings import Settings
from models.agent_api import agent_instance
from tests.e2e.up_harness import (
    BROKER,
    UpProcess,
    free_port,
    postmaster_pid,
    up_data_dir,
    up_env,
    wait_gone,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with up_data_dir() as path:
        yield path


@pytest.fixture
def ups() -> Iterator[list[UpProcess]]:
    """Every `broker up` a test starts; killed, with all it runs, if the test failed."""
    started: list[UpProcess] = []
    yield started
    for up in started:
        if up.process.poll() is None:
            up.kill_all()
            up.process.wait(30)
    for up in started:
        pid = postmaster_pid(up.data_dir)
        if pid is not None:
            psutil.Process(pid).terminate()


def _start(ups: list[UpProcess], data_dir: Path, **kwargs: object) -> UpProcess:
    up = UpProcess.start(data_dir, **kwargs)
    ups.append(up)
    return up


def _stop_and_check(up: UpProcess, signum: int | None) -> None:
    """Signal `up` (None: Ctrl-C) and check it exits 0 leaving no process or port behind."""
    tree = up.tree()
    assert len(tree) == 4, (tree, up.child_commands())  # supervisor, broker, agent, postmaster
    if signum is None:
        up.ctrl_c()
    else:
        up.signal(signum)
    assert up.wait() == 0, up.stderr()
    assert wait_gone(tree) == []
    assert postmaster_pid(up.data_dir) is None
    for port in (up.port, up.agent_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert not (up.data_dir / STATE_FILE).exists()
    assert "stopped: broker, agent service and database." in up.stdout()


def _token(up: UpProcess) -> str:
    """A session from the banner's login link (its cookie is a bearer token)."""
    return up.login()


def _start_run(http: httpx.Client, message: str) -> str:
    thread = http.post("/api/threads", json={"title": "up"})
    assert thread.status_code == 201, thread.text
    run = http.post(f"/api/threads/{thread.json()['thread_id']}/runs", json={"message": message})
    assert run.status_code == 202, run.text
    run_id: str = run.json()["run_id"]
    return run_id


@dataclass
class Viewer:
    """An SSE subscriber in a thread: the data lines it saw and how its stream ended."""

    http: httpx.Client
    run_id: str
    events: list[dict[str, object]] = field(default_factory=list)
    ended: str = ""
    thread: threading.Thread | None = None

    def start(self) -> Viewer:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        try:
            with self.http.stream(
                "POST", f"/api/runs/{self.run_id}/subscribe", json={"cursor": None}
            ) as answer:
                for line in answer.iter_lines():
                    if line.startswith("data:"):
                        self.events.append(json.loads(line[5:]))
            self.ended = "closed"
        except httpx.HTTPError as exc:
            self.ended = f"cut: {type(exc).__name__}"

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)


def _wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# --- signals ----------------------------------------------------------------------------


def test_sigterm_leaves_nothing_and_the_next_up_starts_cleanly_and_sighup_too(
    data_dir: Path, ups: list[UpProcess]
) -> None:
    first = _start(ups, data_dir)
    assert any("broker.cli agents" in c for c in first.child_commands())
    assert any("broker.cli serve" in c for c in first.child_commands())
    _stop_and_check(first, signal.SIGTERM)

    second = _start(ups, data_dir, port=first.port, agent_port=first.agent_port)
    with second.client(_token(second)) as http:
        assert http.get("/readyz").status_code == 200
    _stop_and_check(second, signal.SIGHUP)


@dataclass
class CtrlC:
    """Ctrl-C to a `broker up` whose run has three viewers attached, and what followed."""

    up: UpProcess
    viewers: list[Viewer]
    error: str = ""


@pytest.fixture(scope="module")
def ctrl_c() -> Iterator[CtrlC]:
    """The scenario runs once; the tests below check different parts of its outcome."""
    with up_data_dir() as data_dir:
        up = UpProcess.start(data_dir)
        try:
            with up.client(_token(up)) as http:
                run_id = _start_run(http, "bench events=5000 rate=100 size=8")
                viewers = [Viewer(http, run_id).start() for _ in range(3)]
                _wait_for(lambda: all(len(v.events) >= 5 for v in viewers))
                outcome = CtrlC(up, viewers)
                try:
                    _stop_and_check(up, None)
                except AssertionError as exc:
                    outcome.error = str(exc)
                for viewer in viewers:
                    viewer.join(10)
                yield outcome
        finally:
            if up.process.poll() is None:
                up.kill_all()
                up.process.wait(30)


def test_ctrl_c_with_viewers_attached_leaves_nothing_and_ends_every_stream(ctrl_c: CtrlC) -> None:
    assert ctrl_c.error == ""
    for viewer in ctrl_c.viewers:
        assert viewer.ended, "a viewer's stream is still open after broker up exited"
        assert viewer.events  # it was live when Ctrl-C came


def test_ctrl_c_with_viewers_attached_logs_no_traceback(ctrl_c: CtrlC) -> None:
    log = ctrl_c.up.stderr() + ctrl_c.up.stdout()
    assert "Traceback" not in log, log
    assert "CancelledError" not in log, log
    assert "graceful shutdown exceeded" not in log, log
    for viewer in ctrl_c.viewers:
        assert viewer.ended == "closed"  # a clean end, not a cut connection


def test_login_link_a_run_a_second_up_and_broker_token_alongside_then_sigint(
    data_dir: Path, ups: list[UpProcess]
) -> None:
    up = _start(ups, data_dir)
    with up.client(_token(up)) as http:
        run_id = _start_run(http, "How many customers do we have?")
        viewer = Viewer(http, run_id).start()
        viewer.join(60)
        assert viewer.ended == "closed"
        assert viewer.events[-1]["event_type"] == "complete", viewer.events[-3:]
        assert http.get(f"/api/runs/{run_id}").json()["status"] == "completed"

        second = UpProcess.launch(data_dir)
        ups.append(second)
        assert second.wait() == 1
        assert f"another `broker up` (pid {up.process.pid})" in second.stderr()
        assert http.get("/readyz").status_code == 200  # the first one is untouched

    # `broker token` next to it joins the shared database and stops nothing.
    postmaster = postmaster_pid(data_dir)
    env = {**up_env(data_dir), "BROKER_LOG_LEVEL": "info"}
    done = subprocess.run(
        [BROKER, "token", "--workspace", "side"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "embedded_postgres_joined" in done.stderr
    assert "embedded_postgres_started" not in done.stderr
    assert "embedded_postgres_stopped" not in done.stderr
    assert postmaster_pid(data_dir) == postmaster
    with up.client(done.stdout.strip()) as http:
        assert http.post("/api/threads", json={"title": "side"}).status_code == 201
        assert http.get("/readyz").status_code == 200
    _stop_and_check(up, signal.SIGINT)


# --- the embedded database is shared: only what a command really did ---------------------


def test_postgres_left_by_a_killed_up_is_adopted_then_stopped(
    data_dir: Path, ups: list[UpProcess]
) -> None:
    first = _start(ups, data_dir)
    children = [p.pid for p in psutil.Process(first.process.pid).children(recursive=True)]
    postmaster = postmaster_pid(data_dir)
    first.process.kill()  # kill -9: no chance to clean up
    first.wait()
    assert wait_gone(children) == []  # the children die with their supervisor
    assert postmaster_pid(data_dir) == postmaster  # the detached postmaster does not

    second = _start(ups, data_dir, extra=["--verbose"])
    assert "embedded_postgres_adopted" in second.stderr()
    assert postmaster_pid(data_dir) == postmaster
    _stop_and_check(second, signal.SIGTERM)


# --- stale and unknown processes on the ports ---------------------------------------------


class _Squatter:
    """Some other program answering HTTP on a port."""

    def __init__(self, port: int) -> None:
        self.process = subprocess.Popen(
            ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: _answers(port), timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.mark.parametrize("which", ["agent", "broker"])
def test_an_unknown_process_on_a_port_is_refused_with_a_clear_message(
    data_dir: Path, ups: list[UpProcess], which: str
) -> None:
    port, agent_port = free_port(), free_port()
    squatter = _Squatter(agent_port if which == "agent" else port)
    try:
        up = UpProcess.launch(data_dir, port=port, agent_port=agent_port)
        ups.append(up)
        assert up.wait() == 1
        option = "--agent-port" if which == "agent" else "--port"
        taken = agent_port if which == "agent" else port
        assert f"port {taken} is already in use by another program" in up.stderr()
        assert option in up.stderr()
        assert "Traceback" not in up.stderr()
        assert postmaster_pid(data_dir) is None  # refused before starting anything
        assert squatter.process.poll() is None  # and the other program is left alone
    finally:
        squatter.stop()


def _stray_agent(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """`broker agents` of this data directory, started by hand (or left by a dead `up`)."""
    secret = Settings(BROKER_DATA_DIR=data_dir).with_secrets().local_secret
    assert secret is not None
    env = {**up_env(data_dir), "BROKER_LOCAL_SECRET": secret.get_secret_value()}
    agent = subprocess.Popen([BROKER, "agents", "--port", str(port)], env=env)
    _wait_for(lambda: _answers(port), timeout=60)
    body = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
    assert body["instance"] == agent_instance(secret.get_secret_value())
    return agent


def test_an_agent_left_by_an_earlier_up_is_stopped_and_one_not_recorded_is_refused(
    data_dir: Path, ups: list[UpProcess]
) -> None:
    data_dir.mkdir(parents=True)
    agent_port = free_port()
    stray = _stray_agent(data_dir, agent_port)
    try:
        # Not recorded by any `broker up`: refused, naming it.
        refused = UpProcess.launch(data_dir, agent_port=agent_port)
        ups.append(refused)
        assert refused.wait() == 1
        assert "agent service of this data directory" in refused.stderr()
        assert f"pid {stray.pid}" in refused.stderr()
        assert stray.poll() is None

        # Recorded by a supervisor that died without stopping it: stopped, then replaced.
        started = psutil.Process(stray.pid).create_time()
        record = {"name": "agent service", "pid": stray.pid, "started": started}
        (data_dir / STATE_FILE).write_text(json.dumps({"supervisor": 1, "children": [record]}))
        up = _start(ups, data_dir, agent_port=agent_port)
        assert stray.wait(30) is not None
        assert f"stopping the agent service (pid {stray.pid})" in up.stderr()
        body = httpx.get(f"http://127.0.0.1:{agent_port}/healthz").json()
        assert body["pid"] in [p.pid for p in psutil.Process(up.process.pid).children()]
        _stop_and_check(up, signal.SIGTERM)
    finally:
        if stray.poll() is None:
            stray.kill()
