"""Bearer tokens: HMAC-SHA256-signed claims of workspace, member and expiry.

A token is signed claims (`broker.web.signed`) keyed with `BROKER_SECRET`.
It is stateless, so any replica verifies any token. The browser page carries
the same token in an HttpOnly cookie, obtained from the one-time login link
that `broker up` prints.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from broker.errors import AuthError
from broker.web.signed import expired, open_claims, sign_claims
from models.ids import MemberId, WorkspaceId

__all__ = ["COOKIE_NAME", "Principal", "mint_token", "verify_token"]

COOKIE_NAME = "broker_session"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a member of a workspace."""

    workspace_id: WorkspaceId
    member_id: MemberId
    expires_at: int


def mint_token(
    secret: str,
    workspace_id: WorkspaceId,
    member_id: str = "owner",
    ttl_s: int = 7 * 24 * 3600,
    *,
    now: float | None = None,
) -> str:
    """A signed token for `member_id` of `workspace_id`, valid for `ttl_s` seconds."""
    issued = int(time.time() if now is None else now)
    claims = {"ws": str(workspace_id), "mem": member_id, "exp": issued + ttl_s}
    return sign_claims(secret.encode(), claims)


def verify_token(secret: str, token: str, *, now: float | None = None) -> Principal:
    """The principal a token names, or `AuthError` if it is malformed, forged or expired."""
    claims = open_claims(secret.encode(), token, "token")
    try:
        principal = Principal(
            workspace_id=WorkspaceId(uuid.UUID(claims["ws"])),
            member_id=MemberId(str(claims["mem"])),
            expires_at=int(claims["exp"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuthError("malformed token claims") from exc
    if expired(principal.expires_at, now):
        raise AuthError("token expired")
    return principal
