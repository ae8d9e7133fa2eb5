"""What the load process drives the services with: bench runs and real SSE viewers.

A `Viewer` reads one run's `GET /api/runs/{id}/events` stream with the
broker's own SSE parser and keeps, for every event, its seq and when it
arrived; the bench events' texts carry their emit time (`agents.bench`), so
emit-to-receive latency is measured across processes on one clock (the wall
clock, shared by processes of one machine). `exactly_once` checks that a
viewer got seqs 1..N, each once, ending with the terminal event.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from broker.web.sse import ServerSentEvent, aiter_sse

__all__ = [
    "Api",
    "Reception",
    "Viewer",
    "bench_message",
    "emitted_us_of",
    "exactly_once",
    "http_client",
    "in_order",
    "now_us",
    "poll",
    "read_direct",
]

_TERMINAL = {"complete", "error", "cancelled"}
# The scripted bench load's text: `00000007 t=1764470000123456 xx…` (agents.bench.bench_text).
_EMITTED = re.compile(r"^\d{8} t=(\d+) ")


async def poll(check: Callable[[], Awaitable[bool]], interval_s: float = 0.02) -> None:
    """Return once `check()` holds, asking every `interval_s` (state in another process)."""
    while True:
        if await check():
            return
        await asyncio.sleep(interval_s)


def emitted_us_of(text: str) -> int | None:
    """The emit time (µs since the epoch) a bench event's text carries, or None."""
    match = _EMITTED.match(text)
    return int(match.group(1)) if match else None


def now_us() -> int:
    """The wall clock in microseconds since the epoch (the agent stamps events with it)."""
    return time.time_ns() // 1000


def bench_message(events: int, rate: float, size: int) -> str:
    """The scripted model's load command (design 4.4)."""
    return f"bench events={events} rate={rate:g} size={size}"


def http_client(
    base_url: str, *, connections: int = 100, token: str | None = None
) -> httpx.AsyncClient:
    """A client with room for `connections` concurrent streams, no read timeout."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(60.0, read=None)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout, headers=headers)


class Api:
    """The broker's public API, as the bench uses it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def start_run(self, message: str) -> str:
        """A new thread with one run of `message`; its run id."""
        thread = await self.client.post("/api/threads", json={"title": "bench"})
        thread.raise_for_status()
        answer = await self.client.post(
            f"/api/threads/{thread.json()['thread_id']}/runs", json={"message": message}
        )
        answer.raise_for_status()
        run_id: str = answer.json()["run_id"]
        return run_id

    async def run_state(self, run_id: str) -> dict[str, Any]:
        answer = await self.client.get(f"/api/runs/{run_id}")
        answer.raise_for_status()
        state: dict[str, Any] = answer.json()
        return state


@dataclass(slots=True)
class Reception:
    """What one viewer received: seqs, arrival and emit times (µs, wall clock)."""

    seqs: list[int] = field(default_factory=list)
    received_us: list[int] = field(default_factory=list)
    emitted_us: list[int | None] = field(default_factory=list)
    terminal: str | None = None
    opened_us: int = 0
    finished_us: int = 0

    def take(self, event: ServerSentEvent, arrived_us: int) -> None:
        """Record one SSE event of the broker's (comments and keepalives are skipped)."""
        if not event.data:
            return
        body = event.json()
        self.seqs.append(int(event.id) if event.id else body.get("seq", 0))
        self.received_us.append(arrived_us)
        text = body.get("data", {}).get("text") if isinstance(body, dict) else None
        self.emitted_us.append(emitted_us_of(text) if isinstance(text, str) else None)
        kind = body.get("event_type") if isinstance(body, dict) else None
        if kind in _TERMINAL:
            self.terminal = kind

    def latencies_ms(self, since_us: int = 0) -> list[float]:
        """Emit-to-receive latency of every bench event emitted at or after `since_us`."""
        return [
            (received - emitted) / 1000
            for received, emitted in zip(self.received_us, self.emitted_us, strict=True)
            if emitted is not None and emitted >= since_us
        ]


def exactly_once(reception: Reception, what: str) -> list[str]:
    """Violations of exactly-once, in order delivery: seqs must be 1..N, ending terminal."""
    problems = in_order(reception, what)
    if reception.terminal is None:
        problems.append(f"{what}: the stream ended without its terminal event")
    return problems


def in_order(reception: Reception, what: str) -> list[str]:
    """Violations of in-order, once-only delivery of a prefix: seqs must be 1..k."""
    expected = list(range(1, len(reception.seqs) + 1))
    problems: list[str] = []
    if reception.seqs != expected:
        duplicates = len(reception.seqs) - len(set(reception.seqs))
        problems.append(
            f"{what}: seqs are not 1..{len(reception.seqs)} "
            f"({duplicates} duplicates, first {reception.seqs[:5]}, last {reception.seqs[-5:]})"
        )
    return problems


class Viewer:
    """One SSE viewer of a run; `reception` fills as events arrive."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self._client = client
        self._url = url
        self.reception = Reception()

    async def read(self, *, connected: Callable[[], None] | None = None) -> Reception:
        """Read to the end of the stream; `connected()` is called once the answer started.

        Each event is parsed as it arrives, so its arrival time is its own.
        """
        reception = self.reception
        reception.opened_us = now_us()
        async with self._client.stream("GET", self._url) as answer:
            answer.raise_for_status()
            if connected is not None:
                connected()
            async for event in aiter_sse(answer.aiter_bytes()):
                reception.take(event, now_us())
        reception.finished_us = now_us()
        return reception

    async def read_through(self) -> Reception:
        """Read to the end of the stream, then parse it: `finished_us` is when the last
        byte came, without this process's parsing in it (every event's arrival time is
        that of the last byte)."""
        reception = self.reception
        reception.opened_us = now_us()
        async with self._client.stream("GET", self._url) as answer:
            answer.raise_for_status()
            chunks = [chunk async for chunk in answer.aiter_bytes()]
        reception.finished_us = now_us()

        async def replay() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        async for event in aiter_sse(replay()):
            reception.take(event, reception.finished_us)
        return reception


async def read_direct(agent_url: str, local_secret: str, message: str) -> Reception:
    """The agent's own stream of `message`, read straight (the no-broker baseline)."""
    run_id = str(uuid.uuid4())
    body = {"run_id": run_id, "thread_id": str(uuid.uuid4()), "new_user_message": message}
    headers = {"x-local-secret": local_secret}
    reception = Reception()
    async with (
        http_client(agent_url, connections=2) as client,
        client.stream("POST", "/runs/stream", json=body, headers=headers) as answer,
    ):
        answer.raise_for_status()
        reception.opened_us = now_us()
        async for event in aiter_sse(answer.aiter_bytes()):
            reception.take(event, now_us())
    reception.finished_us = now_us()
    return reception
