"""seal thread titles

Thread titles were stored in plaintext; they are user content and are now
sealed like message content (invariant 4): `title` becomes the AES-GCM blob
and `title_key_id` names its key, bound to `thread-title:<id>`. Existing
titles are sealed in place, with the keyring the caller hands in as
`config.attributes["keyring"]` (`broker migrate` does); a database holding
titles cannot be upgraded (or downgraded) without it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _aad(thread_id: Any) -> bytes:
    return f"thread-title:{thread_id}".encode()  # = broker.store.title_aad


def _keyring(rows: list[Any]) -> Any:
    keyring = context.config.attributes.get("keyring")
    if rows and keyring is None:
        raise RuntimeError(
            "revision 0002 seals thread titles and needs the encryption keys: "
            "run it with `broker migrate` (BROKER_ENCRYPTION_KEYS)"
        )
    return keyring


def upgrade() -> None:
    op.add_column("threads", sa.Column("title_key_id", sa.String(length=64), nullable=True))
    op.add_column("threads", sa.Column("sealed_title", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    rows = list(bind.execute(sa.text("SELECT id, title FROM threads WHERE title IS NOT NULL")))
    keyring = _keyring(rows)
    for thread_id, title in rows:
        sealed = keyring.encrypt(title.encode(), _aad(thread_id))
        bind.execute(
            sa.text("UPDATE threads SET title_key_id = :k, sealed_title = :b WHERE id = :id"),
            {"k": sealed.key_id, "b": sealed.blob, "id": thread_id},
        )
    op.drop_column("threads", "title")
    op.alter_column("threads", "sealed_title", new_column_name="title")


def downgrade() -> None:
    op.add_column("threads", sa.Column("plain_title", sa.String(length=500), nullable=True))
    bind = op.get_bind()
    rows = list(
        bind.execute(sa.text("SELECT id, title_key_id, title FROM threads WHERE title IS NOT NULL"))
    )
    keyring = _keyring(rows)
    for thread_id, key_id, blob in rows:
        plain = keyring.decrypt(key_id, bytes(blob), _aad(thread_id)).decode()
        bind.execute(
            sa.text("UPDATE threads SET plain_title = :t WHERE id = :id"),
            {"t": plain, "id": thread_id},
        )
    op.drop_column("threads", "title")
    op.drop_column("threads", "title_key_id")
    op.alter_column("threads", "plain_title", new_column_name="title")
