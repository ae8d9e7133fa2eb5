"""`Drain`: set by the signal itself, then the server's own handler still runs."""

from __future__ import annotations

import asyncio
import os
import signal
from types import FrameType

from broker.web.draining import Drain


async def test_a_signal_sets_the_drain_and_reaches_the_servers_handler() -> None:
    received: list[int] = []

    def server_handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    original = signal.signal(signal.SIGTERM, server_handler)
    try:
        drain = Drain()
        drain.install()
        assert not drain.draining
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(drain.wait(), 5)
        assert drain.draining
        assert received == [signal.SIGTERM]
        drain.uninstall()
        assert signal.getsignal(signal.SIGTERM) is server_handler
    finally:
        signal.signal(signal.SIGTERM, original)


async def test_a_signal_nobody_caught_keeps_its_default() -> None:
    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        drain = Drain()
        drain.install()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        drain.uninstall()
    finally:
        signal.signal(signal.SIGTERM, original)


async def test_begin_drains_by_hand_and_is_idempotent() -> None:
    drain = Drain()
    drain.begin()
    drain.begin()
    await asyncio.wait_for(drain.wait(), 1)
    assert drain.draining


async def test_uninstall_leaves_a_handler_installed_after_ours_alone() -> None:
    def later(signum: int, frame: FrameType | None) -> None:
        pass

    original = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        drain = Drain()
        drain.install()
        signal.signal(signal.SIGINT, later)
        drain.uninstall()
        assert signal.getsignal(signal.SIGINT) is later
    finally:
        signal.signal(signal.SIGINT, original)


async def test_begin_calls_each_registered_callback_once_and_forgotten_ones_never() -> None:
    drain = Drain()
    called: list[str] = []

    def first() -> None:
        called.append("first")

    def forgotten() -> None:
        called.append("forgotten")

    drain.on_begin(first)
    drain.on_begin(forgotten)
    drain.forget(forgotten)
    drain.forget(lambda: None)  # never registered: ignored
    drain.begin()
    drain.begin()
    assert called == ["first"]
    drain.on_begin(forgotten)  # too late: the caller checks `draining` first
    assert called == ["first"]


async def test_a_signal_calls_the_callbacks_too() -> None:
    original = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        drain = Drain()
        drain.install()
        woken = asyncio.Event()
        drain.on_begin(woken.set)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(woken.wait(), 5)
        drain.uninstall()
    finally:
        signal.signal(signal.SIGTERM, original)
