"""SQL of a workspace's integrations: listed without credentials, credentials sealed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from broker.errors import Conflict, NotFound
from broker.store.connection import Connected
from broker.store.records import IntegrationRecord
from broker.store.sealing import open_credentials, seal_credentials
from broker.store.statements import integrations as _integrations
from models.ids import IntegrationId, WorkspaceId, new_id

__all__ = ["IntegrationQueries"]

_INTEGRATION_COLUMNS: list[sa.ColumnElement[Any]] = [
    _integrations.c.id,
    _integrations.c.workspace_id,
    _integrations.c.kind,
    _integrations.c.name,
    _integrations.c.created_at,
]
"""What an integration is, without its credentials: the columns every reader selects."""


def _integration_record(row: sa.Row[Any]) -> IntegrationRecord:
    return IntegrationRecord(
        integration_id=IntegrationId(row.id),
        workspace_id=WorkspaceId(row.workspace_id),
        kind=row.kind,
        name=row.name,
        created_at=row.created_at,
    )


class IntegrationQueries(Connected):
    """The integrations part of the PostgreSQL adapter."""

    async def list_integrations(self, workspace_id: WorkspaceId) -> list[IntegrationRecord]:
        """The workspace's integrations by name, never their credentials."""
        stmt = (
            sa.select(*_INTEGRATION_COLUMNS)
            .where(_integrations.c.workspace_id == workspace_id)
            .order_by(_integrations.c.name)
        )
        async with self.transaction() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_integration_record(row) for row in rows]

    async def create_integration(
        self, workspace_id: WorkspaceId, kind: str, name: str, credentials: dict[str, Any]
    ) -> IntegrationRecord:
        """Insert an integration, its credentials sealed; `Conflict` if the name is taken."""
        integration_id = IntegrationId(new_id())
        sealed = seal_credentials(self.keyring, integration_id, credentials)
        stmt = (
            insert(_integrations)
            .values(
                id=integration_id,
                workspace_id=workspace_id,
                kind=kind,
                name=name,
                key_id=sealed.key_id,
                credentials=sealed.blob,
            )
            .on_conflict_do_nothing(index_elements=["workspace_id", "name"])
            .returning(*_INTEGRATION_COLUMNS)
        )
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            # DO NOTHING rather than catching the IntegrityError: a taken name is an
            # expected answer, and the driver's message would quote the whole key.
            raise Conflict(f"an integration named {name!r} already exists in this workspace")
        return _integration_record(row)

    async def replace_integration_credentials(
        self, integration_id: IntegrationId, credentials: dict[str, Any]
    ) -> None:
        """Seal new credentials for an existing integration (the demo's password rotation)."""
        sealed = seal_credentials(self.keyring, integration_id, credentials)
        stmt = (
            sa.update(_integrations)
            .where(_integrations.c.id == integration_id)
            .values(key_id=sealed.key_id, credentials=sealed.blob)
        )
        async with self.transaction() as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise NotFound(f"integration {integration_id} not found")

    async def integration_credentials(
        self, integration_id: IntegrationId, *, workspace_id: WorkspaceId | None = None
    ) -> tuple[IntegrationRecord, dict[str, Any]]:
        """An integration with its decrypted credentials (for the callback), or `NotFound`.

        With `workspace_id`, another workspace's integration is `NotFound` too.
        """
        sealed = [_integrations.c.key_id, _integrations.c.credentials]
        stmt = sa.select(*_INTEGRATION_COLUMNS, *sealed).where(_integrations.c.id == integration_id)
        if workspace_id is not None:
            stmt = stmt.where(_integrations.c.workspace_id == workspace_id)
        async with self.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise NotFound(f"integration {integration_id} not found")
        credentials = open_credentials(self.keyring, integration_id, row.key_id, row.credentials)
        return _integration_record(row), credentials
