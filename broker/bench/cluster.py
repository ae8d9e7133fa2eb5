"""The processes under test: a database, the agent service and the broker.

`Cluster.open(mode_dir)` prepares the database — the embedded PostgreSQL in
a temporary directory of its own, or `DATABASE_URL` when set — migrates it,
creates the bench workspace and mints its token. `cluster.agent()` and
`cluster.broker(agent_url, env)` then run `broker agents` and `broker serve`
as child processes on free loopback ports (real uvicorn, as in production),
the broker with the extra environment a scenario needs (e.g.
`BROKER_FLUSH_INTERVAL_MS`), and stop them on exit. One agent service
serves every broker of a benchmark.
The scripted offline model is forced (no `ANTHROPIC_API_KEY`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from broker.store.database import create_engine, embedded_postgres
from broker.store.migrate import upgrade
from broker.web.settings import SECRET_NAMES, Settings

__all__ = ["Cluster", "Services", "free_port"]

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Services:
    """The running broker and agent service."""

    broker_url: str
    agent_url: str
    broker_pid: int


class Cluster:
    """A migrated database with a bench workspace; starts the services on demand."""

    def __init__(
        self, settings: Settings, data_dir: Path, token: str, postgres: str, *, external: bool
    ) -> None:
        self.settings = settings
        self.external = external
        self.data_dir = data_dir
        self.token = token
        self.postgres_version = postgres

    @classmethod
    @contextlib.contextmanager
    def open(cls) -> Iterator[Cluster]:
        """The database (embedded in a temporary directory unless `DATABASE_URL`), migrated."""
        with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
            data_dir = Path(tmp)
            base = Settings(data_dir=data_dir).with_secrets()
            with contextlib.ExitStack() as stack:
                url = base.database_url or stack.enter_context(embedded_postgres(data_dir))
                settings = base.model_copy(update={"database_url": url})
                upgrade(url)
                token, version = asyncio.run(_prepare(settings))
                yield cls(
                    settings, data_dir, token, version, external=base.database_url is not None
                )

    @property
    def database_url(self) -> str:
        assert self.settings.database_url is not None
        return self.settings.database_url

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """The children's environment: this cluster's database and secrets, then `extra`."""
        env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
        for name, attr in SECRET_NAMES.items():
            env[name] = self.settings.require(getattr(self.settings, attr), name)
        env.update(
            DATABASE_URL=self.database_url,
            BROKER_DATA_DIR=str(self.data_dir),
            BROKER_LOG_LEVEL="warning",
        )
        env.update(extra)
        return env

    @contextlib.contextmanager
    def agent(self) -> Iterator[str]:
        """`broker agents` on a free port; its base URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with _child(["agents", "--port", str(port)], self.environment({}), url):
            yield url

    @contextlib.contextmanager
    def broker(self, agent_url: str, extra: dict[str, str]) -> Iterator[Services]:
        """`broker serve` on a free port, using the agent at `agent_url`, stopped on exit."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = self.environment({"AGENT_URL": agent_url, "BROKER_URL": url, **extra})
        with _child(["serve", "--port", str(port)], env, url) as child:
            yield Services(broker_url=url, agent_url=agent_url, broker_pid=child.pid)


async def _prepare(settings: Settings) -> tuple[str, str]:
    """The bench workspace's token, and the server's PostgreSQL version."""
    from sqlalchemy import text

    from broker.store.postgres import Store
    from broker.web.auth import mint_token

    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        workspace_id = await Store(engine, settings.keyring()).ensure_workspace("bench")
        async with engine.connect() as conn:
            version = str((await conn.execute(text("SHOW server_version"))).scalar_one())
    finally:
        await engine.dispose()
    secret = settings.require(settings.secret, "BROKER_SECRET")
    return mint_token(secret, workspace_id, "bench", 24 * 3600), version


@contextlib.contextmanager
def _child(
    arguments: list[str], env: dict[str, str], url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m broker.cli ARGUMENTS`, healthy at `url`, terminated on exit."""
    command = [sys.executable, "-m", "broker.cli", *arguments]
    child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    try:
        _wait_healthy(child, url)
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_healthy(child: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{url}: the child process exited ({child.returncode})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {_START_TIMEOUT_S:g} s")
