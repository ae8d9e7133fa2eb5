"""Password authentication on the embedded PostgreSQL and on the demo's reader.

These start embedded servers of their own (pgserver, as `broker up` does):
a data directory made the old way (trust, no password) is upgraded in place,
and `broker token` still works next to a live server.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest
from sqlalchemy.engine import make_url

from broker.integrations.demo import ensure_demo_integration
from broker.integrations.querying import asyncpg_dsn
from broker.store.database import HBA_CONF, PASSWORD_FILE, embedded_postgres
from broker.store.postgres import Store
from broker.web.auth import verify_token
from broker.web.settings import Settings
from tests.database import TestDatabases
from tests.integration.test_integrations_demo import drop_demo


def _with_password(url: str, password: str | None, user: str = "postgres") -> str:
    # `_replace`, not `set`: `set(password=None)` would keep the password.
    parsed = make_url(url)._replace(username=user, password=password)
    return asyncpg_dsn(parsed.render_as_string(hide_password=False))


async def _refused(dsn: str) -> None:
    with pytest.raises(
        (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
    ):
        conn = await asyncpg.connect(dsn)
        await conn.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: other pytest sessions reset its parent to mode 0700,
    # which the server's own user (when run as root) could then not traverse.
    with tempfile.TemporaryDirectory(prefix="broker-test-upgrade-") as root:
        yield Path(root) / "data"


async def test_an_old_trusting_data_directory_is_upgraded_in_place(data_dir: Path) -> None:
    import pgserver

    (data_dir / "pg").mkdir(parents=True)
    old = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")  # what an older broker made
    try:
        trusted = old.get_uri().replace("postgresql://postgres:@", "postgresql://postgres@")
        conn = await asyncpg.connect(trusted)  # no password: trust
        await conn.execute("CREATE TABLE kept (n int)")
        await conn.close()
        os.chmod(data_dir, 0o755)  # what an older broker left
        with embedded_postgres(data_dir) as url:
            password = make_url(url).password
            assert password
            _assert_private(data_dir)
            await _assert_statements_stay_out_of_the_log(url, data_dir / "pg" / "log")
            secret = data_dir / PASSWORD_FILE
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            assert secret.read_text() == password
            assert (data_dir / "pg" / "pg_hba.conf").read_text() == HBA_CONF
            for wrong in (None, "wrong", password + "x"):
                await _refused(_with_password(url, wrong))
            conn = await asyncpg.connect(asyncpg_dsn(url))
            assert await conn.fetchval("SELECT to_regclass('kept')::text") == "kept"
            await conn.close()
            # `broker token` next to the live server: it joins the same server and password.
            env = {**os.environ, "BROKER_DATA_DIR": str(data_dir)}
            env.pop("DATABASE_URL", None)
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "broker.cli", "token", "--workspace", "w"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            stored = Settings(BROKER_DATA_DIR=data_dir).with_secrets()
            secret_key = stored.require(stored.secret, "BROKER_SECRET")
            assert verify_token(secret_key, done.stdout.strip()).member_id == "owner"
            # A second start is a no-op: same password, same configuration.
            with embedded_postgres(data_dir) as again:
                assert again == url
    finally:
        old.cleanup()


def _assert_private(data_dir: Path) -> None:
    """0700; as root, pgserver's own user may only pass through (x) to reach `pg/`."""
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    assert mode == (0o711 if os.geteuid() == 0 else 0o700), oct(mode)
    for entry in data_dir.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) & 0o077 == 0, entry


async def _assert_statements_stay_out_of_the_log(url: str, server_log: Path) -> None:
    marker = f"tenant_secret_{uuid.uuid4().hex}"
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        # A reload reaches a session between two commands: ask until it has.
        for _ in range(200):
            if await conn.fetchval("SHOW log_min_error_statement") == "panic":
                break
            await asyncio.sleep(0.01)
        assert await conn.fetchval("SHOW log_min_error_statement") == "panic"
        assert await conn.fetchval("SHOW log_statement") == "none"
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(f"SELECT * FROM no_such_table WHERE note = '{marker}'")
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(f"SELECT 1 / 0 AS {marker}")
    finally:
        await conn.close()
    written = await asyncio.to_thread(server_log.read_text, errors="replace")
    assert "division by zero" in written  # the errors are logged, their statements are not
    assert marker not in written


async def test_a_new_data_directory_is_private_and_keeps_statements_out_of_the_log(
    data_dir: Path,
) -> None:
    with embedded_postgres(data_dir) as url:
        _assert_private(data_dir)
        assert stat.S_IMODE((data_dir / "pg").stat().st_mode) & 0o077 == 0
        await _assert_statements_stay_out_of_the_log(url, data_dir / "pg" / "log")


@pytest.fixture
async def demo(databases: TestDatabases) -> AsyncIterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    database, role = f"demo_auth_{suffix}", f"demo_auth_reader_{suffix}"
    yield database, role
    await drop_demo(databases.admin_url, database, role)


async def test_the_demo_reader_needs_its_random_sealed_password(
    store: Store, databases: TestDatabases, demo: tuple[str, str]
) -> None:
    database, role = demo
    workspace_id = await store.ensure_workspace("acme")
    record = await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    _, credentials = await store.integration_credentials(record.integration_id)
    assert credentials["managed"] is True
    dsn = str(credentials["dsn"])
    password = make_url(dsn).password
    assert password and len(password) >= 32
    assert databases.admin_url not in password  # not derived from anything anyone holds
    for wrong in (None, "wrong", password[:-1]):
        await _refused(_with_password(dsn, wrong, role))
    conn = await asyncpg.connect(dsn)
    assert await conn.fetchval("SELECT count(*) FROM products") > 0
    await conn.close()

    # An integration sealed by an older broker (no `managed`, another password) is re-sealed.
    await store.replace_integration_credentials(record.integration_id, {"dsn": dsn + "x"})
    again = await ensure_demo_integration(
        store, databases.admin_url, workspace_id, database=database, role=role
    )
    assert again == record
    _, resealed = await store.integration_credentials(record.integration_id)
    assert resealed["managed"] is True
    assert make_url(str(resealed["dsn"])).password not in (password, password + "x")
    conn = await asyncpg.connect(str(resealed["dsn"]))
    await conn.close()
    await _refused(dsn)  # the old password no longer opens the role
