"""`bench events=1000 rate=500 size=64`: exactly the load asked for, at the rate asked for."""

from __future__ import annotations

import httpx

from agents.app import create_app
from models.events import Complete, ErrorEvent, Text
from tests.e2e.agents.harness import agent_settings, collect, run_body
from tests.servers import serve


async def test_bench_emits_exactly_n_texts_of_b_bytes_at_r_per_second() -> None:
    app = create_app(agent_settings())
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        received = await collect(client, run_body("bench events=1000 rate=500 size=64"))

    texts = received[:-1]
    assert len(texts) == 1000
    assert all(isinstance(r.event, Text) for r in texts)
    assert {len(r.event.data.text.encode()) for r in texts if isinstance(r.event, Text)} == {64}
    assert isinstance(received[-1].event, Complete)
    assert [r.id for r in received] == list(range(1, 1002))
    # Event i is due at i/R: 999 intervals of 2 ms between the first and the last.
    duration = texts[-1].at - texts[0].at
    rate = 999 / duration
    print(f"bench: 1000 events in {duration:.3f} s, {rate:.1f} events/s")
    assert 1.8 <= duration <= 2.2
    assert 450 <= rate <= 550


async def test_a_run_over_the_buffer_limit_ends_with_buffer_overflow() -> None:
    app = create_app(agent_settings(agent_run_buffer_max=50))
    async with serve(app) as agent_url, httpx.AsyncClient(base_url=agent_url) as client:
        received = await collect(client, run_body("bench events=200 rate=100000"))
    assert [r.type for r in received] == ["text"] * 49 + ["error"]
    last = received[-1].event
    assert isinstance(last, ErrorEvent) and last.data.error_type == "buffer_overflow"
