"""The compose file and its proxy: two broker replicas behind one SSE-friendly port.

No container runs here: the YAML and the nginx configuration are parsed
(`crossplane`, nginx's own parser in Python) and checked for what the
replicas and the streams need.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import crossplane  # type: ignore[import-untyped]
import pytest
import yaml

from agents.settings import AgentSettings
from broker.web.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = ("broker-a", "broker-b")
KEEPALIVE_S = Settings.model_fields["keepalive_s"].default


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _nginx(path: Path) -> list[dict[str, Any]]:
    parsed = crossplane.parse(str(path), single=True, catch_errors=False)
    assert parsed["status"] == "ok", parsed["errors"]
    config: list[dict[str, Any]] = parsed["config"][0]["parsed"]
    return config


def _find(block: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    """Every directive reached by the path of `names`, through nested blocks."""
    found = [d for d in block if d["directive"] == names[0]]
    if len(names) == 1:
        return found
    return [hit for d in found for hit in _find(d.get("block", []), *names[1:])]


def _one(block: list[dict[str, Any]], *names: str) -> list[str]:
    hits = _find(block, *names)
    assert len(hits) == 1, (names, hits)
    args: list[str] = hits[0]["args"]
    return args


def _proxy_config() -> list[dict[str, Any]]:
    proxy = _services()["proxy"]
    mounts = [v.split(":") for v in proxy["volumes"]]
    sources = [source for source, target, *_ in mounts if target == "/etc/nginx/nginx.conf"]
    assert len(sources) == 1, mounts
    return _nginx(ROOT / sources[0])


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, value
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    return int(match[1]) * factor


def _known_env_names() -> set[str]:
    names: set[str] = set()
    for model in (Settings, AgentSettings):
        for settings_field in model.model_fields.values():
            alias = settings_field.validation_alias
            assert isinstance(alias, str), f"every setting needs an env name: {settings_field}"
            names.add(alias)
    return names


# --- the services ----------------------------------------------------------------------


def test_two_broker_replicas_run_the_same_command_with_the_same_environment() -> None:
    services = _services()
    a, b = (services[name] for name in REPLICAS)
    assert a["environment"] == b["environment"]
    assert a["command"] == b["command"]
    assert a["command"][:2] == ["broker", "serve"]
    assert not any(name.startswith("broker") and name not in REPLICAS for name in services)
    for replica in (a, b):
        assert "ports" not in replica  # only the proxy is published
        assert replica["stop_signal"] == "SIGTERM"  # graceful: runs are handed over


def test_only_the_proxy_publishes_the_port_and_it_waits_for_both_replicas() -> None:
    services = _services()
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert services["proxy"]["ports"] == ["8000:8000"]
    assert set(services["proxy"]["depends_on"]) == set(REPLICAS)


def test_migrations_run_once_before_the_replicas_start() -> None:
    services = _services()
    assert services["migrate"]["command"] == ["broker", "migrate"]
    assert services["migrate"]["environment"] == services["broker-a"]["environment"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in REPLICAS:
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
        assert "migrate" not in " ".join(services[name]["command"])


def test_every_part_is_wired_to_the_others() -> None:
    services = _services()
    env = services["broker-a"]["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["AGENT_URL"] == "http://agents:8001"
    assert services["agents"]["environment"]["BROKER_URL"] == "http://proxy:8000"
    assert env["BROKER_LOCAL_SECRET"] == services["agents"]["environment"]["BROKER_LOCAL_SECRET"]
    assert "healthcheck" in services["postgres"]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])


def test_compose_uses_only_env_names_the_settings_know() -> None:
    known = _known_env_names()
    for name in (*REPLICAS, "migrate", "agents"):
        unknown = set(_services()[name]["environment"]) - known
        assert unknown == set(), f"{name}: {unknown}"


# --- the proxy ---------------------------------------------------------------------------


def test_the_proxy_routes_to_both_replicas() -> None:
    config = _proxy_config()
    upstreams = _find(config, "http", "upstream")
    assert len(upstreams) == 1
    name = upstreams[0]["args"][0]
    servers = {d["args"][0] for d in _find(upstreams[0]["block"], "server")}
    assert servers == {f"{replica}:8000" for replica in REPLICAS}
    assert _one(config, "http", "server", "listen") == ["8000"]
    assert _one(config, "http", "server", "location", "proxy_pass") == [f"http://{name}"]


def test_the_proxy_streams_sse_without_buffering_and_outlives_the_keepalive() -> None:
    config = _proxy_config()
    location = ("http", "server", "location")
    assert _one(config, *location, "proxy_buffering") == ["off"]
    assert _one(config, *location, "proxy_cache") == ["off"]
    assert _one(config, *location, "proxy_http_version") == ["1.1"]
    # Keep-alive connections to the replicas: no `Connection: close` forwarded.
    headers = {d["args"][0]: d["args"][1] for d in _find(config, *location, "proxy_set_header")}
    assert headers["Connection"] == ""
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = _one(config, *location, timeout)
        assert _seconds(value) >= 10 * KEEPALIVE_S, (timeout, value)


def test_the_proxy_retries_only_what_cannot_have_been_written() -> None:
    config = _proxy_config()
    retry = _one(config, "http", "server", "location", "proxy_next_upstream")
    # A POST that reached a replica may have started a run: never `non_idempotent`.
    assert "non_idempotent" not in retry
    assert "timeout" not in retry
    assert retry == ["error"]


def test_the_config_check_notices_buffering_left_on(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    broken = tmp_path / "nginx.conf"
    broken.write_text(text.replace("proxy_buffering off;", "proxy_buffering on;"))
    assert _one(_nginx(broken), "http", "server", "location", "proxy_buffering") == ["on"]
    broken.write_text(text.replace("proxy_buffering off;", ""))
    with pytest.raises(AssertionError):
        _one(_nginx(broken), "http", "server", "location", "proxy_buffering")


def test_the_image_copies_every_package_the_project_installs() -> None:
    """A package missing from the Dockerfile fails the image's broker at import."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in included}
    copied = set(re.findall(r"^COPY (\S+) \1$", (ROOT / "Dockerfile").read_text(), flags=re.M))
    assert packages <= copied, packages - copied


def test_every_file_of_the_page_is_package_data() -> None:
    """A non-editable install serves the page whole (DOMPurify's .mjs included)."""
    import fnmatch
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["subscribe"]
    static = ROOT / "subscribe" / "static"
    files = [path.relative_to(ROOT / "subscribe").as_posix() for path in static.rglob("*")]
    missing = [
        name
        for name in files
        if (ROOT / "subscribe" / name).is_file()
        and not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
    ]
    assert files and missing == []
