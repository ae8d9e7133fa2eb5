"""A second, real PostgreSQL for the integration tests: the "tenant" server.

Built from pgserver's own `initdb` and `pg_ctl`, it listens on TCP on
127.0.0.1 (a free port) and on a socket in its directory, with password
authentication from the start. When the tests run as root the server runs
as pgserver's unprivileged user, as the embedded one does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TenantServer", "tenant_server"]


@dataclass(frozen=True)
class TenantServer:
    host: str
    port: int
    socket_dir: Path
    password: str  # the superuser `postgres`'s

    def dsn(self, user: str, password: str, database: str = "postgres", host: str = "") -> str:
        return f"postgresql://{user}:{password}@{host or self.host}:{self.port}/{database}"

    @property
    def admin_dsn(self) -> str:
        return self.dsn("postgres", self.password)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def tenant_server() -> Iterator[TenantServer]:
    """Start a PostgreSQL of its own on 127.0.0.1; stop and remove it afterwards."""
    from pgserver._commands import initdb, pg_ctl

    with tempfile.TemporaryDirectory(prefix="broker-tenant-pg-") as tmp:
        root = Path(tmp)
        pgdata, pwfile = root / "pg", root / "pw"
        pgdata.mkdir()
        password = secrets.token_hex(16)
        pwfile.write_text(password)
        user = None
        if os.geteuid() == 0:
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            user = "pgserver"
            ensure_user_exists(user)
            ensure_prefix_permissions(pgdata)
            entry = pwd.getpwnam(user)
            for path in (root, pgdata, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb(
            ["--auth=scram-sha-256", "-U", "postgres", f"--pwfile={pwfile}", "--encoding=utf8"],
            pgdata=pgdata,
            user=user,
        )
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {root}"
        log = str(root / "log")
        pg_ctl(["-w", "-o", options, "-l", log, "start"], pgdata=pgdata, user=user, timeout=30)
        try:
            yield TenantServer("127.0.0.1", port, root, password)
        finally:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
