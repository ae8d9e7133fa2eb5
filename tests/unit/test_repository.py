"""Checks on the repository itself: import boundaries, the README, CI and compose."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "broker", "subscribe", "agents", "durable")

# What each package may import from the project (design section 2).
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "agents": {"models"},
    "subscribe": {"broker", "models"},
    "broker": {"models"},
    "durable": {"broker", "subscribe", "models"},
}
# The composition roots: the app factory wires both sides, the CLI starts every service.
WIRING = {"broker/app.py": {"subscribe", "durable"}, "broker/cli.py": {"subscribe", "agents"}}


def _local_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES)
    return found


def test_packages_import_only_what_the_design_allows() -> None:
    violations = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            allowed = ALLOWED[package] | {package} | WIRING.get(relative, set())
            for imported in _local_imports(path) - allowed:
                violations.append(f"{relative} imports {imported}")
    assert violations == []


def test_the_import_check_notices_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from broker.store import Store\nimport subscribe.tail\n")
    assert _local_imports(bad) == {"broker", "subscribe"}


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
    from broker.settings import Settings

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
