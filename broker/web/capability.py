"""Run capabilities: what lets an agent's tools call back into the broker for one run.

When a producer starts (or re-attaches to) a run it mints a capability and
hands it to the agent in the run request (`capability`, design 4.4). The
agent's tools send it back as `x-run-capability` on the integration-query
callback, and the broker answers only for that run, only while it is
streaming, and only for an integration of that run's workspace. The agent
never names a workspace: the capability does.

A capability is signed claims (`broker.web.signed`), the same shape as a
bearer token (`broker.web.auth`), but keyed with a key derived from
`BROKER_SECRET` for this one purpose, so neither can pass for the other. The
claims are `{"run", "ws", "exp"}` (expiry in Unix seconds); it is stateless,
so any replica verifies any capability.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from broker.errors import AuthError
from broker.web.signed import expired, open_claims, sign_claims
from models.ids import RunId, WorkspaceId

__all__ = ["CAPABILITY_HEADER", "RunCapability", "mint_capability", "verify_capability"]

CAPABILITY_HEADER = "x-run-capability"
_PURPOSE = b"stream-broker run capability v1"


@dataclass(frozen=True, slots=True)
class RunCapability:
    """What a valid capability names: a run, its workspace, and until when (Unix seconds)."""

    run_id: RunId
    workspace_id: WorkspaceId
    expires_at: int


def _key(secret: str) -> bytes:
    """The capability's own key, derived from `BROKER_SECRET` for this one purpose."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def mint_capability(
    secret: str,
    run_id: RunId,
    workspace_id: WorkspaceId,
    ttl_s: int,
    *,
    now: float | None = None,
) -> str:
    """A signed capability for `run_id` of `workspace_id`, valid for `ttl_s` seconds."""
    issued = int(time.time() if now is None else now)
    claims = {"run": str(run_id), "ws": str(workspace_id), "exp": issued + ttl_s}
    return sign_claims(_key(secret), claims)


def verify_capability(secret: str, capability: str, *, now: float | None = None) -> RunCapability:
    """The run a capability names, or `AuthError` if it is missing, malformed, forged or expired.

    Only the signature and the expiry are checked here; whether the run is
    still streaming is the caller's question (it needs the database).
    """
    claims = open_claims(_key(secret), capability, "run capability")
    try:
        granted = RunCapability(
            run_id=RunId(uuid.UUID(claims["run"])),
            workspace_id=WorkspaceId(uuid.UUID(claims["ws"])),
            expires_at=int(claims["exp"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuthError("malformed run capability claims") from exc
    if expired(granted.expires_at, now):
        raise AuthError("run capability expired")
    return granted
