"""A viewer for thousands of connections: the bytes taken off the socket now, parsed later.

`broker bench`'s fan-out holds up to thousands of SSE viewers in one load
process. Read through httpx and parsed as they arrive, 2,000 viewers of a
20 ev/s run are 40,000 chunks a second of client-side HTTP and SSE parsing:
the load process, not the broker, saturated its core, and the latencies it
reported were its own queueing. A `WireViewer` is an `asyncio.Protocol`
that stores each piece of the answer with the time it arrived (about a
microsecond of work); when the answer is complete it is parsed with h11 (the
HTTP/1.1 framing, chunked encoding included) and `broker.web.sse`, every
event stamped with the arrival time of the piece that completed it. That is
when the event reached this client's socket, as `wrk` counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

import h11

from broker.bench.client import Reception, now_us
from broker.web.sse import SSEParser

__all__ = ["WireViewer"]


class _Pieces(asyncio.Protocol):
    """Collects `(arrival µs, bytes)`; tells of the first byte, and ends with the connection."""

    def __init__(self, on_first: Callable[[], None] | None) -> None:
        self.pieces: list[tuple[int, bytes]] = []
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_first = on_first
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.pieces and self._on_first is not None:
            self._on_first()
        self.pieces.append((now_us(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


class WireViewer:
    """One SSE viewer of `GET path` on `base_url`; `reception` is filled when it ends."""

    def __init__(self, base_url: str, path: str, token: str) -> None:
        url = urlsplit(base_url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 80
        self._request = h11.Request(
            method="GET",
            target=path,
            headers=[
                ("Host", f"{self._host}:{self._port}"),
                ("Authorization", f"Bearer {token}"),
                ("Accept", "text/event-stream"),
                ("Connection", "close"),  # the server closes it after the answer: the end
            ],
        )
        self.reception = Reception()

    async def read(self, *, connected: Callable[[], None] | None = None) -> Reception:
        """Read the whole answer, then parse it; raises if it is not a 200 SSE answer."""
        client = h11.Connection(h11.CLIENT)
        request = client.send(self._request)
        self.reception.opened_us = now_us()
        loop = asyncio.get_running_loop()
        _, pieces = await loop.create_connection(lambda: _Pieces(connected), self._host, self._port)
        assert pieces.transport is not None
        pieces.transport.write(request or b"")
        await pieces.ended
        self.reception.finished_us = pieces.pieces[-1][0] if pieces.pieces else now_us()
        self._parse(client, pieces.pieces)
        return self.reception

    def _parse(self, client: h11.Connection, pieces: list[tuple[int, bytes]]) -> None:
        parser = SSEParser()
        whole = False
        for arrived, data in pieces:
            client.receive_data(data)
            while not whole:
                event = client.next_event()
                whole = isinstance(event, h11.EndOfMessage)
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response) and event.status_code != 200:
                    raise RuntimeError(f"the broker answered {event.status_code}")
                if isinstance(event, h11.Data):
                    for sse in parser.feed(bytes(event.data)):
                        self.reception.take(sse, arrived)
        if not whole:
            raise RuntimeError("the answer ended before its last chunk")
