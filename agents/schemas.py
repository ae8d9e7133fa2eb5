"""The agent service's HTTP bodies (design 4.4).

The run request is shared with the broker, which builds it, so it lives in
`models.agent_api`; the error body is this service's own.
"""

from __future__ import annotations

from pydantic import BaseModel

from models.agent_api import AgentIntegration as Integration
from models.agent_api import RunRequest

__all__ = ["ErrorBody", "ErrorDetail", "Integration", "RunRequest"]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """`{"error": {"code", "message"}}`, the body of every error answer."""

    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str) -> ErrorBody:
        return cls(error=ErrorDetail(code=code, message=message))
