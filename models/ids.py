"""Identifiers and statuses shared by every package.

Ids are UUIDs wrapped in `NewType`s so that a run id cannot be passed where a
thread id is expected without the type checker noticing.
"""

from __future__ import annotations

import uuid
from typing import Final, Literal, NewType

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "IntegrationId",
    "MemberId",
    "MessageId",
    "RunId",
    "RunStatus",
    "ThreadId",
    "WorkspaceId",
    "new_id",
]

WorkspaceId = NewType("WorkspaceId", uuid.UUID)
ThreadId = NewType("ThreadId", uuid.UUID)
RunId = NewType("RunId", uuid.UUID)
MessageId = NewType("MessageId", uuid.UUID)
IntegrationId = NewType("IntegrationId", uuid.UUID)
MemberId = NewType("MemberId", str)

RunStatus = Literal["pending", "streaming", "completed", "failed", "cancelled", "interrupted"]

ACTIVE_STATUSES: Final[frozenset[str]] = frozenset({"pending", "streaming"})
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset(
    {"completed", "failed", "cancelled", "interrupted"}
)


def new_id() -> uuid.UUID:
    """A fresh random id (UUID4)."""
    return uuid.uuid4()
