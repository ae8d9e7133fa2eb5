"""The protocol's pure rules: content types, JSON bodies, producers, cursors, SSE.

Nothing here does I/O. Messages are stored one per seq: a JSON-mode append
of an array stores each element as its own message (one level flattened),
any other append stores its body as one message.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "ProducerDecision",
    "ProducerState",
    "ProtocolError",
    "decide_producer",
    "encode_sse",
    "etag_of",
    "is_json",
    "is_text",
    "json_messages",
    "normalize_content_type",
    "parse_expires_at",
    "parse_ttl",
    "response_cursor",
    "sse_event",
]

_CURSOR_EPOCH_S = datetime.fromisoformat("2024-10-09T00:00:00+00:00").timestamp()
_CURSOR_INTERVAL_S = 20
_TTL = re.compile(r"^(0|[1-9]\d*)$")
_INTEGER = re.compile(r"^\d+$")
MAX_TTL_S = 100 * 365 * 24 * 3600
"""The longest `Stream-TTL` taken (100 years): any longer would overflow a date."""
_MAX_EPOCH = 2**53 - 1
_MAX_PRODUCER_SEQ = 2**31 - 1
_MAX_EXPIRES_TEXT = 100


class ProtocolError(Exception):
    """A request the protocol refuses: `status` and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def normalize_content_type(content_type: str | None) -> str:
    """`Application/JSON; charset=utf-8` -> `application/json`; None -> ''."""
    return (content_type or "").split(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    return normalize_content_type(content_type) == "application/json"


def is_text(content_type: str | None) -> bool:
    """Whether SSE can carry the stream's bytes as text (else base64)."""
    ct = normalize_content_type(content_type)
    return ct.startswith("text/") or ct == "application/json"


def json_messages(body: bytes, *, allow_empty_array: bool) -> list[bytes]:
    """The messages of a JSON-mode body, each a compact JSON value.

    Raises ProtocolError 400 for invalid JSON, or an empty array on append.
    """
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(400, "Invalid JSON") from exc
    values = value if isinstance(value, list) else [value]
    if not values and not allow_empty_array:
        raise ProtocolError(400, "Empty arrays are not allowed")
    return [_compact(v) for v in values]


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def parse_ttl(value: str) -> int:
    """`Stream-TTL`: seconds, a plain integer in 0..`MAX_TTL_S`; else ProtocolError 400."""
    if not _TTL.match(value) or len(value) > 12 or int(value) > MAX_TTL_S:
        raise ProtocolError(400, "Invalid Stream-TTL value")
    return int(value)


def parse_expires_at(value: str) -> datetime:
    """`Stream-Expires-At`: an RFC 3339 timestamp with a zone; else ProtocolError 400.

    The instant must exist in UTC between the years 1 and 9999 (what a date can hold).
    """
    if len(value) > _MAX_EXPIRES_TEXT:
        raise ProtocolError(400, "Invalid Stream-Expires-At timestamp")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("no zone")
        parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ProtocolError(400, "Invalid Stream-Expires-At timestamp") from exc
    return parsed


def parse_producer(
    producer_id: str | None, epoch: str | None, seq: str | None
) -> tuple[str, int, int] | None:
    """The (Producer-Id, Producer-Epoch, Producer-Seq) triple, all or none; else 400.

    The epoch is at most 2**53 - 1, the seq at most 2**31 - 1 (what the table holds).
    """
    given = [h is not None for h in (producer_id, epoch, seq)]
    if not any(given):
        return None
    if not all(given) or producer_id is None or epoch is None or seq is None:
        raise ProtocolError(
            400,
            "All producer headers (Producer-Id, Producer-Epoch, Producer-Seq) must be provided",
        )
    if producer_id == "":
        raise ProtocolError(400, "Invalid Producer-Id: must not be empty")
    for name, raw, most in (
        ("Producer-Epoch", epoch, _MAX_EPOCH),
        ("Producer-Seq", seq, _MAX_PRODUCER_SEQ),
    ):
        if not _INTEGER.match(raw) or len(raw) > 20 or int(raw) > most:
            raise ProtocolError(400, f"Invalid {name}: must be an integer from 0 to {most}")
    return producer_id, int(epoch), int(seq)


@dataclass(frozen=True, slots=True)
class ProducerState:
    epoch: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class ProducerDecision:
    """What to do with a producer's append: `accept` (then store `state`), or refuse."""

    status: Literal["accepted", "duplicate", "stale_epoch", "invalid_epoch_seq", "sequence_gap"]
    state: ProducerState | None = None
    expected_seq: int = 0


def decide_producer(current: ProducerState | None, epoch: int, seq: int) -> ProducerDecision:
    """Exactly-once for one producer: epochs fence old instances, seqs drop retries."""
    if current is None or epoch > current.epoch:
        if seq != 0:
            if current is None:
                return ProducerDecision("sequence_gap", expected_seq=0)
            return ProducerDecision("invalid_epoch_seq")
        return ProducerDecision("accepted", ProducerState(epoch, 0))
    if epoch < current.epoch:
        return ProducerDecision("stale_epoch", current)
    if seq <= current.last_seq:
        return ProducerDecision("duplicate", current)
    if seq == current.last_seq + 1:
        return ProducerDecision("accepted", ProducerState(epoch, seq))
    return ProducerDecision("sequence_gap", current, expected_seq=current.last_seq + 1)


def response_cursor(client_cursor: str | None, now: float | None = None) -> str:
    """`Stream-Cursor`: the current 20 s interval, moved past the client's (CDN collapsing)."""
    interval = math.floor(((now or time.time()) - _CURSOR_EPOCH_S) / _CURSOR_INTERVAL_S)
    if not client_cursor:
        return str(interval)
    try:
        client = int(client_cursor)
    except ValueError:
        return str(interval)
    if client < interval:
        return str(interval)
    jitter_s = random.randint(1, 3600)
    return str(client + max(1, math.ceil(jitter_s / _CURSOR_INTERVAL_S)))


def etag_of(path: str, start: str, end: str, closed: bool) -> str:
    """A read's ETag: the stream, the requested start and the returned end offset."""
    tag = base64.b64encode(path.encode()).decode()
    return f'"{tag}:{start}:{end}{":c" if closed else ""}"'


def encode_sse(payload: str) -> str:
    """`data:` lines for `payload`, one per line of it (CR, LF or CRLF split)."""
    lines = re.split(r"\r\n|\r|\n", payload)
    return "".join(f"data:{line}\n" for line in lines) + "\n"


def sse_event(kind: str, payload: str) -> bytes:
    return f"event: {kind}\n{encode_sse(payload)}".encode()
