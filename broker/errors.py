"""The broker's exceptions, one tree rooted at `BrokerError`.

    BrokerError
    ├── ConfigError            settings missing, malformed or refused
    ├── CryptoError
    │   ├── UnknownKeyError    a row names a key the keyring does not hold
    │   └── DecryptionError    tampered ciphertext, or a value moved to another row
    ├── AuthError              no, malformed, forged or expired credentials
    └── StoreError
        ├── NotFound           no such row in the caller's workspace
        ├── Conflict           e.g. a thread that already has a run streaming
        ├── LeaseLost          a flush was fenced: another writer owns the run
        └── DatabaseUnavailable  the driver could not reach PostgreSQL

Driver errors are translated where they enter (`raise ... from exc`), so no
code above the store sees asyncpg or SQLAlchemy exceptions.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BrokerError",
    "ConfigError",
    "Conflict",
    "CryptoError",
    "DatabaseUnavailable",
    "DecryptionError",
    "LeaseLost",
    "NotFound",
    "StoreError",
    "UnknownKeyError",
]


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""


class ConfigError(BrokerError):
    pass


class CryptoError(BrokerError):
    pass


class UnknownKeyError(CryptoError):
    pass


class DecryptionError(CryptoError):
    pass


class AuthError(BrokerError):
    pass


class StoreError(BrokerError):
    pass


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class LeaseLost(StoreError):
    pass


class DatabaseUnavailable(StoreError):
    pass
