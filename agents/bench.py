"""The benchmark load: `bench events=N rate=R [size=B]` → N `text` events of B bytes at R/s.

`broker bench` drives the real broker and agent service with it, so the load
must be exact and cheap: exactly N events, each `text` exactly B bytes (ASCII,
so bytes = characters), then `complete`. Events are paced by an absolute
schedule (event i is due at t0 + i/R), not by sleeping 1/R after each one, so
scheduling jitter never accumulates into drift; a wake-up that comes late
emits every event already due, which is also how rates above the timer
resolution are reached. A run never sleeps less than `MIN_SLEEP_S`: at high
rates the events due meanwhile go out together, so 50 runs at 5,000 ev/s cost
the agent 10,000 wake-ups a second instead of 250,000 (which had made the
agent, not the broker, the limit of `broker bench`'s ingest). It bypasses
LangGraph (whose per-chunk overhead would distort high rates) but not the run
registry, the buffer or the SSE stream.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from models.events import ChatMessage, Complete, CompleteData, StreamEvent, Text, TextData

__all__ = [
    "DEFAULT_SIZE",
    "MIN_SLEEP_S",
    "BenchLoad",
    "bench_events",
    "bench_text",
    "due_count",
    "parse_bench",
]

DEFAULT_SIZE: Final = 16
MIN_SLEEP_S: Final = 0.005
"""The shortest pause between two bursts of a run's events (seconds)."""
_COMMAND: Final = re.compile(r"^\s*bench((?:\s+\w+=\S+)+)\s*$")
_ARGUMENT: Final = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True, slots=True)
class BenchLoad:
    events: int
    rate: float
    size: int = DEFAULT_SIZE


def parse_bench(message: str) -> BenchLoad | None:
    """The load a message asks for, or None if it is not a well-formed bench command."""
    match = _COMMAND.match(message)
    if match is None:
        return None
    arguments = dict(_ARGUMENT.findall(match.group(1)))
    if not {"events", "rate"} <= arguments.keys() <= {"events", "rate", "size"}:
        return None
    try:
        events = int(arguments["events"])
        rate = float(arguments["rate"])
        size = int(arguments.get("size", DEFAULT_SIZE))
    except ValueError:
        return None
    if events < 0 or not (rate > 0 and math.isfinite(rate)) or size < 1:
        return None
    return BenchLoad(events=events, rate=rate, size=size)


def bench_text(index: int, size: int, emitted_us: int | None = None) -> str:
    """Exactly `size` ASCII characters: the event's index, then when it was emitted.

    `emitted_us` (wall clock, microseconds since the epoch) lets `broker bench`
    measure emit-to-viewer latency across processes: `00000007 t=1764470000123456 xx…`.
    It is cut off when `size` is too small to hold it (under 27 bytes).
    """
    label = f"{index:08d} " if emitted_us is None else f"{index:08d} t={emitted_us} "
    return (label + "x" * max(0, size - len(label)))[:size]


def due_count(elapsed_s: float, rate: float, total: int) -> int:
    """How many events are due `elapsed_s` after t0: event i is due at i / rate."""
    if elapsed_s < 0:
        return 0
    return min(total, math.floor(elapsed_s * rate) + 1)


async def bench_events(
    load: BenchLoad,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    wall_us: Callable[[], int] = lambda: time.time_ns() // 1000,
) -> AsyncGenerator[StreamEvent, None]:
    """The load's events, paced on the absolute schedule, then `complete`.

    Each text carries its emit time from `wall_us` (see `bench_text`).
    """
    t0 = clock()
    sent = 0
    while sent < load.events:
        due = due_count(clock() - t0, load.rate, load.events)
        while sent < due:
            yield Text(data=TextData(text=bench_text(sent, load.size, wall_us())))
            sent += 1
        if sent < load.events:
            await sleep(max(MIN_SLEEP_S, t0 + sent / load.rate - clock()))
    summary = f"bench: {load.events} events of {load.size} bytes at {load.rate:g}/s"
    yield Complete(data=CompleteData(new_messages=[ChatMessage(role="assistant", content=summary)]))
