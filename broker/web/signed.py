"""Signed claims: the one format of bearer tokens and run capabilities.

A signed value is `base64url(claims JSON) "." base64url(HMAC-SHA256(key, body))`.
It is stateless, so any replica verifies what any other signed. Each user of
it picks its own key (`broker.web.auth` the secret itself, `broker.web.capability`
a key derived for its purpose), so one kind can never pass for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from broker.errors import AuthError

__all__ = ["expired", "open_claims", "sign_claims"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, body: str) -> bytes:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()).encode()


def sign_claims(key: bytes, claims: dict[str, Any]) -> str:
    """`claims` (JSON-able) signed with `key`."""
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_signature(key, body).decode()}"


def open_claims(key: bytes, signed: str, what: str) -> dict[str, Any]:
    """The claims of a value signed with `key`; `AuthError` naming `what` if malformed or forged.

    The signature is compared as bytes in constant time: `compare_digest` refuses a
    `str` with non-ASCII characters (a TypeError, so a 500, for a hostile header).
    """
    body, sep, signature = signed.strip().partition(".")
    if not sep or not body or not signature:
        raise AuthError(f"missing or malformed {what}")
    if not hmac.compare_digest(signature.encode(), _signature(key, body)):
        raise AuthError(f"invalid {what} signature")
    try:
        claims = json.loads(_unb64(body))
    except (ValueError, binascii.Error) as exc:
        raise AuthError(f"malformed {what} claims") from exc
    if not isinstance(claims, dict):
        raise AuthError(f"malformed {what} claims")
    return claims


def expired(expires_at: int, now: float | None) -> bool:
    """Whether a claim's expiry (Unix seconds) has passed at `now` (default: the clock)."""
    return expires_at <= (time.time() if now is None else now)
