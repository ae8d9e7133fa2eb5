"""The `broker` command line (design 4.5).

Each command builds one `Settings` from the environment and hands it down.
Without `DATABASE_URL` the commands that need a database start (or join)
the embedded PostgreSQL in the data directory for as long as they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer
import uvicorn

from broker.store.database import create_engine, embedded_postgres
from broker.store.migrate import upgrade
from broker.supervisor import Refused, Stopped, Supervisor, describe_port
from broker.web.logs import configure_logging
from broker.web.settings import Settings
from models.agent_api import agent_instance
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
    verbose: Annotated[bool, typer.Option(help="Log start-up and requests at info.")] = False,
) -> None:
    """The whole system on one machine: database, migrations, agent service, broker.

    SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the broker, the agent service and the
    embedded PostgreSQL, in that order (`broker.supervisor`).
    """

    from platformdirs.api import RuntimeDirWarning

    # pgserver asks platformdirs for a runtime dir that a server or CI may not have.
    warnings.filterwarnings("ignore", category=RuntimeDirWarning)
    level = os.environ.get("BROKER_LOG_LEVEL") or ("info" if verbose else "warning")
    os.environ["BROKER_LOG_LEVEL"] = level  # the children log at the same level
    base = _settings()
    try:
        with Supervisor(base.data_dir) as supervisor:
            supervisor.require_free(port, "the broker", "--port")
            local_secret = base.require(base.local_secret, "BROKER_LOCAL_SECRET")
            supervisor.require_free(
                agent_port, "the agent service", "--agent-port", agent_instance(local_secret)
            )
            with _database(base) as settings:
                try:
                    supervisor.check()
                    code = _up(supervisor, base, settings, host, port, agent_port)
                finally:
                    supervisor.stop_children()  # before the database stops
    except Refused as exc:
        typer.echo(f"broker up: {exc}", err=True)
        raise typer.Exit(1) from None
    except Stopped:
        code = 0
    if code == 0:
        typer.echo("stopped: broker, agent service and database.")
    raise typer.Exit(code)


def _up(
    supervisor: Supervisor,
    base: Settings,
    settings: Settings,
    host: str,
    port: int,
    agent_port: int,
) -> int:
    """Migrate, seed, start both children, print the banner, wait for a stop."""
    _migrate(settings)
    supervisor.check()
    seed_demo = base.database_url is None  # only into the embedded database
    workspace_id = asyncio.run(_prepare_default_workspace(settings, seed_demo=seed_demo))
    local_secret = settings.require(settings.local_secret, "BROKER_LOCAL_SECRET")
    listen = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    agent_url = f"http://127.0.0.1:{agent_port}"
    broker_url = f"http://{listen}:{port}"
    env = {**os.environ, "BROKER_LOCAL_SECRET": local_secret, "BROKER_URL": broker_url}
    supervisor.start(
        "agent service",
        ["agents", "--port", str(agent_port)],
        env,
        ready=lambda child: _is_our_agent(agent_port, local_secret, child.pid),
    )
    assert settings.database_url is not None
    supervisor.start(
        "broker",
        ["serve", "--host", host, "--port", str(port)],
        {**env, "DATABASE_URL": settings.database_url, "AGENT_URL": agent_url},
        ready=lambda child: (describe_port(port, listen) or {}).get("status") == "ok",
        stop_timeout_s=_GRACEFUL_S + 10,
    )
    settings = settings.model_copy(update={"agent_url": agent_url, "broker_url": broker_url})
    link = asyncio.run(_login_link(settings, workspace_id))
    for line in _banner(link, base):
        typer.echo(line)
    return supervisor.run()


def _is_our_agent(port: int, local_secret: str, pid: int) -> bool:
    """True once the agent on `port` is this data directory's, and the child `pid` itself."""
    found = describe_port(port)
    if not found:
        return False
    if found.get("instance") != agent_instance(local_secret) or found.get("pid") != pid:
        raise Refused(f"port {port} answers, but not as the agent service `broker up` started")
    return True


def _banner(link: str, base: Settings) -> list[str]:
    """What `broker up` prints once the broker listens: where to go, how to stop, where data is."""
    data = (
        f"{base.data_dir} (embedded PostgreSQL, secrets)"
        if base.database_url is None
        else f"DATABASE_URL; secrets in {base.data_dir}"
    )
    return [
        f"open:    {link}   (one-time login link)",
        f"data:    {data}",
        "stop:    Ctrl-C (or SIGTERM) stops the broker, the agent service and the database",
    ]


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
