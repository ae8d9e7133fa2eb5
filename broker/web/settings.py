"""The broker's settings: one object per process, built in the app factory.

Environment names are the design's (section 6), without a prefix. Secrets
left unset are generated once into the data directory (mode 0600) so that
`broker up` works on a fresh machine; with `BROKER_PRODUCTION=true` they are
required instead, and a generated or placeholder value is refused.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import platformdirs
import structlog
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.errors import ConfigError
from broker.store.crypto import Keyring, generate_key_spec
from broker.web.allowlist import Allowlist

__all__ = ["SECRET_NAMES", "Settings", "default_data_dir"]

log = structlog.get_logger(__name__)

# Settings that hold secrets, by environment name, and the attribute they fill.
SECRET_NAMES: dict[str, str] = {
    "BROKER_SECRET": "secret",
    "BROKER_ENCRYPTION_KEYS": "encryption_keys",
    "BROKER_LOCAL_SECRET": "local_secret",
}
_PLACEHOLDERS = frozenset({"", "changeme", "change-me", "secret", "dev", "test"})
_SECRETS_FILE = "secrets.json"


def default_data_dir() -> Path:
    """The user's data directory for the broker (embedded database, secrets)."""
    return Path(platformdirs.user_data_dir("stream-broker", appauthor=False))


class Settings(BaseSettings):
    """Everything configurable about a broker process."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(default_factory=default_data_dir, validation_alias="BROKER_DATA_DIR")
    production: bool = Field(default=False, validation_alias="BROKER_PRODUCTION")
    secret: SecretStr | None = Field(default=None, validation_alias="BROKER_SECRET")
    encryption_keys: SecretStr | None = Field(
        default=None, validation_alias="BROKER_ENCRYPTION_KEYS"
    )
    local_secret: SecretStr | None = Field(default=None, validation_alias="BROKER_LOCAL_SECRET")
    agent_url: str = Field(default="http://127.0.0.1:8001", validation_alias="AGENT_URL")
    broker_url: str = Field(default="http://127.0.0.1:8000", validation_alias="BROKER_URL")
    flush_interval_ms: int = Field(default=100, ge=0, validation_alias="BROKER_FLUSH_INTERVAL_MS")
    poll_interval_ms: int = Field(default=100, ge=1, validation_alias="BROKER_POLL_INTERVAL_MS")
    retention_s: int = Field(default=3600, ge=0, validation_alias="BROKER_RETENTION_S")
    lease_s: float = Field(default=10.0, gt=0, validation_alias="BROKER_LEASE_S")
    max_message_bytes: int = Field(
        default=32_768, ge=1, validation_alias="BROKER_MAX_MESSAGE_BYTES"
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1, validation_alias="BROKER_MAX_BODY_BYTES")
    run_buffer_max: int = Field(default=10_000, ge=1, validation_alias="BROKER_RUN_BUFFER_MAX")
    viewer_queue_max: int = Field(default=1_000, ge=1, validation_alias="BROKER_VIEWER_QUEUE_MAX")
    keepalive_s: float = Field(default=15.0, gt=0, validation_alias="BROKER_KEEPALIVE_S")
    query_timeout_s: float = Field(default=5.0, gt=0, validation_alias="BROKER_QUERY_TIMEOUT_S")
    query_max_rows: int = Field(default=500, ge=1, validation_alias="BROKER_QUERY_MAX_ROWS")
    query_max_bytes: int = Field(
        default=262_144, ge=1024, validation_alias="BROKER_QUERY_MAX_BYTES"
    )
    integration_allow: str = Field(default="", validation_alias="BROKER_INTEGRATION_ALLOW")
    max_event_bytes: int = Field(default=1_048_576, ge=1, validation_alias="BROKER_MAX_EVENT_BYTES")
    capability_ttl_s: int = Field(default=3600, ge=1, validation_alias="BROKER_CAPABILITY_TTL_S")
    log_level: str = Field(default="info", validation_alias="BROKER_LOG_LEVEL")
    ds_anonymous_workspace: str | None = Field(
        default=None, validation_alias="BROKER_DS_ANONYMOUS_WORKSPACE"
    )
    ds_long_poll_s: float = Field(default=30.0, gt=0, validation_alias="BROKER_DS_LONG_POLL_S")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        """Accept plain `postgresql://` URLs and use asyncpg for them."""
        if value is None or not value.strip():
            return None
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// or postgresql+asyncpg:// URL")
        return value

    @field_validator("integration_allow")
    @classmethod
    def _allowlist(cls, value: str) -> str:
        """Fail at start, not at the first registration, on a malformed allow list."""
        Allowlist.parse(value)
        return value

    def allowlist(self) -> Allowlist:
        """`BROKER_INTEGRATION_ALLOW` parsed: the hosts and networks integrations may reach."""
        return Allowlist.parse(self.integration_allow)

    @field_validator("ds_anonymous_workspace")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        """`BROKER_DS_ANONYMOUS_WORKSPACE=` (empty) leaves anonymous access off."""
        return value.strip() or None if value is not None else None

    def with_secrets(self) -> Settings:
        """Fill unset secrets: refused in production, else generated once on disk."""
        missing = [env for env, attr in SECRET_NAMES.items() if getattr(self, attr) is None]
        filled = self
        if self.production:
            if self.ds_anonymous_workspace is not None:
                raise ConfigError("BROKER_DS_ANONYMOUS_WORKSPACE is refused in production mode")
            if missing:
                raise ConfigError(f"production mode requires {', '.join(missing)}")
            for env, attr in SECRET_NAMES.items():
                value: SecretStr = getattr(self, attr)
                if value.get_secret_value().strip().lower() in _PLACEHOLDERS:
                    raise ConfigError(f"{env} has a placeholder value; set a real secret")
        elif missing:
            stored = self._stored_secrets()
            filled = self.model_copy(
                update={SECRET_NAMES[env]: SecretStr(stored[env]) for env in missing}
            )
        filled.keyring()  # fail loudly now on a malformed key list
        return filled

    def keyring(self) -> Keyring:
        if self.encryption_keys is None:
            raise ConfigError("BROKER_ENCRYPTION_KEYS is not set (call with_secrets() first)")
        return Keyring.from_spec(self.encryption_keys.get_secret_value())

    def require(self, value: SecretStr | None, name: str) -> str:
        """A secret's value, or a clear error naming the setting."""
        if value is None:
            raise ConfigError(f"{name} is not set")
        return value.get_secret_value()

    def _stored_secrets(self) -> dict[str, str]:
        """Read, or create once with mode 0600, the data directory's secrets file."""
        path = self.data_dir / _SECRETS_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stored: dict[str, Any] = {}
        if path.exists():
            stored = json.loads(path.read_text())
        fresh = {
            "BROKER_SECRET": secrets.token_urlsafe(32),
            "BROKER_ENCRYPTION_KEYS": generate_key_spec(),
            "BROKER_LOCAL_SECRET": secrets.token_urlsafe(32),
        }
        if any(env not in stored for env in fresh):
            stored = {**fresh, **stored}
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(stored, handle)
            os.replace(tmp, path)
            if self.database_url is not None:
                log.warning("generated_secrets", path=str(path), hint="replicas must share them")
        return {env: str(stored[env]) for env in fresh}
