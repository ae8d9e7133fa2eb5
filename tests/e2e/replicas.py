"""Two broker replicas, the agent service and one PostgreSQL, as real processes.

`cluster(settings, tmp_path, lease_s=...)` starts the agent service
(`broker agents`) and two brokers (`broker serve`, replicas `a` and `b`) as
subprocesses on free loopback ports, all sharing the test's database and
secrets, each logging to its own file. A test can `kill` (SIGKILL) or
`terminate` (SIGTERM) any of them and read their logs; every process still
running is killed when the block exits.

    async with cluster(settings, tmp_path, lease_s=2) as c:
        run_id = await c.start_run(c.a, "bench events=100 rate=50")
        events = await watch(c.b, run_id)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from broker.web.auth import mint_token
from broker.web.settings import Settings
from broker.web.sse import aiter_sse
from tests.servers import free_port

__all__ = ["Cluster", "Node", "cluster", "watch"]

_BROKER_BIN = str(Path(sys.executable).with_name("broker"))


@dataclass
class Node:
    """One process of the cluster: its name, URL, log file and client."""

    name: str
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    http: httpx.AsyncClient = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, and reap it: nothing runs after this."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM, without waiting (the process shuts down gracefully)."""
        self.process.send_signal(signal.SIGTERM)

    async def exited(self, timeout_s: float = 20) -> int:
        """Wait for the process to end; its return code (negative: the signal)."""
        deadline = time.monotonic() + timeout_s
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {timeout_s} s")
            await asyncio.sleep(0.05)
        return code


@dataclass
class Cluster:
    agent: Node
    a: Node
    b: Node

    async def start_run(self, node: Node, message: str) -> tuple[str, str]:
        """A new thread and a run on it started on `node`: (thread_id, run_id)."""
        thread = await node.http.post("/api/threads", json={"title": "replicas"})
        assert thread.status_code == 201, thread.text
        thread_id: str = thread.json()["thread_id"]
        return thread_id, await self.start_run_on(node, thread_id, message)

    async def start_run_on(self, node: Node, thread_id: str, message: str) -> str:
        started = await node.http.post(f"/api/threads/{thread_id}/runs", json={"message": message})
        assert started.status_code == 202, started.text
        run_id: str = started.json()["run_id"]
        return run_id


async def watch(
    node: Node,
    run_id: str,
    *,
    cursor: int | None = None,
    until_seq: int | None = None,
    into: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """A viewer on `node`: SSE events after `cursor` until the stream ends (or `until_seq`).

    Events are appended to `into` as they arrive, so a caller still has them
    when the stream breaks (the replica was killed) and the error propagates.
    """
    events = [] if into is None else into
    body = {"cursor": None if cursor is None else str(cursor)}
    async with node.http.stream("POST", f"/api/runs/{run_id}/subscribe", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for frame in aiter_sse(response.aiter_bytes()):
            event = frame.json()
            assert frame.id == str(event["seq"])
            events.append(event)
            if until_seq is not None and event["seq"] >= until_seq:
                break
    return events


def _environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "AGENT_"))}
    env.update(
        DATABASE_URL=str(settings.database_url),
        BROKER_SECRET=settings.require(settings.secret, "BROKER_SECRET"),
        BROKER_ENCRYPTION_KEYS=settings.require(settings.encryption_keys, "ENCRYPTION_KEYS"),
        BROKER_LOCAL_SECRET=settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        BROKER_DATA_DIR=str(settings.data_dir),
        PYTHONUNBUFFERED="1",
    )
    env.pop("ANTHROPIC_API_KEY", None)  # the scripted model
    env.update(extra)
    return env


async def _ready(node: Node, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if node.process.poll() is not None:
            raise RuntimeError(f"{node.name} exited at start-up:\n{node.log()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if (await node.http.get("/healthz")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{node.name} not ready:\n{node.log()[-3000:]}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def cluster(
    settings: Settings,
    tmp_path: Path,
    *,
    workspace_id: Any,
    lease_s: float,
    sweep_s: float = 0.5,
) -> AsyncIterator[Cluster]:
    """The agent and replicas `a`, `b` on `settings`' database; all killed on exit."""
    token = mint_token(settings.require(settings.secret, "BROKER_SECRET"), workspace_id)
    ports = {name: free_port() for name in ("agent", "a", "b")}
    agent_url = f"http://127.0.0.1:{ports['agent']}"
    nodes: list[Node] = []
    async with contextlib.AsyncExitStack() as stack:

        def spawn(name: str, command: str, env: dict[str, str]) -> Node:
            log_path = tmp_path / f"{name}.log"
            log_file = stack.enter_context(log_path.open("wb"))
            process = subprocess.Popen(
                [_BROKER_BIN, command, "--port", str(ports[name])],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{ports[name]}"
            http = httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            node = Node(name, url, log_path, process, http)
            nodes.append(node)
            stack.push_async_callback(http.aclose)
            return node

        try:
            agent = spawn(
                "agent",
                "agents",
                _environment(
                    settings,
                    BROKER_URL=f"http://127.0.0.1:{ports['a']}",
                    AGENT_SCRIPTED_DELAY_MS="1",
                ),
            )
            replica_env = _environment(
                settings,
                AGENT_URL=agent_url,
                BROKER_LEASE_S=str(lease_s),
                BROKER_SWEEP_S=str(sweep_s),
            )
            a = spawn("a", "serve", replica_env)
            b = spawn("b", "serve", replica_env)
            await asyncio.gather(*(_ready(node) for node in nodes))
            yield Cluster(agent, a, b)
        finally:
            for node in nodes:
                node.kill()
