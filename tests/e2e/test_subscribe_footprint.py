"""What an idle viewer holds on a real server (issue 13: memory per idle viewer).

`broker bench --scenario idle` measures the bytes; RSS is too noisy for a test,
so these pin what the bytes come from: the tasks an idle viewer holds, and
that its stream runs after the app's call stack has returned (`HandOffMiddleware`),
keeping nothing of the request: no `Request` (and its body), no FastAPI exit
stack, no frame of the routing or of the middlewares beneath the hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from broker.store.postgres import Store
from broker.store.records import RunRecord
from broker.web.settings import Settings
from tests.e2e.test_subscribe_support import (
    hub_of,
    new_run,
    running_broker,
    sse_of,
    token_for,
    until,
)

VIEWERS = 5


async def open_idle_viewers(
    stack: AsyncExitStack,
    client: httpx.AsyncClient,
    run: RunRecord,
    headers: dict[str, str],
    count: int,
    *,
    post: bool,
) -> None:
    """`count` viewers of `run` that received seq 1 and now wait, open until `stack` closes."""
    for _ in range(count):
        if post:
            url = f"/api/runs/{run.run_id}/subscribe"
            request = client.stream("POST", url, headers=headers, json={"cursor": "0"})
        else:
            request = client.stream("GET", f"/api/runs/{run.run_id}/events", headers=headers)
        response = await stack.enter_async_context(request)
        assert response.status_code == 200
        events = sse_of(response)
        stack.push_async_callback(events.aclose)
        assert (await anext(events)).json()["seq"] == 1


def live_objects() -> Counter[str]:
    """Live coroutines by qualified name, and live requests and exit stacks, by kind."""
    gc.collect()
    found: Counter[str] = Counter()
    for item in gc.get_objects():
        if inspect.iscoroutine(item):
            found[item.cr_code.co_qualname] += 1
        elif isinstance(item, Request):
            found["Request"] += 1
        elif isinstance(item, AsyncExitStack):
            found["AsyncExitStack"] += 1
    return found


async def settled(app: Any, viewers: int) -> None:
    await until(lambda: hub_of(app).viewer_count == viewers, f"{viewers} viewers")
    await asyncio.sleep(0.05)  # each body is back in its wait


async def test_an_idle_viewer_holds_two_tasks_its_request_and_the_disconnect_watch(
    settings: Settings, store: Store
) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    async with running_broker(settings, keepalive_s=60) as (app, client):
        async with AsyncExitStack() as stack:
            # The first viewer makes the run's tail; count the ones after it.
            await open_idle_viewers(stack, client, run, headers, 1, post=False)
            await settled(app, 1)
            before = len(asyncio.all_tasks())
            await open_idle_viewers(stack, client, run, headers, VIEWERS, post=False)
            await settled(app, 1 + VIEWERS)
            grown = len(asyncio.all_tasks()) - before
            assert VIEWERS <= grown <= 2 * VIEWERS
        await until(lambda: len(asyncio.all_tasks()) <= before - 2, "the tasks to end")


@pytest.mark.parametrize("post", [False, True], ids=["GET events", "POST subscribe"])
async def test_an_idle_stream_keeps_nothing_of_the_request_or_the_stack_beneath_it(
    settings: Settings, store: Store, post: bool
) -> None:
    run = await new_run(store)
    headers = token_for(settings, run)
    async with running_broker(settings, keepalive_s=60) as (app, client):
        async with AsyncExitStack() as stack:
            await open_idle_viewers(stack, client, run, headers, 1, post=post)
            await settled(app, 1)
            before = live_objects()
            await open_idle_viewers(stack, client, run, headers, VIEWERS, post=post)
            await settled(app, 1 + VIEWERS)
            grown = live_objects() - before
        # Every stream waits in the hand-off, its body in the request's task ...
        assert grown["HandOffMiddleware.__call__"] == VIEWERS
        # ... and nothing of what made it is left: no request (nor its body), no exit
        # stack, no frame of the routing or of a middleware inside the hand-off.
        for gone in (
            "Request",
            "AsyncExitStack",
            "BodyLimitMiddleware.__call__",
            "UnicodeBodyMiddleware.__call__",
            "ExceptionMiddleware.__call__",
            "Router.__call__",
            "request_response.<locals>.app",
        ):
            assert grown[gone] == 0, (gone, grown)


async def test_a_stream_still_names_its_request_id(settings: Settings, store: Store) -> None:
    run = await new_run(store)
    headers = {**token_for(settings, run), "X-Request-ID": "trace-me-1"}
    async with running_broker(settings, keepalive_s=60) as (_, client):
        url = f"/api/runs/{run.run_id}/events"
        async with client.stream("GET", url, headers=headers) as response:
            assert response.headers["x-request-id"] == "trace-me-1"
            async with contextlib.aclosing(sse_of(response)) as events:
                assert (await anext(events)).json()["seq"] == 1
