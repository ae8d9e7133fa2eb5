"""Checks on the repository itself: import boundaries, the README, CI and compose."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "broker", "subscribe", "agents", "durable")

# The rooms of the house (README "Layout", docs/ARCHITECTURE.md) and what each may
# import from the project. The features (write, integrations, subscribe, agents)
# never import one another: only the composition roots wire them together.
ROOMS: dict[str, set[str]] = {
    "models": set(),
    "agents": {"models"},
    "broker.errors": set(),
    "broker.store": {"broker.errors", "models"},
    "broker.web": {"broker.errors", "broker.store", "models"},
    "broker.write": {"broker.errors", "broker.store", "broker.web", "models"},
    "broker.integrations": {"broker.errors", "broker.store", "broker.web", "models"},
    "subscribe": {"broker.errors", "broker.store", "broker.web", "models"},
    # The Durable Streams protocol keeps its own tables and SQL module for now; it
    # serves runs as read-only streams through the read side's hub (the one edge
    # between two features, in FEATURE_EDGES).
    "durable": {"broker.errors", "broker.store", "broker.web", "subscribe", "models"},
    # The public Python client and the terminal view of `broker watch` / `ask`.
    "broker.client": {"broker.web", "models"},
    "broker.terminal": {"broker.client", "broker.web", "models"},
}
FEATURES = {"broker.write", "broker.integrations", "subscribe", "agents", "durable"}
FEATURE_EDGES = {("durable", "subscribe")}
# The composition roots: the app factory wires the broker's rooms and the read side,
# the CLI starts every service, the bench harness starts its own services as processes.
ROOTS: dict[str, set[str]] = {
    "broker.app": set(ROOMS) - {"agents"},
    "broker.bench": set(ROOMS) - {"agents"} | {"broker.bench"},
    "broker.cli": set(ROOMS) | {"broker.app", "broker.bench"},
}
# Code that runs against the store's ports, never the PostgreSQL adapter itself.
ON_PORTS = (
    "broker.write.streams",
    "broker.write.producer",
    "broker.write.retention",
    "broker.write.run_stream",
    "subscribe.hub",
    "subscribe.listener",
    "subscribe.subscription",
    "subscribe.tail",
    "subscribe.viewer",
)
TEST_ONLY = ("broker.store.memory",)


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _room_of(module: str) -> str | None:
    """The longest room name that `module` is, or lies inside."""
    for room in sorted(ROOMS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return None


def _root_of(module: str) -> str | None:
    """The composition root that `module` is, or lies inside (a root may be a package)."""
    for root in ROOTS:
        if module == root or module.startswith(root + "."):
            return root
    return None


def _local_imports(path: Path) -> set[str]:
    """The project modules `path` imports, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (_module_of(path), path)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    ]


def _violations(module: str, imports: set[str]) -> list[str]:
    found = []
    room = _room_of(module)
    root = _root_of(module)
    allowed = ROOTS[root] if root else (ROOMS[room] | {room} if room else None)
    for imported in sorted(imports):
        target = _room_of(imported) or _root_of(imported) or imported
        if allowed is None:
            found.append(f"{module} lies in no room")
        elif target not in allowed:
            found.append(f"{module} imports {imported}")
        elif module in ON_PORTS and imported == "broker.store.postgres":
            found.append(f"{module} imports the adapter, not its ports")
        elif imported in TEST_ONLY:
            found.append(f"{module} imports the test twin {imported}")
    return found


def test_every_module_lies_in_a_room_and_imports_only_what_its_room_may() -> None:
    violations = []
    for module, path in _modules():
        if module in ("broker",):
            continue
        violations += _violations(module, _local_imports(path))
    assert violations == []


def test_only_the_composition_roots_wire_features_together() -> None:
    for module, _ in _modules():
        if _root_of(module):
            continue
        room = _room_of(module)
        reachable = ROOMS.get(room or "", set())
        other = {f for f in reachable & FEATURES - {room} if (room, f) not in FEATURE_EDGES}
        assert not other, f"{module}'s room may import a feature"


def test_the_import_check_notices_each_kind_of_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from broker.store.postgres import Store\nimport subscribe.tail\n")
    assert _local_imports(bad) == {"broker.store.postgres", "subscribe.tail"}
    assert _violations("broker.write.routes", {"subscribe.tail"}) == [
        "broker.write.routes imports subscribe.tail"
    ]
    assert _violations("subscribe.routes", {"broker.write.producer"}) == [
        "subscribe.routes imports broker.write.producer"
    ]
    assert _violations("broker.store.postgres", {"broker.web.http"}) == [
        "broker.store.postgres imports broker.web.http"
    ]
    assert _violations("subscribe.hub", {"broker.store.postgres"}) == [
        "subscribe.hub imports the adapter, not its ports"
    ]
    assert _violations("broker.web.http", {"broker.store.memory"}) == [
        "broker.web.http imports the test twin broker.store.memory"
    ]
    assert _violations("broker.cli", {"agents.app", "subscribe.hub"}) == []
    assert _violations("broker.helpers", {"models.ids"}) == ["broker.helpers lies in no room"]
    assert _violations("broker.app", {"agents.app"}) == ["broker.app imports agents.app"]
    assert _violations("broker.bench.cluster", {"broker.store.migrate", "broker.bench.job"}) == []
    assert _violations("broker.bench.load", {"agents.app"}) == [
        "broker.bench.load imports agents.app"
    ]
    assert _violations("durable.runs", {"broker.write.producer"}) == [
        "durable.runs imports broker.write.producer"
    ]
    assert _violations("broker.client", {"broker.store.postgres"}) == [
        "broker.client imports broker.store.postgres"
    ]


def test_no_module_of_the_packages_is_over_400_lines() -> None:
    long = {m: n for m, p in _modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|bash)?\n(.+?)\n```", quick_start, flags=re.S)


def test_readme_quick_start_has_exactly_two_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in command for command in commands)
    assert "broker up" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = _readme_commands()[1]
    assert test_command + " || status=$?" in ci.splitlines()


def _known_env_names() -> set[str]:
    from agents.settings import AgentSettings
    from broker.web.settings import Settings

    names: set[str] = set()
    for model in (Settings, AgentSettings):
        for field in model.model_fields.values():
            alias = field.validation_alias
            assert isinstance(alias, str), f"every setting needs an env name: {field}"
            names.add(alias)
    return names


def test_compose_wires_postgres_broker_and_agents() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "broker", "agents"}
    assert "healthcheck" in services["postgres"]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert services["broker"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "agents:8001" in services["broker"]["environment"]["AGENT_URL"]
    assert "broker:8000" in services["agents"]["environment"]["BROKER_URL"]
    assert (
        services["broker"]["environment"]["BROKER_LOCAL_SECRET"]
        == services["agents"]["environment"]["BROKER_LOCAL_SECRET"]
    )


def test_compose_uses_only_env_names_the_settings_know() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = _known_env_names()
    for name in ("broker", "agents"):
        unknown = set(compose["services"][name]["environment"]) - known
        assert unknown == set(), f"{name}: {unknown}"
