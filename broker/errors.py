"""The broker's exceptions, one tree rooted at `BrokerError`.

    BrokerError
    ├── ConfigError            settings missing, malformed or refused
    ├── CryptoError
    │   ├── UnknownKeyError    a row names a key the keyring does not hold
    │   └── DecryptionError    tampered ciphertext, or a value moved to another row
    ├── AuthError              no, malformed, forged or expired credentials
    ├── StoreError
    │   ├── NotFound           no such row in the caller's workspace
    │   ├── Conflict           the write conflicts with what is stored (409 conflict)
    │   │   └── RunInProgress  the thread already has a run streaming (409 run_in_progress)
    │   ├── DatabaseUnavailable  the driver could not reach PostgreSQL
    │   └── Unstorable         a value PostgreSQL refuses to store (a NUL in text): 422
    ├── AgentError             the agent service could not be used as asked
    │   ├── AgentUnavailable   refused, 5xx or timed out (retried with backoff)
    │   ├── AgentConflict      the agent already runs this run id (re-attach instead)
    │   ├── AgentRejected      a 4xx: the request itself is wrong, not retried
    │   └── AgentStreamBroken  the stream failed after events began
    └── IntegrationError       an integration could not answer; `code` is the contract's
        ├── IntegrationUnavailable  its database cannot be reached
        ├── IntegrationRefused      the policy (design 4.7) forbids reaching it
        └── QueryError
            ├── QueryRejected  a write, several statements, no privilege
            ├── QueryTimeout   over the statement timeout
            └── QueryFailed    PostgreSQL refused the query (syntax, unknown table...)

Driver errors are translated where they enter (`raise ... from exc`), so no
code above the store sees asyncpg or SQLAlchemy exceptions.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AgentConflict",
    "AgentError",
    "AgentRejected",
    "AgentStreamBroken",
    "AgentUnavailable",
    "AuthError",
    "BrokerError",
    "ConfigError",
    "Conflict",
    "CryptoError",
    "DatabaseUnavailable",
    "DecryptionError",
    "IntegrationError",
    "IntegrationRefused",
    "IntegrationUnavailable",
    "NotFound",
    "QueryError",
    "QueryFailed",
    "QueryRejected",
    "QueryTimeout",
    "RunInProgress",
    "StoreError",
    "UnknownKeyError",
    "Unstorable",
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


class RunInProgress(Conflict):
    """The thread already has a run pending or streaming; `run_id` names it (if known)."""

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class DatabaseUnavailable(StoreError):
    pass


class Unstorable(StoreError):
    """Input PostgreSQL refuses as data (a NUL character in text, say): the caller's to fix."""


class AgentError(BrokerError):
    """The agent service could not be used as asked."""


class AgentUnavailable(AgentError):
    pass


class AgentConflict(AgentError):
    pass


class AgentRejected(AgentError):
    pass


class AgentStreamBroken(AgentError):
    pass


class IntegrationError(BrokerError):
    """An integration could not answer; `code` is the contract's error code."""

    code: ClassVar[str] = "integration_error"


class IntegrationUnavailable(IntegrationError):
    code = "integration_unavailable"


class IntegrationRefused(IntegrationError):
    code = "integration_refused"


class QueryError(IntegrationError):
    code = "query_failed"


class QueryRejected(QueryError):
    code = "query_rejected"


class QueryTimeout(QueryError):
    code = "query_timeout"


class QueryFailed(QueryError):
    code = "query_failed"
