"""Creating, appending to and closing a stream: the protocol's write rules.

Every write is one transaction that holds the stream's row lock, so checks
(closure, content type, producer epoch and seq, `Stream-Seq`) and the write
itself see the same state, and a retried producer append is stored at most
once. Answers are `Outcome`s (status and headers); refusals raise
`ProtocolError`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, replace

from durable.offsets import InvalidOffset, offset_of, seq_of
from durable.protocol import (
    ProducerDecision,
    ProtocolError,
    decide_producer,
    is_json,
    json_messages,
    normalize_content_type,
    parse_expires_at,
    parse_producer,
    parse_ttl,
)
from durable.store import DurableStore, Locked, StreamRecord
from durable.wakeups import Wakeups

__all__ = ["AppendRequest", "CreateRequest", "Outcome", "Writer"]

_DEFAULT_TYPE = "application/octet-stream"
_FORK_OFFSET = re.compile(r"^\d+_\d+$")
_SUB_OFFSET = re.compile(r"^(0|[1-9]\d{0,17})$")
_MAX_CONTENT_TYPE = 200  # the column's width


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    content_type: str | None
    ttl: str | None
    expires_at: str | None
    closed: bool
    body: bytes
    forked_from: str | None = None
    fork_offset: str | None = None
    fork_sub: str | None = None


@dataclass(frozen=True, slots=True)
class AppendRequest:
    content_type: str | None
    body: bytes
    close: bool
    stream_seq: str | None
    producer_id: str | None
    producer_epoch: str | None
    producer_seq: str | None


def _content_type_of(given: str | None) -> str:
    """The stream's content type: as given when it looks like `type/subtype`.

    Raises ProtocolError 400 for one longer than the table holds.
    """
    if given and len(given.strip()) > _MAX_CONTENT_TYPE:
        raise ProtocolError(400, "Content-Type is too long")
    if given and "/" in given and normalize_content_type(given).split("/")[0]:
        return given.strip()
    return _DEFAULT_TYPE


class Writer:
    """The write side of `/ds/` for one process."""

    def __init__(self, store: DurableStore, wakeups: Wakeups) -> None:
        self._store = store
        self._wakeups = wakeups

    async def create(self, workspace_id: uuid.UUID, path: str, req: CreateRequest) -> Outcome:
        """PUT: 201 created, 200 when an identical stream exists, 409 when it differs."""
        if req.ttl is not None and req.expires_at is not None:
            raise ProtocolError(400, "Cannot specify both Stream-TTL and Stream-Expires-At")
        ttl = parse_ttl(req.ttl) if req.ttl is not None else None
        expires = parse_expires_at(req.expires_at) if req.expires_at is not None else None
        content_type = _content_type_of(req.content_type)
        fork = await self._fork_of(workspace_id, req)
        prefix: list[bytes] = []
        if fork is not None:
            source, fork_seq, sub, prefix = fork
            if req.content_type is None or not req.content_type.strip():
                content_type = source.content_type
            elif normalize_content_type(content_type) != normalize_content_type(
                source.content_type
            ):
                raise ProtocolError(409, "Content type mismatch with source stream")
            if ttl is None and expires is None:
                ttl, expires = source.ttl_seconds, source.expires_at
                req = replace(req, expires_at=source.expires_at_text)
        async with self._store.creating(
            workspace_id,
            path,
            content_type=content_type,
            ttl_seconds=ttl,
            expires_at=expires,
            expires_at_text=req.expires_at,
            fork=None if fork is None else (fork[0].id, fork_seq, sub),
        ) as (locked, created):
            stream = locked.stream
            if not created:
                if stream.deleted:
                    raise ProtocolError(409, "a deleted stream still has forks at this path")
                same = (
                    normalize_content_type(stream.content_type)
                    == normalize_content_type(content_type)
                    and stream.ttl_seconds == ttl
                    and stream.expires_at_text == req.expires_at
                    and stream.closed == req.closed
                    and stream.forked_from == (None if fork is None else fork[0].id)
                    and (req.fork_offset is None or fork is None or stream.fork_seq == fork_seq)
                    and stream.fork_sub == (0 if fork is None else sub)
                )
                if not same:
                    raise ProtocolError(409, "Stream already exists with different configuration")
                last = stream.last_seq
            else:
                messages: list[bytes] = []
                if req.body:
                    messages = (
                        json_messages(req.body, allow_empty_array=True)
                        if is_json(content_type)
                        else [req.body]
                    )
                last = await locked.append([*prefix, *messages], close=req.closed)
        if created:
            self._wakeups.wake(stream.id)
        headers = {"content-type": stream.content_type, "Stream-Next-Offset": offset_of(last)}
        if req.closed:
            headers["Stream-Closed"] = "true"
        return Outcome(201 if created else 200, headers)

    async def _fork_of(
        self, workspace_id: uuid.UUID, req: CreateRequest
    ) -> tuple[StreamRecord, int, int, list[bytes]] | None:
        """For a fork: its source, fork seq, sub-offset and materialized prefix message."""
        if req.fork_offset is not None and not _FORK_OFFSET.match(req.fork_offset):
            raise ProtocolError(400, "Invalid Stream-Fork-Offset format")
        if req.fork_sub is not None:
            if req.forked_from is None:
                raise ProtocolError(400, "Stream-Fork-Sub-Offset requires Stream-Forked-From")
            if not _SUB_OFFSET.match(req.fork_sub):
                raise ProtocolError(400, "Invalid Stream-Fork-Sub-Offset format")
        if req.forked_from is None:
            return None
        source = await self._store.get(workspace_id, req.forked_from.lstrip("/"))
        if source is None:
            raise ProtocolError(404, "Source stream not found")
        if source.deleted:
            raise ProtocolError(409, "source stream was deleted but still has active forks")
        try:
            fork_seq = source.last_seq if req.fork_offset is None else seq_of(req.fork_offset)
        except InvalidOffset as exc:
            raise ProtocolError(400, "Invalid Stream-Fork-Offset format") from exc
        if fork_seq > source.last_seq:
            raise ProtocolError(400, "Fork offset beyond source stream length")
        sub = int(req.fork_sub or "0")
        prefix: list[bytes] = []
        if sub > 0:
            if req.fork_offset is None:
                raise ProtocolError(400, "Stream-Fork-Sub-Offset needs Stream-Fork-Offset")
            if is_json(source.content_type):
                # Every JSON value is a message of its own: k values on is k seqs on.
                if fork_seq + sub > source.last_seq:
                    raise ProtocolError(400, "Invalid fork sub-offset")
                fork_seq += sub
            else:
                _, following = await self._store.read(source.id, fork_seq)
                if not following or sub > len(following[0]):
                    raise ProtocolError(400, "Invalid fork sub-offset")
                prefix = [following[0][:sub]]
        return source, fork_seq, sub, prefix

    async def append(self, workspace_id: uuid.UUID, path: str, req: AppendRequest) -> Outcome:
        """POST: append the body (or only close the stream, with an empty body)."""
        producer = parse_producer(req.producer_id, req.producer_epoch, req.producer_seq)
        if not req.body and not req.close:
            raise ProtocolError(400, "Empty body")
        if req.body and not req.content_type:
            raise ProtocolError(400, "Content-Type header is required")
        async with self._store.locked(workspace_id, path) as locked:
            if locked is None:
                raise ProtocolError(404, "Stream not found")
            if locked.stream.deleted:
                raise ProtocolError(410, "Stream is gone")
            outcome = await self._append_locked(locked, req, producer)
        if outcome.status in (200, 204) and "Stream-Next-Offset" in outcome.headers:
            self._wakeups.wake(locked.stream.id)
        return outcome

    async def _append_locked(
        self, locked: Locked, req: AppendRequest, producer: tuple[str, int, int] | None
    ) -> Outcome:
        stream = locked.stream
        mark = None if producer is None else json.dumps(list(producer))
        closed_now = {"Stream-Closed": "true", "Stream-Next-Offset": offset_of(stream.last_seq)}
        if stream.closed:
            if producer is not None and mark == stream.closed_by:
                return Outcome(204, {**closed_now, **_producer_headers(producer[1], producer[2])})
            if not req.body:
                if producer is None:
                    return Outcome(204, closed_now)
                raise ProtocolError(409, "Stream is closed", closed_now)
            raise ProtocolError(409, "Stream is closed", closed_now)
        if req.body and normalize_content_type(req.content_type) != normalize_content_type(
            stream.content_type
        ):
            raise ProtocolError(409, "Content-type mismatch")
        decision: ProducerDecision | None = None
        if producer is not None:
            decision = decide_producer(await locked.producer(producer[0]), producer[1], producer[2])
            refusal = _refusal(decision, producer)
            if refusal is not None:
                return refusal
        given, stored = req.stream_seq, stream.writer_seq
        if given is not None and stored is not None and given <= stored:
            raise ProtocolError(409, "Sequence conflict")
        messages: list[bytes] = []
        if req.body:
            messages = (
                json_messages(req.body, allow_empty_array=False)
                if is_json(stream.content_type)
                else [req.body]
            )
        last = await locked.append(
            messages, writer_seq=req.stream_seq, close=req.close, closed_by=mark
        )
        if producer is not None and decision is not None and decision.state is not None:
            await locked.save_producer(producer[0], decision.state)
        headers = {"Stream-Next-Offset": offset_of(last)}
        if req.close:
            headers["Stream-Closed"] = "true"
        if producer is None:
            return Outcome(204, headers)
        headers.update(_producer_headers(producer[1], producer[2]))
        return Outcome(204 if not req.body else 200, headers)


def _producer_headers(epoch: int, seq: int) -> dict[str, str]:
    return {"Producer-Epoch": str(epoch), "Producer-Seq": str(seq)}


def _refusal(decision: ProducerDecision, producer: tuple[str, int, int]) -> Outcome | None:
    """The answer to a producer append that must not be stored; None to store it."""
    _, epoch, seq = producer
    if decision.status == "accepted":
        return None
    if decision.status == "duplicate" and decision.state is not None:
        return Outcome(204, _producer_headers(epoch, decision.state.last_seq))
    if decision.status == "stale_epoch" and decision.state is not None:
        raise ProtocolError(
            403, "Stale producer epoch", {"Producer-Epoch": str(decision.state.epoch)}
        )
    if decision.status == "invalid_epoch_seq":
        raise ProtocolError(400, "New epoch must start with sequence 0")
    raise ProtocolError(
        409,
        "Producer sequence gap",
        {"Producer-Expected-Seq": str(decision.expected_seq), "Producer-Received-Seq": str(seq)},
    )
