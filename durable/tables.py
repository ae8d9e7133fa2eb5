"""The tables of user Durable Streams (runs are served from their own tables).

`ds_streams` holds one row per stream (its configuration, `last_seq`, closure);
the row is locked (`FOR UPDATE`) by every append, which makes its appends
sequential: one writer per stream at a time. `ds_messages` holds the
messages, AES-256-GCM sealed with `ds:<stream id>:<seq>` as associated data.
`ds_producers` holds each idempotent producer's epoch and last seq.
A fork (`forked_from`) reads seqs up to `fork_seq` from its source and owns the
rest; a deleted or expired stream that still has forks stays, `deleted`, until
its last fork is gone (reads answer 410 meanwhile).
A deleted stream's rows go with it (ON DELETE CASCADE); a stream created
again at the same path gets a new id, so old ciphertext cannot reappear.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

__all__ = ["ds_messages", "ds_producers", "ds_streams", "metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ds_streams = Table(
    "ds_streams",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("workspace_id", UUID(as_uuid=True), nullable=False),
    Column("path", Text, nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("ttl_seconds", BigInteger, nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("expires_at_text", String(100), nullable=True),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("accessed_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("last_seq", BigInteger, server_default=text("0"), nullable=False),
    Column("writer_seq", Text, nullable=True),
    Column("closed", Boolean, server_default=text("false"), nullable=False),
    Column("closed_by", Text, nullable=True),
    Column("forked_from", BigInteger, nullable=True),
    Column("fork_seq", BigInteger, server_default=text("0"), nullable=False),
    Column("fork_sub", BigInteger, server_default=text("0"), nullable=False),
    Column("deleted", Boolean, server_default=text("false"), nullable=False),
    UniqueConstraint("workspace_id", "path"),
)

ds_messages = Table(
    "ds_messages",
    metadata,
    Column(
        "stream_id",
        BigInteger,
        ForeignKey("ds_streams.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", BigInteger, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    PrimaryKeyConstraint("stream_id", "seq"),
)

ds_producers = Table(
    "ds_producers",
    metadata,
    Column(
        "stream_id",
        BigInteger,
        ForeignKey("ds_streams.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("producer_id", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    PrimaryKeyConstraint("stream_id", "producer_id"),
)
