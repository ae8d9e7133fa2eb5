"""`broker up` as a user runs it: the installed console script, a subprocess, real signals.

`UpProcess.start(data_dir)` launches `broker up` in a session of its own (as a
terminal would: `ctrl_c()` signals the whole foreground process group) on free
ports, and waits for its banner. `tree()` lists what it runs: its children and
the embedded PostgreSQL's postmaster (which is not a child: pg_ctl detaches it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from broker.web.auth import COOKIE_NAME

__all__ = [
    "BROKER",
    "UpProcess",
    "free_port",
    "postmaster_pid",
    "up_data_dir",
    "up_env",
    "wait_gone",
]

BROKER = str(Path(sys.executable).with_name("broker"))  # the venv's console script
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def up_data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents may be mode 0700, which the server's own
    # user (pgserver runs PostgreSQL as another user under root) cannot traverse.
    with tempfile.TemporaryDirectory(prefix="broker-test-up-") as root:
        yield Path(root) / "data"


def up_env(data_dir: Path) -> dict[str, str]:
    """The environment of a user with nothing configured but the data directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("BROKER_", "AGENT_", "ANTHROPIC_")) or k == "DATABASE_URL")
    }
    env["BROKER_DATA_DIR"] = str(data_dir)
    env["AGENT_SCRIPTED_DELAY_MS"] = "1"
    return env


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid in the embedded server's postmaster.pid, if that process runs."""
    try:
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


def wait_gone(pids: list[int], timeout: float = STOP_TIMEOUT_S) -> list[int]:
    """Wait until none of `pids` runs; return those still running at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class UpProcess:
    data_dir: Path
    port: int
    agent_port: int
    process: subprocess.Popen[str]
    out: Path
    err: Path
    banner: list[str] = field(default_factory=list)

    @classmethod
    def launch(
        cls,
        data_dir: Path,
        *,
        port: int | None = None,
        agent_port: int | None = None,
        extra: list[str] | None = None,
    ) -> UpProcess:
        """Start `broker up` without waiting for anything."""
        data_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        agent_port = agent_port or free_port()
        logs = Path(tempfile.mkdtemp(prefix="broker-up-logs-"))
        out, err = logs / "stdout", logs / "stderr"
        command = [BROKER, "up", "--port", str(port), "--agent-port", str(agent_port)]
        with open(out, "w") as stdout, open(err, "w") as stderr:
            process = subprocess.Popen(
                [*command, *(extra or [])],
                env=up_env(data_dir),
                stdout=stdout,
                stderr=stderr,
                text=True,
                start_new_session=True,  # its own foreground group, as in a terminal
            )
        return cls(data_dir, port, agent_port, process, out, err)

    @classmethod
    def start(cls, data_dir: Path, **kwargs: object) -> UpProcess:
        """Start `broker up` and wait until it has printed its banner."""
        up = cls.launch(data_dir, **kwargs)  # type: ignore[arg-type]
        deadline = time.monotonic() + START_TIMEOUT_S
        while "stop:" not in up.stdout():
            if up.process.poll() is not None:
                raise AssertionError(f"broker up exited {up.process.returncode}: {up.stderr()}")
            if time.monotonic() > deadline:
                up.process.kill()
                raise AssertionError(f"no banner in time: {up.stdout()} {up.stderr()}")
            time.sleep(0.2)
        up.banner = up.stdout().splitlines()
        return up

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def banner_value(self, key: str) -> str:
        for line in self.banner:
            if line.startswith(f"{key}:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"no {key!r} in the banner: {self.banner}")

    def tree(self) -> list[int]:
        """Every process of this `broker up`: itself, its descendants, the postmaster."""
        pids = [self.process.pid]
        pids += [child.pid for child in psutil.Process(self.process.pid).children(recursive=True)]
        postmaster = postmaster_pid(self.data_dir)
        if postmaster is not None:
            pids.append(postmaster)
        return pids

    def child_commands(self) -> list[str]:
        return [
            " ".join(child.cmdline())
            for child in psutil.Process(self.process.pid).children(recursive=True)
        ]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        return self.process.wait(timeout)

    def login(self) -> str:
        """Open the banner's one-time link as a browser does; return the session token.

        The link answers 303 with the session cookie, the page answers 200 with
        it, and a second use of the link is refused.
        """
        link = self.banner_value("open").split()[0]
        assert link.startswith(f"{self.base_url}/login?code="), link
        with httpx.Client(timeout=30) as browser:
            answer = browser.get(link)
            assert answer.status_code == 303, answer.text
            cookie = answer.cookies[COOKIE_NAME]
            page = browser.get(f"{self.base_url}/")  # the client keeps the cookie, as a browser
            assert page.status_code == 200, page.text
            assert "<html" in page.text.lower()
            assert browser.get(link).status_code == 401  # once only
        return cookie

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def kill_all(self) -> None:
        """Last-resort cleanup for a failed test: nothing survives it."""
        for pid in self.tree():
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
