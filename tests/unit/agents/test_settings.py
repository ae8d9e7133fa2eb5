"""Settings come from exactly the documented environment variables, with no prefix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.settings import DEFAULT_MODEL, AgentSettings

ENV_NAMES = [
    "BROKER_LOCAL_SECRET",
    "BROKER_URL",
    "AGENT_DETACH_GRACE_S",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "AGENT_MODEL",
    "AGENT_SCRIPTED_DELAY_MS",
    "AGENT_RUN_BUFFER_MAX",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_reads_every_documented_variable(clean_env: pytest.MonkeyPatch) -> None:
    values = {
        "BROKER_LOCAL_SECRET": "s3cret",
        "BROKER_URL": "http://broker:9000/",
        "AGENT_DETACH_GRACE_S": "2.5",
        "ANTHROPIC_API_KEY": "sk-ant-xyz",
        "ANTHROPIC_BASE_URL": "http://fake-anthropic",
        "AGENT_MODEL": "claude-haiku-4-5",
        "AGENT_SCRIPTED_DELAY_MS": "3",
        "AGENT_RUN_BUFFER_MAX": "50",
        "UNRELATED_SETTING": "ignored",
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    settings = AgentSettings()
    assert settings.broker_local_secret == "s3cret"
    assert settings.broker_url == "http://broker:9000"
    assert settings.agent_detach_grace_s == 2.5
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-xyz"
    assert settings.anthropic_base_url == "http://fake-anthropic"
    assert settings.agent_model == "claude-haiku-4-5"
    assert settings.agent_scripted_delay_ms == 3
    assert settings.agent_run_buffer_max == 50


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BROKER_LOCAL_SECRET", "s3cret")
    settings = AgentSettings()
    assert settings.broker_url == "http://127.0.0.1:8000"
    assert settings.agent_detach_grace_s == 30
    assert settings.anthropic_api_key is None
    assert settings.anthropic_base_url is None
    assert settings.agent_model == DEFAULT_MODEL
    assert settings.agent_scripted_delay_ms == 25
    assert settings.agent_run_buffer_max == 100_000


def test_missing_local_secret_fails_loudly(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="BROKER_LOCAL_SECRET"):
        AgentSettings()


def test_the_api_key_never_shows_in_a_repr(clean_env: pytest.MonkeyPatch) -> None:
    settings = AgentSettings(broker_local_secret="s", anthropic_api_key="sk-ant-xyz")
    assert "sk-ant-xyz" not in repr(settings)


def test_fields_can_be_given_by_name_in_code(clean_env: pytest.MonkeyPatch) -> None:
    settings = AgentSettings(broker_local_secret="s", agent_detach_grace_s=0.2)
    assert settings.agent_detach_grace_s == 0.2
