"""Import rule (design 2): `agents` imports only `models` of the project, never the broker."""

from __future__ import annotations

import ast
from pathlib import Path

AGENTS = Path(__file__).resolve().parents[3] / "agents"
PROJECT_PACKAGES = {"models", "broker", "subscribe", "agents", "migrations", "tests"}
ALLOWED = {"models", "agents"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports stay inside agents
                continue
            roots.add((node.module or "").split(".")[0])
    return roots


def test_agents_imports_only_models_of_the_project() -> None:
    modules = sorted(AGENTS.glob("*.py"))
    assert len(modules) > 10
    offenders = {
        path.name: sorted((_imported_roots(path) & PROJECT_PACKAGES) - ALLOWED) for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_would_catch_a_broker_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from broker.web.sse import SSEParser\nimport subscribe.tail\n")
    assert _imported_roots(bad) & PROJECT_PACKAGES == {"broker", "subscribe"}
