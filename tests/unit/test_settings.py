"""Settings: env names, generated secrets in the data directory, production refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from broker.errors import ConfigError
from broker.store.crypto import generate_key_spec
from broker.web.settings import Settings


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "BROKER_SECRET",
        "BROKER_ENCRYPTION_KEYS",
        "BROKER_LOCAL_SECRET",
        "BROKER_PRODUCTION",
    ):
        monkeypatch.delenv(name, raising=False)


def test_reads_the_design_env_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/broker")
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BROKER_FLUSH_INTERVAL_MS", "25")
    monkeypatch.setenv("BROKER_LEASE_S", "4.5")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/broker"
    assert settings.data_dir == tmp_path
    assert settings.flush_interval_ms == 25
    assert settings.lease_s == 4.5
    assert settings.poll_interval_ms == 100
    assert settings.retention_s == 3600


def test_unset_secrets_are_generated_once_with_mode_0600(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clean_env(monkeypatch)
    first = Settings(BROKER_DATA_DIR=tmp_path).with_secrets()
    second = Settings(BROKER_DATA_DIR=tmp_path).with_secrets()
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.secret is not None and second.secret is not None
    assert first.secret.get_secret_value() == second.secret.get_secret_value()
    assert first.keyring().primary_id == second.keyring().primary_id
    assert set(json.loads(path.read_text())) == {
        "BROKER_SECRET",
        "BROKER_ENCRYPTION_KEYS",
        "BROKER_LOCAL_SECRET",
    }


def test_production_requires_every_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_env(monkeypatch)
    with pytest.raises(ConfigError, match="BROKER_SECRET"):
        Settings(BROKER_DATA_DIR=tmp_path, BROKER_PRODUCTION=True).with_secrets()
    assert not (tmp_path / "secrets.json").exists()


def test_production_refuses_placeholder_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    settings = Settings(
        BROKER_PRODUCTION=True,
        BROKER_SECRET=SecretStr("changeme"),
        BROKER_ENCRYPTION_KEYS=SecretStr(generate_key_spec()),
        BROKER_LOCAL_SECRET=SecretStr("a-real-local-secret-value"),
    )
    with pytest.raises(ConfigError, match="placeholder"):
        settings.with_secrets()


def test_malformed_key_list_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_env(monkeypatch)
    with pytest.raises(ConfigError):
        Settings(
            BROKER_DATA_DIR=tmp_path, BROKER_ENCRYPTION_KEYS=SecretStr("k1:nope")
        ).with_secrets()


def test_non_postgres_database_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    with pytest.raises(ValidationError):
        Settings(DATABASE_URL="mysql://x/y")


def test_ds_anonymous_workspace_is_refused_in_production() -> None:
    settings = Settings(
        BROKER_PRODUCTION=True,
        BROKER_DS_ANONYMOUS_WORKSPACE="public",
        BROKER_SECRET=SecretStr("a-real-secret-0123456789abcdef"),
        BROKER_ENCRYPTION_KEYS=SecretStr("k1:" + "A" * 43 + "="),
        BROKER_LOCAL_SECRET=SecretStr("another-real-secret-0123456789"),
    )
    with pytest.raises(ConfigError, match="BROKER_DS_ANONYMOUS_WORKSPACE"):
        settings.with_secrets()


def test_blank_ds_anonymous_workspace_leaves_anonymous_access_off() -> None:
    assert Settings(BROKER_DS_ANONYMOUS_WORKSPACE="  ").ds_anonymous_workspace is None
    assert Settings(BROKER_DS_ANONYMOUS_WORKSPACE="pub").ds_anonymous_workspace == "pub"
