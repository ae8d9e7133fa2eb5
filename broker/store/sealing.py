"""What is sealed and how: the one owner of the encrypted values' plaintext and AAD.

The keyring (`broker.store.crypto`) knows AES-GCM; this module knows what a
value is bound to. The associated data ties a ciphertext to where it lives:

    event        `<run_id>:<seq>`          plaintext: the event's JSON plus `ts`
    message      `message:<message_id>`    plaintext: the content, UTF-8
    integration  `integration:<id>`        plaintext: the credentials' JSON

so a row copied into another run, position or record fails authentication
instead of decrypting to a plausible lie. Only the PostgreSQL adapter seals;
the in-memory adapter keeps plaintext.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from broker.store.crypto import Keyring, Sealed
from broker.store.records import EventPage, PendingEvent, RawEvent, RawPage
from models.events import StoredEvent, StreamEvent, parse_event

__all__ = [
    "decode_event",
    "encode_event",
    "event_aad",
    "integration_aad",
    "message_aad",
    "open_credentials",
    "open_event",
    "open_message",
    "open_plaintext",
    "raw_page",
    "seal_credentials",
    "seal_events",
    "seal_message",
    "stamp",
    "title_aad",
]


def event_aad(run_id: object, seq: int) -> bytes:
    """The associated data of a stored event: `run_id:seq`."""
    return f"{run_id}:{seq}".encode()


def title_aad(thread_id: uuid.UUID) -> bytes:
    """The associated data of a thread's title: `thread-title:<id>`."""
    return f"thread-title:{thread_id}".encode()


def message_aad(message_id: uuid.UUID) -> bytes:
    """The associated data of a transcript message: `message:<id>`."""
    return f"message:{message_id}".encode()


def integration_aad(integration_id: uuid.UUID) -> bytes:
    """The associated data of an integration's credentials: `integration:<id>`."""
    return f"integration:{integration_id}".encode()


def encode_event(event: StreamEvent, ts: datetime) -> bytes:
    """The plaintext of a stored event: its JSON with the broker's receive time
    (`stamp`, which a `PendingEvent`'s JSON takes as it is)."""
    return stamp(event.model_dump_json().encode(), ts)


def stamp(body: bytes, ts: datetime) -> bytes:
    """An event's compact JSON `body` with the broker's receive time spliced in last."""
    return b'%s,"ts":"%s"}' % (body[:-1], ts.isoformat().encode())


def decode_event(seq: int, plaintext: bytes) -> StoredEvent:
    """The inverse of `encode_event`, addressed by `seq`."""
    body = json.loads(plaintext)
    ts = datetime.fromisoformat(body.pop("ts"))
    return StoredEvent(seq=seq, ts=ts, event=parse_event(body))


def seal_events(keyring: Keyring, events: Sequence[PendingEvent]) -> dict[str, list[Any]]:
    """The parallel arrays of an `unnest` insert (`run_ids`, `seqs`, `key_ids`, `payloads`)."""
    run_ids: list[uuid.UUID] = []
    seqs: list[int] = []
    key_ids: list[str] = []
    payloads: list[bytes] = []
    for item in events:
        sealed = keyring.encrypt(stamp(item.body, item.ts), event_aad(item.run_id, item.seq))
        run_ids.append(item.run_id)
        seqs.append(item.seq)
        key_ids.append(sealed.key_id)
        payloads.append(sealed.blob)
    return {"run_ids": run_ids, "seqs": seqs, "key_ids": key_ids, "payloads": payloads}


def open_event(
    keyring: Keyring, run_id: uuid.UUID, seq: int, key_id: str, payload: bytes
) -> StoredEvent:
    """Decrypt and validate one stored event row; `CryptoError` if it was moved or altered."""
    return decode_event(seq, open_plaintext(keyring, run_id, seq, key_id, payload))


def open_plaintext(
    keyring: Keyring, run_id: uuid.UUID, seq: int, key_id: str, payload: bytes
) -> bytes:
    """Decrypt one stored event row to its `encode_event` JSON, unparsed; `CryptoError`
    if it was moved or altered."""
    return keyring.decrypt(key_id, payload, event_aad(run_id, seq))


def seal_message(keyring: Keyring, message_id: uuid.UUID, content: str) -> Sealed:
    """A transcript message's content, sealed to its id."""
    return keyring.encrypt(content.encode(), message_aad(message_id))


def open_message(keyring: Keyring, message_id: uuid.UUID, key_id: str, blob: bytes) -> str:
    """The content of a sealed transcript message."""
    return keyring.decrypt(key_id, blob, message_aad(message_id)).decode()


def seal_credentials(
    keyring: Keyring, integration_id: uuid.UUID, credentials: dict[str, Any]
) -> Sealed:
    """An integration's credentials as compact JSON, sealed to its id."""
    plaintext = json.dumps(credentials, separators=(",", ":")).encode()
    return keyring.encrypt(plaintext, integration_aad(integration_id))


def open_credentials(
    keyring: Keyring, integration_id: uuid.UUID, key_id: str, blob: bytes
) -> dict[str, Any]:
    """The inverse of `seal_credentials`."""
    credentials: dict[str, Any] = json.loads(
        keyring.decrypt(key_id, blob, integration_aad(integration_id))
    )
    return credentials


def raw_page(page: EventPage) -> RawPage:
    """A page of parsed events as the raw page the same rows would have been."""
    raw = (RawEvent(e.seq, encode_event(e.event, e.ts)) for e in page)
    return RawPage(raw, more=page.more)
