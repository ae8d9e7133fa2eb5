"""The `broker` command line (design 4.5).

Each command builds one `Settings` from the environment and hands it down.
Without `DATABASE_URL` the commands that need a database start (or join)
the embedded PostgreSQL in the data directory for as long as they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer
import uvicorn

from broker.store.database import create_engine, embedded_postgres
from broker.store.migrate import upgrade
from broker.web.logs import configure_logging
from broker.web.settings import Settings
from models.ids import WorkspaceId

__all__ = ["app", "main"]

app = typer.Typer(help="A durable stream broker for AI-agent runs.", no_args_is_help=True)

DEFAULT_WORKSPACE = "default"
# Open SSE streams would otherwise hold a shutdown until every run ends.
_GRACEFUL_S = 5
Host = Annotated[str, typer.Option(help="Interface to listen on.")]


def _settings() -> Settings:
    try:
        settings = Settings().with_secrets()
    except Exception as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    return settings


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[Settings]:
    """Settings whose `database_url` is usable: the configured one, or the embedded one."""
    if settings.database_url is not None:
        yield settings
        return
    with embedded_postgres(settings.data_dir) as url:
        yield settings.model_copy(update={"database_url": url})


def _migrate(settings: Settings) -> None:
    assert settings.database_url is not None
    upgrade(settings.database_url, keyring=settings.with_secrets().keyring())


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision."""
    with _database(_settings()) as settings:
        _migrate(settings)
    typer.echo("database is at head")


WORKSPACE_NAME_MAX = 200
"""The longest workspace name (the column's width)."""


def _workspace_name(name: str) -> str:
    """A workspace name as given, if one: 1-200 characters, no control character."""
    if not name.strip():
        raise typer.BadParameter("must not be empty")
    if len(name) > WORKSPACE_NAME_MAX:
        raise typer.BadParameter(f"at most {WORKSPACE_NAME_MAX} characters, got {len(name)}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise typer.BadParameter("must not contain control characters")
    return name


Workspace = Annotated[
    str,
    typer.Option(help="Workspace name (created if missing).", callback=_workspace_name),
]


@app.command()
def token(
    workspace: Workspace,
    member: Annotated[str, typer.Option(help="Member id carried by the token.")] = "owner",
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 7 * 24 * 3600,
) -> None:
    """Print a bearer token for a member of a workspace."""
    from broker.web.auth import mint_token

    with _database(_settings()) as settings:
        _migrate(settings)
        workspace_id = asyncio.run(_ensure_workspace(settings, workspace))
        secret = settings.require(settings.secret, "BROKER_SECRET")
    typer.echo(mint_token(secret, workspace_id, member, ttl))


async def _ensure_workspace(settings: Settings, name: str) -> WorkspaceId:
    from broker.store.postgres import Store

    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        return await Store(engine, settings.keyring()).ensure_workspace(name)
    finally:
        await engine.dispose()


@app.command()
def serve(host: Host = "127.0.0.1", port: Annotated[int, typer.Option()] = 8000) -> None:
    """Run the broker alone (DATABASE_URL, AGENT_URL)."""
    from broker.app import create_app

    with _database(_settings()) as settings:
        if settings.database_url is not None and os.environ.get("DATABASE_URL") is None:
            _migrate(settings)  # the embedded database is ours to keep at head
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_config=None,
            timeout_graceful_shutdown=_GRACEFUL_S,
        )


@app.command()
def agents(host: Host = "127.0.0.1", port: Annotated[int, typer.Option()] = 8001) -> None:
    """Run the agent service alone (BROKER_LOCAL_SECRET, BROKER_URL, ANTHROPIC_API_KEY)."""
    from agents.app import create_app as create_agent_app
    from agents.settings import AgentSettings

    if "BROKER_LOCAL_SECRET" not in os.environ:
        # Share the broker's generated secret when both run from one data directory.
        settings = _settings()
        os.environ["BROKER_LOCAL_SECRET"] = settings.require(
            settings.local_secret, "BROKER_LOCAL_SECRET"
        )
    configure_logging(os.environ.get("BROKER_LOG_LEVEL", "info"))
    uvicorn.run(
        create_agent_app(AgentSettings()),
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=_GRACEFUL_S,
    )


@app.command()
def up(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    agent_port: Annotated[int, typer.Option(help="Port of the agent service.")] = 8001,
) -> None:
    """The whole system on one machine: database, migrations, agent service, broker."""
    from broker.app import create_app

    base = _settings()
    with _database(base) as settings:
        _migrate(settings)
        seed_demo = base.database_url is None  # only into the embedded database
        workspace_id = asyncio.run(_prepare_default_workspace(settings, seed_demo=seed_demo))
        agent_url = f"http://127.0.0.1:{agent_port}"
        broker_url = f"http://{host}:{port}"
        settings = settings.model_copy(update={"agent_url": agent_url, "broker_url": broker_url})
        with _agent_process(settings, agent_port):
            link = asyncio.run(_login_link(settings, workspace_id))
            typer.echo(f"open:    {link}")
            typer.echo(f"agents:  {agent_url}")
            typer.echo("Ctrl-C stops everything.")
            uvicorn.run(
                create_app(settings),
                host=host,
                port=port,
                log_config=None,
                timeout_graceful_shutdown=_GRACEFUL_S,
            )


@app.command("login-link")
def login_link(
    workspace: Workspace = DEFAULT_WORKSPACE,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="BROKER_URL",
            help="The broker's base URL the link points at (default: BROKER_URL); "
            "pass it when `broker up --port` differs from BROKER_URL's port.",
        ),
    ] = None,
) -> None:
    """Print a fresh one-time login link for the browser page (at --url, else BROKER_URL)."""
    with _database(_settings()) as settings:
        if url is not None:
            settings = settings.model_copy(update={"broker_url": url})
        _migrate(settings)
        workspace_id = asyncio.run(_ensure_workspace(settings, workspace))
        typer.echo(asyncio.run(_login_link(settings, workspace_id)))


async def _login_link(settings: Settings, workspace_id: WorkspaceId) -> str:
    """A one-time login link for the page, its code stored (hashed) in the database."""
    from broker.store.postgres import Store
    from broker.web.login import LoginCodes, login_url

    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        code = await LoginCodes(Store(engine, settings.keyring())).issue(workspace_id)
    finally:
        await engine.dispose()
    return login_url(settings.broker_url, code)


async def _prepare_default_workspace(settings: Settings, *, seed_demo: bool) -> WorkspaceId:
    """The default workspace, with the demo database as its `demo` integration."""
    from broker.integrations.demo import ensure_demo_integration
    from broker.store.postgres import Store

    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        store = Store(engine, settings.keyring())
        workspace_id = await store.ensure_workspace(DEFAULT_WORKSPACE)
        if seed_demo:
            await ensure_demo_integration(store, settings.database_url, workspace_id)
        return workspace_id
    finally:
        await engine.dispose()


@contextlib.contextmanager
def _agent_process(settings: Settings, port: int) -> Iterator[None]:
    """Run `broker agents` as a child process sharing the local secret."""
    env = {
        **os.environ,
        "BROKER_LOCAL_SECRET": settings.require(settings.local_secret, "BROKER_LOCAL_SECRET"),
        "BROKER_URL": settings.broker_url,
    }
    command = [sys.executable, "-m", "broker.cli", "agents", "--port", str(port)]
    child = subprocess.Popen(command, env=env)
    try:
        _wait_for_port(port, child)
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_for_port(port: int, child: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            typer.echo(f"the agent service exited with code {child.returncode}", err=True)
            raise typer.Exit(1)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    typer.echo("the agent service did not start listening in time", err=True)
    raise typer.Exit(1)


Url = Annotated[str, typer.Option(envvar="BROKER_URL", help="The broker's base URL.")]
Token = Annotated[
    str | None, typer.Option(envvar="BROKER_TOKEN", help="Bearer token (`broker token`).")
]
Plain = Annotated[bool, typer.Option("--plain", help="Write the events as NDJSON lines.")]


@app.command()
def watch(
    run_id: str,
    cursor: Annotated[str | None, typer.Option(help="Follow from after this seq.")] = None,
    plain: Plain = False,
    url: Url = "http://127.0.0.1:8000",
    token: Token = None,
) -> None:
    """Follow a run live in the terminal, resuming after disconnects (exit 0: completed)."""
    from broker.terminal import follow, run_command

    raise typer.Exit(
        run_command(url, token, lambda client: follow(client, run_id, cursor, plain=plain))
    )


@app.command()
def ask(
    message: str,
    thread: Annotated[str | None, typer.Option(help="Thread id (default: a new one).")] = None,
    plain: Plain = False,
    url: Url = "http://127.0.0.1:8000",
    token: Token = None,
) -> None:
    """Start a run with MESSAGE and follow it live (exit 0: completed)."""
    from broker.terminal import ask as ask_run
    from broker.terminal import run_command

    raise typer.Exit(
        run_command(url, token, lambda client: ask_run(client, message, thread, plain=plain))
    )


@app.command()
def bench(
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Scenario to run (repeatable): latency, direct, ingest, fanout, "
            "catchup, idle, cancel. Default: all."
        ),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Small sizes: done in under a minute.")] = False,
    tiny: Annotated[bool, typer.Option(hidden=True, help="Smoke-test sizes.")] = False,
) -> None:
    """The benchmark (design section 8): starts its own services, prints one table."""
    from platformdirs.api import RuntimeDirWarning
    from rich.console import Console

    from broker.bench.command import run_bench
    from broker.bench.plan import SCENARIOS

    configure_logging("warning")
    # pgserver asks platformdirs for a runtime dir that a server or CI may not have.
    warnings.filterwarnings("ignore", category=RuntimeDirWarning)
    mode: Literal["tiny", "quick", "full"] = "tiny" if tiny else "quick" if quick else "full"
    try:
        console = Console(width=None if sys.stdout.isatty() else 120)
        code = run_bench(scenario or list(SCENARIOS), mode, json_file, console)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
