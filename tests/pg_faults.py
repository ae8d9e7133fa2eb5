"""PostgreSQL's faults made on purpose, on real sockets, at points no timing could hit.

- `cutting_proxy`: a TCP proxy in front of a PostgreSQL. It relays the
  connection as it is (unencrypted: the tenant server has no TLS) and reads
  the client's statements after the start-up (`Parse` and simple `Query`
  messages). At the first whose text holds `marker` it does what a terminated
  backend does: it answers FATAL 57P01 ("terminating connection due to
  administrator command") and closes the socket.
- `refusing_server`: answers every start-up as a server that cannot serve yet
  does (FATAL 57P03 "the database system is starting up", by default), then
  closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["GOODBYE", "cutting_proxy", "fatal", "refusing_server"]


def fatal(code: str, message: str) -> bytes:
    """A FATAL `ErrorResponse` message of the PostgreSQL protocol."""
    fields = b"SFATAL\0VFATAL\0C" + code.encode() + b"\0M" + message.encode() + b"\0\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


GOODBYE = fatal("57P01", "terminating connection due to administrator command")
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

    async with _serving(relay) as port:
        try:
            yield port
        finally:
            for task in list(tasks):
                task.cancel()


@contextlib.asynccontextmanager
async def refusing_server(
    code: str = "57P03", message: str = "the database system is starting up"
) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 (the port yielded); refuse every start-up with FATAL `code`."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await _untyped(reader))[1]:
                writer.write(b"N")  # no TLS, no GSSAPI: go on in the clear
            writer.write(fatal(code, message))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async with _serving(refuse) as port:
        yield port


@contextlib.asynccontextmanager
async def _serving(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 (its port yielded), closed on exit."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def _untyped(client: asyncio.StreamReader) -> tuple[bytes, bool]:
    """One untyped message of the start-up, and whether it was a negotiation (not the last)."""
    head = await client.readexactly(8)
    length, code = struct.unpack("!ii", head)
    return head + await client.readexactly(length - 8), code in _NEGOTIATIONS


async def _client_to_server(
    client: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    answer: asyncio.StreamWriter,
    marker: bytes,
) -> None:
    negotiation = True
    while negotiation:  # untyped messages first: negotiations, then the StartupMessage
        message, negotiation = await _untyped(client)
        upstream.write(message)
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
