"""Identifiers shared by every package (a run's status: `models.status`).

Ids are UUIDs wrapped in `NewType`s so that a run id cannot be passed where a
thread id is expected without the type checker noticing.
"""

from __future__ import annotations

import uuid
from typing import NewType

__all__ = [
    "IntegrationId",
    "MemberId",
    "MessageId",
    "RunId",
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


def new_id() -> uuid.UUID:
    """A fresh random id (UUID4)."""
    return uuid.uuid4()
