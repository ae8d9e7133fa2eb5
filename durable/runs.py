"""Runs as read-only Durable Streams in JSON mode (placeholder)."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from durable.protocol import ProtocolError

__all__ = ["run_response"]


async def run_response(request: Request, workspace_id: uuid.UUID, rest: str) -> Response:
    raise ProtocolError(404, "Run not found")
