"""Every run as a read-only Durable Stream in JSON mode at `/ds/runs/<run id>`.

One message per event, the event's JSON of the contract (4.2); the offset
after event `seq` is `offsets.offset_of(seq)`, so a run's seq and its
offset map onto each other exactly. The stream is closed once the run's
terminal event is read. Appending, creating or deleting answers 405.
Auth and workspace isolation are the API's: a run of another workspace is
404. Events deleted by retention answer 410 Gone.

Live readers share the run's tail in `subscribe.hub` (one LISTEN, one read
per run and wake-up, however many viewers): a waiting reader joins the tail
and takes the frames the hub reads for everyone, reading the table itself
only to catch up or after its queue overflowed.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from broker.errors import NotFound
from broker.store.postgres import Store
from broker.web.http import get_settings, get_store
from durable.protocol import ProtocolError
from durable.reader import Head, head_response, read_response
from models.ids import RunId, WorkspaceId
from models.status import TERMINAL_STATUSES
from subscribe.hub import Hub
from subscribe.viewer import Frame, Viewer, frame_of

__all__ = ["RunSource", "run_response"]

_CONTENT_TYPE = "application/json"
_READ_LIMIT = 1000


class RunSource:
    """One request's view of a run: its head, its events as JSON messages, its tail."""

    def __init__(self, store: Store, hub: Hub, run_id: RunId, head: int, finished: bool) -> None:
        self._store = store
        self._hub = hub
        self._run_id = run_id
        self.path = f"runs/{run_id}"
        self.content_type = _CONTENT_TYPE
        self._head = Head(head, finished)
        self._viewer: Viewer | None = None
        self._pending: dict[int, Frame] = {}

    async def head(self) -> Head:
        return self._head

    def _learn(self, frames: list[Frame]) -> None:
        for frame in frames:
            self._pending[frame.seq] = frame
            closed = self._head.closed or frame.terminal
            self._head = Head(max(self._head.last_seq, frame.seq), closed)

    async def read(self, after: int) -> list[bytes]:
        """Events after `after`: from the tail's frames when they follow on, else the table."""
        for seq in [s for s in self._pending if s <= after]:
            del self._pending[seq]
        if after + 1 in self._pending:
            out = []
            seq = after + 1
            while seq in self._pending:
                out.append(self._pending.pop(seq).json.encode())
                seq += 1
            return out
        if after >= self._head.last_seq:
            return []
        events = await self._store.read_events(self._run_id, after, _READ_LIMIT)
        if not events or events[0].seq != after + 1:
            raise ProtocolError(410, "these events are past retention")
        frames = [frame_of(e) for e in events]
        self._learn([])  # keep the head as is; the table rows are below it
        for frame in frames:
            if frame.terminal:
                self._head = Head(max(self._head.last_seq, frame.seq), True)
        return [f.json.encode() for f in frames]

    async def wait(self, after: int, limit_s: float) -> None:
        """Wait on the run's shared tail for frames past `after`, at most `limit_s` s."""
        if self._head.closed or self._head.last_seq > after:
            return
        if self._viewer is None:
            self._viewer = self._hub.join(self._run_id, self._head.last_seq)
        if await self._viewer.wait(limit_s):
            frames, overflowed = self._viewer.take()
            self._learn(frames)
            if overflowed:
                self._pending.clear()

    async def aclose(self) -> None:
        if self._viewer is not None:
            self._hub.leave(self._viewer)
            self._viewer = None


async def run_response(request: Request, workspace_id: uuid.UUID, rest: str) -> Response:
    """GET or HEAD of `/ds/runs/<run id>`; anything else 405."""
    if request.method not in ("GET", "HEAD"):
        raise ProtocolError(405, "runs are read-only streams", {"allow": "GET, HEAD"})
    try:
        run_id = RunId(uuid.UUID(rest))
    except ValueError as exc:
        raise ProtocolError(404, "Run not found") from exc
    store = get_store(request)
    try:
        state = await store.get_run_state(WorkspaceId(workspace_id), run_id)
    except NotFound as exc:
        raise ProtocolError(404, "Run not found") from exc
    finished = state.record.status in TERMINAL_STATUSES
    if request.method == "HEAD":
        return head_response(f"runs/{run_id}", _CONTENT_TYPE, Head(state.head, finished), {})
    source = RunSource(store, request.app.state.hub, run_id, state.head, finished)
    return await read_response(request, source, long_poll_s=get_settings(request).ds_long_poll_s)
