"""The database tables (design section 3), as typed SQLAlchemy 2 models.

The ORM classes are used for their `__table__` only: every statement is
SQLAlchemy Core in `broker/store/`, never lazy loading. Values marked
encrypted hold `nonce ‖ ciphertext ‖ tag`, with the key's id beside them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.status import RUN_STATUSES

__all__ = [
    "Base",
    "Integration",
    "LoginCode",
    "Message",
    "RawStreamEvent",
    "Run",
    "Thread",
    "Workspace",
    "metadata",
]

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=_NAMING)

_RUN_STATUSES = ", ".join(f"'{status}'" for status in RUN_STATUSES)


class Base(DeclarativeBase):
    metadata = metadata


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Workspace(Base):
    """The tenant."""

    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = _now()


class Thread(Base):
    """A conversation; its title sealed like message content (invariant 4)."""

    __tablename__ = "threads"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    title_key_id: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now()


class Run(Base):
    """One agent execution, with its writer lease and cancellation flag."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_RUN_STATUSES})", name="status"),
        # At most one run per thread may be streaming: the 409 is the database's word.
        Index(
            "uq_runs_active_thread",
            "thread_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'streaming')"),
        ),
        # Retention looks for runs finished before a cutoff.
        Index(
            "ix_runs_finished_at",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
        # The sweeper looks for expired leases among streaming runs only.
        Index(
            "ix_runs_streaming_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'streaming'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), nullable=False, index=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[datetime] = _now()
    streaming_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seq: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text("0"), default=0
    )
    agent_cursor: Mapped[str | None] = mapped_column(String(200))
    abort_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    aborted_by: Mapped[str | None] = mapped_column(String(200))
    writer_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(200))


class RawStreamEvent(Base):
    """The durable buffer: one encrypted event per row, addressed by (run_id, seq)."""

    __tablename__ = "raw_stream_events"
    __table_args__ = (PrimaryKeyConstraint("run_id", "seq"),)

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _now()
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Message(Base):
    """The final transcript of a thread; content encrypted."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("thread_id", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), nullable=False
    )
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    position: Mapped[int] = mapped_column(BigInteger, nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()


class Integration(Base):
    """Something agent tools may reach through broker callbacks; credentials encrypted."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(50), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    credentials: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()


class LoginCode(Base):
    """A one-time login link's code, kept only as its SHA-256: spent once, then useless."""

    __tablename__ = "login_codes"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    member_id: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
