"""`paced`: every frame of the agent, in order, waiting while the stream manager is backlogged."""

from __future__ import annotations

from collections.abc import AsyncIterator

from broker.web.sse import ServerSentEvent
from broker.write.agent_frames import FRAMES_PER_TURN, paced


class FakeBacklog:
    """Backlogged for the next `full` checks; counts the waits."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.waits = 0

    @property
    def backlogged(self) -> bool:
        return self.full > 0

    async def until_room(self) -> None:
        self.waits += 1
        self.full = 0  # a flush made room


async def frames(count: int) -> AsyncIterator[ServerSentEvent]:
    for i in range(count):
        yield ServerSentEvent(data=f"{i}", id=str(i))


async def test_every_frame_comes_through_in_order_without_waiting_when_there_is_room() -> None:
    backlog = FakeBacklog(full=0)
    got = [frame.data async for frame in paced(frames(3 * FRAMES_PER_TURN + 1), backlog)]
    assert got == [str(i) for i in range(3 * FRAMES_PER_TURN + 1)]
    assert backlog.waits == 0


async def test_a_backlog_makes_the_reader_wait_for_room_before_the_next_frame() -> None:
    backlog = FakeBacklog(full=0)
    seen: list[str] = []
    async for frame in paced(frames(5), backlog):
        seen.append(frame.data)
        if frame.data == "1":
            backlog.full = 1  # the manager fills up after the second frame
    assert seen == ["0", "1", "2", "3", "4"]
    assert backlog.waits == 1
