"""A TCP proxy in front of a PostgreSQL that says goodbye at a chosen statement.

It relays the connection as it is (unencrypted: the tenant server has no TLS)
and reads the client's statements after the start-up (`Parse` and simple
`Query` messages). At the first whose text holds `marker` it does what a
terminated backend does: it answers FATAL 57P01 ("terminating connection due to
administrator command") and closes the socket. A network fault made for real,
on a real socket, at a point no timing could hit reliably.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

__all__ = ["GOODBYE", "cutting_proxy"]

_GOODBYE_FIELDS = (
    b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"
)
GOODBYE = b"E" + struct.pack("!i", len(_GOODBYE_FIELDS) + 4) + _GOODBYE_FIELDS
"""A backend's last message before it closes, as after `pg_terminate_backend`."""

_NEGOTIATIONS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: answered by one byte
_STATEMENTS = {b"P", b"Q"}  # Parse (extended protocol), Query (simple protocol)


@contextlib.asynccontextmanager
async def cutting_proxy(upstream_port: int, marker: bytes) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 (the port yielded); cut a connection at a statement holding `marker`."""
    tasks: set[asyncio.Task[None]] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        back = asyncio.create_task(_pipe(up_reader, writer))
        tasks.add(back)
        try:
            await _client_to_server(reader, up_writer, writer, marker)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            back.cancel()
            tasks.discard(back)
            for end in (up_writer, writer):
                end.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()


async def _client_to_server(
    client: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    answer: asyncio.StreamWriter,
    marker: bytes,
) -> None:
    while True:  # untyped messages first: negotiations, then the StartupMessage
        head = await client.readexactly(8)
        length, code = struct.unpack("!ii", head)
        upstream.write(head + await client.readexactly(length - 8))
        if code not in _NEGOTIATIONS:
            break
    while True:
        kind = await client.readexactly(1)
        size = await client.readexactly(4)
        body = await client.readexactly(struct.unpack("!i", size)[0] - 4)
        if kind in _STATEMENTS and marker in body:
            answer.write(GOODBYE)
            await answer.drain()
            return
        upstream.write(kind + size + body)
        await upstream.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
