"""Bearer tokens: HMAC-SHA256-signed claims of workspace, member and expiry.

A token is `base64url(claims JSON) "." base64url(signature)`, signed with
`BROKER_SECRET`. It is stateless, so any replica verifies any token. The
browser page carries the same token in an HttpOnly cookie, obtained from the
one-time login link that `broker up` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from broker.errors import AuthError
from models.ids import MemberId, WorkspaceId

__all__ = ["COOKIE_NAME", "Principal", "mint_token", "verify_token"]

COOKIE_NAME = "broker_session"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a member of a workspace."""

    workspace_id: WorkspaceId
    member_id: MemberId
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


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
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_sign(secret, body)}"


def verify_token(secret: str, token: str, *, now: float | None = None) -> Principal:
    """The principal a token names, or `AuthError` if it is malformed, forged or expired."""
    body, sep, signature = token.strip().partition(".")
    if not sep or not body or not signature:
        raise AuthError("malformed token")
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (TypeError, a 500).
    if not hmac.compare_digest(signature.encode(), _sign(secret, body).encode()):
        raise AuthError("invalid token signature")
    try:
        claims = json.loads(_unb64(body))
        principal = Principal(
            workspace_id=WorkspaceId(uuid.UUID(claims["ws"])),
            member_id=MemberId(str(claims["mem"])),
            expires_at=int(claims["exp"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise AuthError("malformed token claims") from exc
    if principal.expires_at <= (time.time() if now is None else now):
        raise AuthError("token expired")
    return principal
