"""Real processes and sockets for the client's and the CLI's end-to-end tests.

- `System`: the agent service (scripted model) and a *producing* broker, both uvicorn
  servers on loopback, on one test database, with a bearer token.
- `BrokerProcess`: a *reading* broker, a real `broker serve` subprocess on the same
  database, which a test may SIGKILL and restart on the same port while a run streams.
  (Until runs are taken over after a restart, the producing broker must stay up.)
- `CuttingProxy`: a loopback TCP proxy that drops each connection after a seeded random
  number of bytes from the server.
- `PtyProcess`: a command on a pseudo-terminal, its output fed to a `pyte` screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pyte

from agents.app import create_app as create_agent_app
from agents.settings import AgentSettings
from broker.app import create_app
from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from tests.servers import serve

__all__ = [
    "BrokerProcess",
    "CuttingProxy",
    "PtyProcess",
    "System",
    "free_port",
    "run_env",
    "running_system",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `broker` subprocess sharing the test's database and secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "DATABASE_"))}
    env.update(
        DATABASE_URL=settings.database_url or "",
        BROKER_DATA_DIR=str(data_dir),
        BROKER_SECRET=settings.require(settings.secret, "BROKER_SECRET"),
        BROKER_ENCRYPTION_KEYS=settings.require(settings.encryption_keys, "BROKER_ENCRYPTION_KEYS"),
        BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        AGENT_URL=settings.agent_url,
        BROKER_LOG_LEVEL="warning",
    )
    env.update(extra)
    return env


@dataclass
class System:
    """A producing broker at `broker_url`; `settings` also serve reading brokers."""

    broker_url: str
    token: str
    settings: Settings
    data_dir: Path

    def reader(self) -> BrokerProcess:
        return BrokerProcess(run_env(self.settings, self.data_dir))

    def cli_env(self, url: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "DATABASE_"))}
        return {**env, "BROKER_URL": url or self.broker_url, "BROKER_TOKEN": self.token}


@contextlib.asynccontextmanager
async def running_system(settings: Settings, store: Store, data_dir: Path) -> AsyncIterator[System]:
    """The agent service and a producing broker on loopback, and a token for `acme`."""
    workspace_id = await store.ensure_workspace("acme")
    agent_port = free_port()
    agent_settings = AgentSettings(
        BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        ANTHROPIC_API_KEY=None,
        AGENT_SCRIPTED_DELAY_MS=1,
    )
    broker_settings = settings.model_copy(update={"agent_url": f"http://127.0.0.1:{agent_port}"})
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), workspace_id)
    async with (
        serve(create_agent_app(agent_settings), port=agent_port),
        serve(create_app(broker_settings)) as broker_url,
    ):
        yield System(broker_url, token, broker_settings, data_dir)


@dataclass
class BrokerProcess:
    """`broker serve --port PORT` as a child process; `kill()` is SIGKILL, `start()` again."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    child: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        command = [sys.executable, "-m", "broker.cli", "serve", "--port", str(self.port)]
        self.child = await asyncio.create_subprocess_exec(
            *command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                if self.child.returncode is not None:
                    raise RuntimeError(f"broker serve exited with {self.child.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError("broker serve did not answer /healthz")

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, the reading side's connections just drop."""
        if self.child is not None and self.child.returncode is None:
            self.child.kill()
            await self.child.wait()

    async def stop(self) -> None:
        if self.child is not None and self.child.returncode is None:
            self.child.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.child.wait()
            except TimeoutError:
                await self.kill()


class CuttingProxy:
    """Forwards 127.0.0.1:port to `target`, dropping each connection after a random
    number of server bytes drawn from `cut_range` by `rng` (seeded: failures replay)."""

    def __init__(self, target_port: int, rng: random.Random, cut_range: tuple[int, int]) -> None:
        self.target_port = target_port
        self.rng = rng
        self.cut_range = cut_range
        self.connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        budget = self.rng.randrange(*self.cut_range)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            nonlocal budget
            while data := await up_reader.read(65536):
                if len(data) >= budget:
                    writer.write(data[:budget])
                    await writer.drain()
                    self.cuts += 1
                    return
                budget -= len(data)
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (writer, up_writer):
                w.transport.abort()


class PtyProcess:
    """A command whose stdin, stdout and stderr are a pseudo-terminal of `cols` x `rows`;
    everything it writes is kept (`raw`) and fed to a pyte screen (`screen`)."""

    def __init__(
        self, argv: Sequence[str], env: dict[str, str], cols: int = 100, rows: int = 60
    ) -> None:
        self.argv, self.env = list(argv), {**env, "TERM": "xterm-256color", "COLUMNS": str(cols)}
        self.cols, self.rows = cols, rows
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.process: asyncio.subprocess.Process | None = None
        self._master = -1
        self._eof = asyncio.Event()

    async def start(self) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=slave, stdout=slave, stderr=slave, env=self.env
        )
        os.close(slave)
        self._master = master
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: every writer of the pty has gone
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
            self._eof.set()
            return
        self.raw.extend(data)
        self._stream.feed(data)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    async def wait_for(self, needle: str, timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s):
            while needle not in self.text():
                if self._eof.is_set():
                    raise AssertionError(f"{needle!r} never appeared:\n{self.text()}")
                await asyncio.sleep(0.02)

    def interrupt(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)

    async def wait(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout_s):
            code = await self.process.wait()
            await self._eof.wait()
        return code

    def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
        if self._master >= 0:
            if not self._eof.is_set():
                asyncio.get_running_loop().remove_reader(self._master)
                self._eof.set()
            os.close(self._master)
            self._master = -1
