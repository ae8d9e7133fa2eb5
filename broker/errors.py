"""The broker's exceptions: one tree rooted at `BrokerError`, and the one error table.

Every class carries the contract's `code` and the HTTP `status` it is
answered with; `broker.web.http` has a single handler that answers them all
as `{"error": {"code", "message"}}`. Read side errors (`subscribe.errors`)
join the same tree.

    class                          code                     status
    BrokerError                    internal_error           500
    ├── ConfigError                internal_error           500  settings missing or refused
    ├── CryptoError                internal_error           500
    │   ├── UnknownKeyError        internal_error           500  a row names an unknown key
    │   └── DecryptionError        internal_error           500  tampered, or moved to another row
    ├── AuthError                  unauthorized             401  no, forged or expired credential
    ├── CrossOrigin                cross_origin             403  a cookie change from elsewhere
    ├── RequestError               bad_request              400
    │   ├── PayloadTooLarge        payload_too_large        413
    │   └── ShuttingDown           shutting_down            503  retry on another replica
    ├── StoreError                 internal_error           500
    │   ├── NotFound               not_found                404  not in the caller's workspace
    │   ├── Conflict               conflict                 409  the write conflicts with the rows
    │   │   └── RunInProgress      run_in_progress          409  a run streams in the thread
    │   ├── DatabaseUnavailable    database_unavailable     503  PostgreSQL cannot be reached
    │   └── Unstorable             validation_error         422  a value PostgreSQL refuses (a NUL)
    ├── AgentError                 agent_error              502  ends a run, never answered
    │   ├── AgentUnavailable       agent_unavailable        502  refused, 5xx or timed out (retried)
    │   ├── AgentConflict          agent_conflict           409  the agent already runs this run id
    │   ├── AgentRejected          agent_rejected           502  a 4xx: the request itself is wrong
    │   └── AgentStreamBroken      agent_stream_failed      502  the stream broke after events
    └── IntegrationError           integration_error        400  an integration could not answer
        ├── IntegrationUnavailable integration_unavailable  502  its database cannot be reached
        ├── IntegrationRefused     integration_refused      422  the policy (design 4.7) forbids it
        └── QueryError             query_failed             422
            ├── QueryRejected      query_rejected           400  a write, several statements...
            ├── QueryTimeout       query_timeout            408  over the statement timeout
            └── QueryFailed        query_failed             422  PostgreSQL refused the query

Driver errors are translated where they enter (`raise ... from exc`), so no
code above the store sees asyncpg or SQLAlchemy exceptions. A class with a
`public_message` answers that instead of its own text (which may name
internals, as a driver's does).
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    "CrossOrigin",
    "CryptoError",
    "DatabaseUnavailable",
    "DecryptionError",
    "IntegrationError",
    "IntegrationRefused",
    "IntegrationUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "QueryError",
    "QueryFailed",
    "QueryRejected",
    "QueryTimeout",
    "RequestError",
    "RunInProgress",
    "ShuttingDown",
    "StoreError",
    "UnknownKeyError",
    "Unstorable",
]


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    public_message: ClassVar[str | None] = None
    """Answered instead of the exception's text, when the text may name internals."""
    headers: ClassVar[dict[str, str]] = {}
    """Extra response headers of the answer."""

    @property
    def extra(self) -> dict[str, Any]:
        """Extra fields of the answer's `error` object (none by default)."""
        return {}


class ConfigError(BrokerError):
    public_message = "internal error"


class CryptoError(BrokerError):
    public_message = "internal error"


class UnknownKeyError(CryptoError):
    pass


class DecryptionError(CryptoError):
    pass


class AuthError(BrokerError):
    code = "unauthorized"
    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class CrossOrigin(BrokerError):
    """A cookie-authenticated change that does not come from the page's own origin."""

    code = "cross_origin"
    status = 403


class RequestError(BrokerError):
    """The request cannot be served as sent."""

    code = "bad_request"
    status = 400


class PayloadTooLarge(RequestError):
    code = "payload_too_large"
    status = 413


class ShuttingDown(RequestError):
    code = "shutting_down"
    status = 503


class StoreError(BrokerError):
    pass


class NotFound(StoreError):
    code = "not_found"
    status = 404


class Conflict(StoreError):
    code = "conflict"
    status = 409


class RunInProgress(Conflict):
    """The thread already has a run pending or streaming; `run_id` names it (if known)."""

    code = "run_in_progress"

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id

    @property
    def extra(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class DatabaseUnavailable(StoreError):
    code = "database_unavailable"
    status = 503
    public_message = "the database is unavailable"


class Unstorable(StoreError):
    """Input PostgreSQL refuses as data (a NUL character in text, say): the caller's to fix."""

    code = "validation_error"
    status = 422


class AgentError(BrokerError):
    """The agent service could not be used as asked."""

    code = "agent_error"
    status = 502


class AgentUnavailable(AgentError):
    code = "agent_unavailable"


class AgentConflict(AgentError):
    code = "agent_conflict"
    status = 409


class AgentRejected(AgentError):
    code = "agent_rejected"


class AgentStreamBroken(AgentError):
    code = "agent_stream_failed"


class IntegrationError(BrokerError):
    """An integration could not answer; `code` is the contract's error code."""

    code = "integration_error"
    status = 400


class IntegrationUnavailable(IntegrationError):
    code = "integration_unavailable"
    status = 502


class IntegrationRefused(IntegrationError):
    code = "integration_refused"
    status = 422


class QueryError(IntegrationError):
    code = "query_failed"
    status = 422


class QueryRejected(QueryError):
    code = "query_rejected"
    status = 400


class QueryTimeout(QueryError):
    code = "query_timeout"
    status = 408


class QueryFailed(QueryError):
    code = "query_failed"
    status = 422
