"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL.

Without `DATABASE_URL` the broker starts PostgreSQL from the `pgserver`
package in `<BROKER_DATA_DIR>/pg` and stops it with the process that owns
it. pgserver listens on a unix socket only, runs the server as its own user
when started as root, and shares one server between processes that open the
same data directory.

pgserver's `initdb` trusts every local connection; `secure_embedded` turns
that into password authentication (scram-sha-256) for every connection, the
socket included, before anything else connects. The superuser's password is
generated once into `<BROKER_DATA_DIR>/pg-superuser.password` (mode 0600); a
data directory made by an older broker (trust, no password) is upgraded in
place on its next start: the password is set, `pg_hba.conf` rewritten and
the configuration reloaded. A file lock serialises processes that start
together (`broker up` and `broker token`). The same way, the server is told
never to write a failing statement's text to its log (`ALTER SYSTEM`:
`log_min_error_statement = panic`, `log_statement = none`), and
`BROKER_DATA_DIR` is made private (0700) on every start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = [
    "HBA_CONF",
    "PASSWORD_FILE",
    "QUIET_LOG_SETTINGS",
    "create_engine",
    "embedded_postgres",
    "embedded_url",
    "secure_embedded",
    "sync_url",
]

log = structlog.get_logger(__name__)

PASSWORD_FILE = "pg-superuser.password"
HBA_CONF = """\
# Written by the stream broker: every connection authenticates, the socket included.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""

QUIET_LOG_SETTINGS = ("log_min_error_statement = 'panic'", "log_statement = 'none'")
"""What `postgresql.auto.conf` holds once the server log is kept free of statement text."""
QUIET_LOG_SQL = """\
ALTER SYSTEM SET log_min_error_statement = 'panic';
ALTER SYSTEM SET log_statement = 'none';
SELECT pg_reload_conf();
"""


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine whose pooled connections survive a database restart.

    No `pool_pre_ping`: it cost a `BEGIN; ROLLBACK` round trip before every
    transaction (about 5 statements each). A connection that died with the
    server fails its next statement instead; SQLAlchemy recognises the
    disconnect and invalidates the whole pool, so the caller's retry (the
    flush loop's, the reader's, a client's) runs on fresh connections.
    """
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
    )


def _socket_dir(server: Any) -> Path:
    info = server.get_postmaster_info()
    return Path(info.socket_dir or server.pgdata)


def embedded_url(server: Any, password: str, database: str = "postgres") -> str:
    """The asyncpg URL of a pgserver instance (unix socket), as its password-holding superuser."""
    return f"postgresql+asyncpg://postgres:{password}@/{database}?host={_socket_dir(server)}"


def sync_url(url: str) -> str:
    """The same database for a synchronous driver-less use (psql, logs)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _stored_password(path: Path) -> str:
    """Read, or create once with mode 0600, the superuser's password file."""
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_hex(24)  # hex: safe in a URL and in a SQL literal
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    os.replace(tmp, path)
    return password


def _psql(server: Any, password: str, sql: str) -> None:
    """Run `sql` through pgserver's psql on the socket (stdin: no secret in argv)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    info = server.get_postmaster_info()
    command = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    command += ["-h", str(_socket_dir(server)), "-p", str(info.port or 5432)]
    command += ["-U", "postgres", "-d", "postgres"]
    env = {**os.environ, "PGPASSWORD": password}
    subprocess.run(command, input=sql.encode(), env=env, check=True, capture_output=True)


def secure_embedded(server: Any, password_file: Path) -> str:
    """Require a password on every connection to `server`; return the superuser's password."""
    lock_path = password_file.with_name(password_file.name + ".lock")
    with os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        password = _stored_password(password_file)
        hba = Path(server.pgdata) / "pg_hba.conf"
        if hba.read_text() != HBA_CONF:
            # Still trusting (a new or an old data directory): set the password first,
            # so a crash before the rewrite leaves a server that simply still trusts.
            _psql(server, password, f"ALTER ROLE postgres WITH PASSWORD '{password}';")
            with open(hba, "w") as handle:  # in place: keeps the server user's ownership
                handle.write(HBA_CONF)
            _psql(server, password, "SELECT pg_reload_conf();")
            log.info("embedded_postgres_secured", pgdata=str(server.pgdata))
        auto_conf = Path(server.pgdata) / "postgresql.auto.conf"
        if not all(line in auto_conf.read_text() for line in QUIET_LOG_SETTINGS):
            # Tenants' SQL (and the values in it) must not reach the server log in clear.
            _psql(server, password, QUIET_LOG_SQL)
            log.info("embedded_postgres_log_quieted", pgdata=str(server.pgdata))
    return password


_open_here: dict[Path, int] = {}
"""How many `embedded_postgres` contexts of this process hold each pgdata."""


@contextlib.contextmanager
def _users_lock(data_dir: Path) -> Iterator[None]:
    """Serialize this data dir's holders of the server; the lock file is private (0600)."""
    path = data_dir / "pg-users.lock"
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _live_users(server: Any) -> list[int]:
    """The pids holding the server (pgserver's list), the dead ones pruned from the file."""
    import psutil

    users: list[int] = server.global_process_id_list.get()
    live = [pid for pid in users if psutil.pid_exists(pid)]
    if live != users:
        server.global_process_id_list.put(live)
    return live


def _postmaster_running(pgdata: Path) -> bool:
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def _stop_server(server: Any) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def _make_private(data_dir: Path, server: Any) -> None:
    """`data_dir` readable by this user only (pgserver opens it to everyone when root).

    When pgserver runs the server as its own user (started as root), that user
    must still pass through to `pg/`: 0711, no one else may list or read it
    (its files are 0600, `pg/` is 0700 and the server's).
    """
    data_dir.chmod(0o700 if getattr(server, "system_user", None) is None else 0o711)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start, join or adopt the embedded PostgreSQL in `data_dir/pg`; yield its URL.

    The server is shared by every process that opens the same data directory
    (`broker up`, `broker token` next to it): the last one alive stops it. A
    server left running by a process that died (kill -9) is adopted: its dead
    holders are pruned, and it is stopped when its last live holder ends.
    Logs say what happened: `embedded_postgres_started`, `_joined`, `_adopted`,
    and `_stopped` only when this process really stopped it.
    """
    import pgserver  # imported late: only the embedded path needs it

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if _open_here.get(pgdata):  # nested in this process: the outer context owns it
        _open_here[pgdata] += 1
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None)
            yield embedded_url(server, secure_embedded(server, data_dir / PASSWORD_FILE))
        finally:
            _open_here[pgdata] -= 1
        return
    with _users_lock(data_dir):
        running = _postmaster_running(pgdata)
        # Never pgserver's own stop: it counts dead holders and stops under live ones.
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        others = [pid for pid in _live_users(server) if pid != os.getpid()]
    _make_private(data_dir, server)
    how = "joined" if running and others else "adopted" if running else "started"
    log.info(f"embedded_postgres_{how}", pgdata=str(pgdata), holders=len(others))
    _open_here[pgdata] = 1
    try:
        password = secure_embedded(server, data_dir / PASSWORD_FILE)
        yield embedded_url(server, password)
    finally:
        del _open_here[pgdata]
        with _users_lock(data_dir):
            server.global_process_id_list.get_and_remove(os.getpid())
            if _live_users(server):
                log.debug("embedded_postgres_left_running", pgdata=str(pgdata))
            elif _postmaster_running(pgdata):
                _stop_server(server)
                log.info("embedded_postgres_stopped", pgdata=str(pgdata))
