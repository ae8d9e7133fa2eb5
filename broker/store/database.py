"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL.

Without `DATABASE_URL` the broker starts PostgreSQL from the `pgserver`
package in `<BROKER_DATA_DIR>/pg` and stops it with the process that owns
it. pgserver listens on a unix socket only, runs the server as its own user
when started as root, and shares one server between processes that open the
same data directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine", "embedded_postgres", "embedded_url", "sync_url"]

log = structlog.get_logger(__name__)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine whose pooled connections survive a database restart."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def embedded_url(server: Any, database: str = "postgres") -> str:
    """The asyncpg URL of a pgserver instance (unix socket in its data dir)."""
    return f"postgresql+asyncpg://postgres:@/{database}?host={server.pgdata}"


def sync_url(url: str) -> str:
    """The same database for a synchronous driver-less use (psql, logs)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the embedded PostgreSQL in `data_dir/pg`; yield its URL."""
    import pgserver  # imported late: only the embedded path needs it

    pgdata = data_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    log.info("embedded_postgres_started", pgdata=str(pgdata))
    try:
        yield embedded_url(server)
    finally:
        server.cleanup()
        log.info("embedded_postgres_stopped", pgdata=str(pgdata))
