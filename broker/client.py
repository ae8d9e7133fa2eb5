"""The Python client of the public HTTP contract (design 4.1, 4.2 and 4.6).

    async with BrokerClient("http://127.0.0.1:8000", token) as broker:
        thread = await broker.create_thread()
        run = await broker.start_run(thread.thread_id, "How many orders last month?")
        async for stored in broker.events(run.run_id):
            print(stored.seq, stored.event.event_type)

`events()` follows a run to its terminal event and yields each event exactly
once, in `seq` order, however often the connection breaks: it remembers the
last `seq` it yielded, reconnects with that as the cursor, and drops anything
at or below it (the delivery rule of design section 9).

Retries are a small loop with "full jitter" backoff (a random wait in
`[0, min(cap, base * 2**attempt))`) rather than tenacity: the retry here is
not around one call but around a stream that makes progress, so the attempt
count must start over whenever an event arrives, and the next attempt needs
the cursor the previous one reached. A decorator-style retry expresses
neither without more code than the loop itself.

Errors, one tree; each carries the contract's `code` and the HTTP `status`:

    ClientError
    ├── AuthenticationError   401: no, malformed, forged or expired token
    ├── NotFoundError         404: unknown run or thread, or another workspace's
    ├── BadRequestError       any other 4xx: bad cursor, bad body, conflict, too large
    └── GaveUpError           N attempts in a row failed (refused, cut, 5xx, timeout)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from broker.web.sse import SSEParser
from models.events import StoredEvent, is_terminal, parse_event
from models.status import TERMINAL_STATUSES

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BrokerClient",
    "CancelResult",
    "ClientError",
    "ConnectionState",
    "GaveUpError",
    "NotFoundError",
    "RunInfo",
    "RunStarted",
    "SyncBrokerClient",
    "Thread",
    "parse_wire_event",
]

log = structlog.get_logger(__name__)

ConnectionState = Literal["live", "reconnecting"]


class ClientError(Exception):
    """Base of the client's errors: `code` is the contract's error code, `status` the HTTP one."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class AuthenticationError(ClientError):
    pass


class NotFoundError(ClientError):
    pass


class BadRequestError(ClientError):
    pass


class GaveUpError(ClientError):
    """The last `attempts` tries failed in a row; `__cause__` is the last failure."""

    def __init__(self, message: str, *, attempts: int, code: str = "unavailable") -> None:
        super().__init__(message, code=code)
        self.attempts = attempts


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Thread(_Answer):
    thread_id: str
    title: str | None
    created_at: datetime


class RunStarted(_Answer):
    run_id: str
    thread_id: str
    status: str
    subscribe_url: str


class RunInfo(_Answer):
    run_id: str
    thread_id: str
    status: str
    last_seq: int
    created_at: datetime
    finished_at: datetime | None
    error: str | None


class CancelResult(_Answer):
    run_id: str
    status: str


@dataclass
class _Opening:
    """The cursor the broker resolved for the first connection (its opening `id:`)."""

    cursor: str | None = None


class _Retryable(Exception):
    """A failure worth another attempt: cut, refused, timed out, 5xx, ended early."""


def parse_wire_event(value: Any) -> StoredEvent:
    """A wire `{"seq", "event_type", "data", "ts"}` as a `StoredEvent` (`ValidationError`)."""
    if not isinstance(value, dict):
        raise TypeError(f"an event must be a JSON object, not {type(value).__name__}")
    event = parse_event({"event_type": value.get("event_type"), "data": value.get("data")})
    return StoredEvent(seq=value.get("seq"), ts=value.get("ts"), event=event)


def _error_of(response: httpx.Response, body: bytes) -> ClientError:
    """The client error for a 4xx answer in the contract's `{"error": {...}}` shape."""
    code, message = f"http_{response.status_code}", body.decode(errors="replace")[:500]
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    status = response.status_code
    kind: type[ClientError] = BadRequestError
    if status == 401:
        kind = AuthenticationError
    elif status == 404:
        kind = NotFoundError
    return kind(f"{message} ({status} {code})", code=code, status=status)


class BrokerClient:
    """A broker at `base_url`, as the member `token` names.

    `http`: an `httpx.AsyncClient` of your own (proxies, TLS, timeouts); it is
    not closed by this client. Without one, a client is made whose read timeout
    (45 s) outlasts the broker's 15 s keepalive. `max_attempts` consecutive
    failures end `events()` with `GaveUpError`; waits are full jitter between 0
    and `min(max_delay_s, base_delay_s * 2**attempt)` seconds.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        http: httpx.AsyncClient | None = None,
        max_attempts: int = 10,
        base_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=45.0))
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def create_thread(self, title: str | None = None) -> Thread:
        """`POST /api/threads` → the new thread."""
        return Thread.model_validate(await self._call("POST", "/api/threads", {"title": title}))

    async def start_run(self, thread_id: str, message: str) -> RunStarted:
        """`POST /api/threads/{thread_id}/runs` → the accepted run (409 → `BadRequestError`)."""
        body = await self._call("POST", f"/api/threads/{thread_id}/runs", {"message": message})
        return RunStarted.model_validate(body)

    async def run(self, run_id: str) -> RunInfo:
        """`GET /api/runs/{run_id}` → the run's status and head."""
        return RunInfo.model_validate(await self._call("GET", f"/api/runs/{run_id}"))

    async def cancel(self, run_id: str) -> CancelResult:
        """`POST /api/runs/{run_id}/cancel` → 202 accepted, or 200 with the final status."""
        return CancelResult.model_validate(await self._call("POST", f"/api/runs/{run_id}/cancel"))

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request, no retry: a start or a cancel must not be sent twice by accident.

        A 5xx or a transport failure is `GaveUpError` with `attempts=1`.
        """
        try:
            response = await self._http.request(
                method, self.base_url + path, json=body, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise GaveUpError(f"{method} {path}: {exc!r}", attempts=1) from exc
        if response.status_code >= 400:
            error = _error_of(response, response.content)
            if response.status_code >= 500:
                raise GaveUpError(f"{method} {path}: {error}", attempts=1, code=error.code)
            raise error
        return response.json()

    async def events(
        self,
        run_id: str,
        cursor: str | int | None = None,
        *,
        on_state: Callable[[ConnectionState], None] | None = None,
    ) -> AsyncGenerator[StoredEvent, None]:
        """The run's events after `cursor` (None/0: from the start, "now": from the head).

        Ends after the terminal event (or when a finished run has nothing after
        `cursor`). `on_state` hears "live" when a stream opens and "reconnecting"
        when one broke. Raises `AuthenticationError`, `NotFoundError`,
        `BadRequestError` (e.g. `invalid_cursor`) at once and `GaveUpError`
        after `max_attempts` failed tries in a row.
        """
        last: int | None = None
        opened = _Opening()
        failures = 0
        while True:
            # Before any event, resume from the cursor the broker resolved (the opening
            # block's `id:`), so a "now" that was cut early does not move forward in time.
            wire_cursor = last if last is not None else opened.cursor or cursor
            stream = self._stream(run_id, wire_cursor, on_state, opened)
            try:
                async with contextlib.aclosing(stream) as one:
                    async for stored in one:
                        if last is not None and stored.seq <= last:
                            continue  # already yielded: a duplicate after a reconnect
                        last, failures = stored.seq, 0
                        yield stored
                        if is_terminal(stored.event):
                            return
                if await self._nothing_due(
                    run_id, (opened.cursor or cursor) if last is None else last
                ):
                    return  # a finished run sends what is due and closes (design 4.2)
                raise _Retryable("the stream ended before the terminal event")
            except _Retryable as exc:
                failures += 1
                if failures >= self.max_attempts:
                    raise GaveUpError(
                        f"gave up on run {run_id} after {failures} tries: {exc}",
                        attempts=failures,
                    ) from exc
                if on_state is not None:
                    on_state("reconnecting")
                delay = random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**failures))
                log.info("client_reconnecting", run_id=run_id, after=last, error=str(exc))
                await asyncio.sleep(delay)

    async def _nothing_due(self, run_id: str, cursor: str | int | None) -> bool:
        """Whether the run has finished and `cursor` ("now": the head) is at its last seq."""
        text = None if cursor is None else str(cursor)
        position = 2**63 - 1 if text == "now" else int(text or 0) if _is_seq(text) else None
        try:
            info = await self.run(run_id)
        except ClientError:  # no answer to trust: the caller retries the stream
            return False
        finished = info.status in TERMINAL_STATUSES
        return finished and position is not None and position >= info.last_seq

    async def _stream(
        self,
        run_id: str,
        cursor: str | int | None,
        on_state: Callable[[ConnectionState], None] | None,
        opened: _Opening,
    ) -> AsyncGenerator[StoredEvent, None]:
        """One connection's events; transport trouble and 5xx become `_Retryable`."""
        url = f"{self.base_url}/api/runs/{run_id}/subscribe"
        headers = {**self._headers, "Accept": "text/event-stream"}
        body = {"cursor": None if cursor is None else str(cursor)}
        try:
            async with self._http.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 500:
                    raise _Retryable(f"{response.status_code} from the broker")
                if response.status_code >= 400:
                    raise _error_of(response, await response.aread())
                if on_state is not None:
                    on_state("live")
                parser = SSEParser()
                async for chunk in response.aiter_bytes():
                    events = parser.feed(chunk)
                    if opened.cursor is None and _is_seq(parser.last_event_id):
                        opened.cursor = parser.last_event_id
                    for sse in events:
                        stored = _decode(sse.data)
                        if stored is not None:
                            yield stored
        except httpx.HTTPError as exc:  # refused, cut, timed out, malformed HTTP
            raise _Retryable(repr(exc)) from exc


class SyncBrokerClient:
    """The same calls, blocking, for scripts: each runs on this object's own event loop.

    Not for use inside a running event loop (use `BrokerClient` there). `options` are
    `BrokerClient`'s keyword arguments.
    """

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = BrokerClient(base_url, token, **options)

    def __enter__(self) -> SyncBrokerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()

    def create_thread(self, title: str | None = None) -> Thread:
        return self._loop.run_until_complete(self._client.create_thread(title))

    def start_run(self, thread_id: str, message: str) -> RunStarted:
        return self._loop.run_until_complete(self._client.start_run(thread_id, message))

    def run(self, run_id: str) -> RunInfo:
        return self._loop.run_until_complete(self._client.run(run_id))

    def cancel(self, run_id: str) -> CancelResult:
        return self._loop.run_until_complete(self._client.cancel(run_id))

    def events(self, run_id: str, cursor: str | int | None = None) -> Iterator[StoredEvent]:
        """`BrokerClient.events()`, one event per `next()`."""
        stream = self._client.events(run_id, cursor)
        try:
            while True:
                try:
                    yield self._loop.run_until_complete(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run_until_complete(stream.aclose())


def _is_seq(text: str | None) -> bool:
    return text is not None and text.isascii() and text.isdigit()


def _decode(data: str) -> StoredEvent | None:
    """A frame's event, or None (logged) for one this client does not know."""
    try:
        return parse_wire_event(json.loads(data))
    except (ValueError, TypeError, ValidationError) as exc:
        log.warning("client_event_dropped", error=str(exc)[:200])
        return None
