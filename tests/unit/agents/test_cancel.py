"""The cancellation token: set once, from any thread, waking asyncio waiters."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agents.cancel import CancelToken
from agents.errors import RunCancelled


def test_first_reason_wins() -> None:
    token = CancelToken()
    assert not token.cancelled and token.reason is None
    assert token.cancel("agent") is True
    assert token.cancel("shutdown") is False
    assert token.cancelled and token.reason == "agent"


def test_raise_if_cancelled_raises_only_once_set() -> None:
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel("agent")
    with pytest.raises(RunCancelled) as caught:
        token.raise_if_cancelled()
    assert caught.value.by == "agent"


async def test_cancel_from_another_thread_wakes_the_waiter() -> None:
    token = CancelToken()
    waiter = asyncio.create_task(token.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    thread = threading.Thread(target=token.cancel, args=("worker",))
    thread.start()
    thread.join()
    assert await asyncio.wait_for(waiter, 1) == "worker"


async def test_wait_on_a_set_token_returns_at_once() -> None:
    token = CancelToken()
    token.cancel("agent")
    assert await asyncio.wait_for(token.wait(), 1) == "agent"


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    token = CancelToken()
    waiter = asyncio.create_task(token.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert token._waiters == []
