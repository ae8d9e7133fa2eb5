"""`broker up`'s supervisor: the broker and the agent service as child processes.

One `broker up` owns one data directory, and everything it starts:

- **A lock** (`<data dir>/up.lock`, `flock`) held for the supervisor's life: a
  second `broker up` on the same directory is refused, naming the first one's
  pid. The kernel drops the lock when the process dies, even by `kill -9`.
- **A record of its children** (`<data dir>/up.json`: pid and start time of
  each). It exists only while children run, so finding one at start means the
  last supervisor died without stopping them; those still alive (same pid,
  same start time) are stopped before anything else starts.
- **Ports checked before use**: a port that answers already is refused with a
  message saying what answered. Once the agent child listens, its `/healthz`
  must report this data directory's instance id (derived from the local
  secret) and the child's own pid, so an unknown process on the agent port is
  never used.
- **Children in their own process groups**, so a terminal's Ctrl-C reaches
  only the supervisor, which stops them in order: the broker first (it
  flushes and hands its runs over), then the agent service. On Linux they
  also get SIGTERM if the supervisor itself dies.

SIGINT, SIGTERM and SIGHUP are recorded, not raised: start-up steps check the
flag between steps, and a running system is stopped in order. A second signal
while stopping kills what is left. A child that exits on its own stops the
rest, and `broker up` exits 1.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import httpx
import psutil
import structlog

__all__ = ["Child", "Refused", "Stopped", "Supervisor", "describe_port"]

log = structlog.get_logger(__name__)

LOCK_FILE = "up.lock"
STATE_FILE = "up.json"
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_S = 0.1
_PR_SET_PDEATHSIG = 1


class Refused(Exception):
    """`broker up` cannot start safely; the message says why and what to do."""


class Stopped(Exception):
    """A stop signal arrived during start-up."""


@dataclass
class Child:
    """A child process the supervisor started (its own process group leader)."""

    name: str
    process: subprocess.Popen[bytes]
    stop_timeout_s: float
    started: float = 0.0
    """The process's start time (seconds since the epoch): with the pid, its identity."""

    @property
    def pid(self) -> int:
        return self.process.pid


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to send SIGTERM to this child when the supervisor dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_port(port: int, host: str = "127.0.0.1") -> dict[str, object] | None:
    """None when nothing listens on `port`; else what its `GET /healthz` says (`{}`: no answer)."""
    try:
        answer = httpx.get(f"http://{host}:{port}/healthz", timeout=2)
    except httpx.ConnectError:
        return None
    except httpx.HTTPError:
        return {}
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Supervisor:
    """Owns the data directory's lock, the signal handlers and the children (a context)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.children: list[Child] = []
        self.signals: list[int] = []
        self._lock: int | None = None
        self._previous: dict[int, object] = {}

    # --- entering and leaving ------------------------------------------------------------

    def __enter__(self) -> Supervisor:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        try:
            self._stop_stale_children()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_children()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            if self._lock is not None:
                os.close(self._lock)  # releases the flock

    def _take_lock(self) -> None:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Refused(
                f"another `broker up` (pid {holder}) is running with the data directory "
                f"{self.data_dir}; stop it first, or set BROKER_DATA_DIR to another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock = fd

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        if len(self.signals) > 1:  # a second signal: no more waiting
            for child in self.children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)

    @property
    def stopping(self) -> bool:
        """True once SIGINT, SIGTERM or SIGHUP arrived."""
        return bool(self.signals)

    def check(self) -> None:
        """Raise `Stopped` if a stop signal arrived (start-up calls this between steps)."""
        if self.stopping:
            raise Stopped

    # --- stale children of an earlier supervisor ------------------------------------------

    def _stop_stale_children(self) -> None:
        state = self.data_dir / STATE_FILE
        try:
            recorded = json.loads(state.read_text())["children"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = []
        for entry in recorded:
            with contextlib.suppress(psutil.Error, KeyError, TypeError, ValueError):
                process = psutil.Process(int(entry["pid"]))
                if abs(process.create_time() - float(entry["started"])) > 0.01:
                    continue  # the pid was reused by an unrelated process
                log.warning("stale_child_stopped", child=entry["name"], pid=process.pid)
                print(
                    f"stopping the {entry['name']} (pid {process.pid}) left running by an "
                    "earlier `broker up`",
                    file=sys.stderr,
                )
                process.terminate()
                try:
                    process.wait(10)
                except psutil.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        state.unlink(missing_ok=True)

    def _write_state(self) -> None:
        children = [{"name": c.name, "pid": c.pid, "started": c.started} for c in self.children]
        state = self.data_dir / STATE_FILE
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor": os.getpid(), "children": children}))
        os.replace(tmp, state)

    # --- ports -----------------------------------------------------------------------------

    def require_free(self, port: int, what: str, option: str, instance: str | None = None) -> None:
        """Refuse to start when something answers on `port` already, saying what it is."""
        found = describe_port(port)
        if found is None:
            return
        if instance is not None and found.get("instance") == instance:
            raise Refused(
                f"port {port} is taken by an agent service of this data directory that this "
                f"`broker up` did not start (pid {found.get('pid', '?')}): stop it, or choose "
                f"another port with {option}"
            )
        raise Refused(
            f"port {port} is already in use by another program; {what} cannot listen there. "
            f"Stop that program, or choose another port with {option}"
        )

    # --- children --------------------------------------------------------------------------

    def start(
        self,
        name: str,
        arguments: list[str],
        env: dict[str, str],
        *,
        ready: Callable[[Child], bool],
        stop_timeout_s: float = 10,
        start_timeout_s: float = 60,
    ) -> Child:
        """Start `broker <arguments>` as child `name`; return once `ready(child)` is true."""
        self.check()
        process = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", *arguments],
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        child = Child(name, process, stop_timeout_s)
        self.children.append(child)
        with contextlib.suppress(psutil.Error):
            child.started = psutil.Process(process.pid).create_time()
        self._write_state()
        deadline = time.monotonic() + start_timeout_s
        while not ready(child):
            self.check()
            if process.poll() is not None:
                raise Refused(f"the {name} exited with code {process.returncode} at start")
            if time.monotonic() > deadline:
                raise Refused(f"the {name} did not become ready in {start_timeout_s:.0f} s")
            time.sleep(_POLL_S)
        log.info("child_started", child=name, pid=child.pid)
        return child

    def run(self) -> int:
        """Wait for a stop signal (0) or a child's own exit (1); children keep running."""
        while not self.stopping:
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    print(
                        f"the {child.name} exited on its own (code {code}); stopping everything",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(_POLL_S)
        return 0

    def stop_children(self) -> None:
        """Stop every child, the last started first; forget them."""
        for child in reversed(self.children):
            self._stop(child)
        self.children.clear()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def _stop(self, child: Child) -> None:
        """SIGTERM to the child's process group; SIGKILL after its timeout."""
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.process.wait(child.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("child_killed", child=child.name, pid=child.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.process.wait()
        log.info("child_stopped", child=child.name, code=child.process.returncode)
