"""durable streams: ds_streams, ds_messages, ds_producers

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "ds_streams",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=False),
        sa.Column("ttl_seconds", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at_text", sa.String(length=100), nullable=True),
        _now("created_at"),
        _now("accessed_at"),
        sa.Column("last_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("writer_seq", sa.Text(), nullable=True),
        sa.Column("closed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("closed_by", sa.Text(), nullable=True),
        sa.Column("forked_from", sa.BigInteger(), nullable=True),
        sa.Column("fork_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("fork_sub", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ds_streams")),
        sa.UniqueConstraint("workspace_id", "path", name=op.f("uq_ds_streams_workspace_id_path")),
    )
    op.create_table(
        "ds_messages",
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["ds_streams.id"],
            name=op.f("fk_ds_messages_stream_id_ds_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stream_id", "seq", name=op.f("pk_ds_messages")),
    )
    op.create_table(
        "ds_producers",
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("producer_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        _now("updated_at"),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["ds_streams.id"],
            name=op.f("fk_ds_producers_stream_id_ds_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stream_id", "producer_id", name=op.f("pk_ds_producers")),
    )


def downgrade() -> None:
    op.drop_table("ds_producers")
    op.drop_table("ds_messages")
    op.drop_table("ds_streams")
