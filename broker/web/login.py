"""One-time login links for the browser page, traded for a session cookie.

`broker up` and `broker login-link` print `{base}/login?code=C`. Only the
SHA-256 of `C` is stored (`login_codes`), so a database reader cannot log in,
and any process sharing the database can issue or redeem a code. Redeeming
is one `UPDATE ... WHERE used_at IS NULL AND expires_at > now() RETURNING`,
so a code logs in exactly once even when two tabs race for it.

`GET /login?code=C` sets the session cookie (a bearer token of the code's
member, HttpOnly, SameSite=Strict, Path=/) and redirects to `/` with 303; an
unknown, used or expired code answers a 401 page.
"""

from __future__ import annotations

import hashlib
import html
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, cast

import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from broker.errors import AuthError
from broker.store.postgres import Store
from broker.web.auth import COOKIE_NAME, mint_token
from broker.web.http import get_settings, get_store
from broker.web.settings import Settings
from models.ids import MemberId, WorkspaceId
from models.tables import LoginCode

__all__ = [
    "CODE_TTL_S",
    "SESSION_TTL_S",
    "LoginCodes",
    "Redeemed",
    "login_url",
    "page_html",
    "router",
]

log = structlog.get_logger(__name__)

router = APIRouter()

CODE_TTL_S = 24 * 3600
"""How long a printed link stays usable, in seconds (once)."""

SESSION_TTL_S = 7 * 24 * 3600
"""How long the session cookie (and the token inside it) lives, in seconds."""

_codes = cast(sa.Table, LoginCode.__table__)


@dataclass(frozen=True, slots=True)
class Redeemed:
    workspace_id: WorkspaceId
    member_id: MemberId


def _hash(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


class LoginCodes:
    """Issue and redeem one-time codes; the statements of `login_codes`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def issue(
        self, workspace_id: WorkspaceId, member_id: str = "owner", ttl_s: float = CODE_TTL_S
    ) -> str:
        """A fresh code (43 url-safe characters) valid once for `ttl_s` seconds.

        Codes spent or expired more than a day ago are deleted on the way.
        """
        code = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self.store.transaction() as conn:
            await conn.execute(_codes.delete().where(_codes.c.expires_at < now - timedelta(days=1)))
            await conn.execute(
                _codes.insert().values(
                    code_hash=_hash(code),
                    workspace_id=workspace_id,
                    member_id=member_id,
                    expires_at=now + timedelta(seconds=ttl_s),
                )
            )
        return code

    async def redeem(self, code: str) -> Redeemed:
        """Spend a code: its member, or `AuthError` if unknown, already used or expired."""
        stmt = (
            _codes.update()
            .where(
                _codes.c.code_hash == _hash(code),
                _codes.c.used_at.is_(None),
                _codes.c.expires_at > sa.func.now(),
            )
            .values(used_at=sa.func.now())
            .returning(_codes.c.workspace_id, _codes.c.member_id)
        )
        async with self.store.transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise AuthError("this login link is unknown, already used or expired")
        return Redeemed(WorkspaceId(row.workspace_id), MemberId(row.member_id))


def login_url(base_url: str, code: str) -> str:
    """The link to print: `{base_url}/login?code={code}`."""
    return f"{base_url.rstrip('/')}/login?code={code}"


def page_html(title: str, body_html: str) -> str:
    """A minimal page in the app's style, for messages such as a refused login."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<link rel=stylesheet href="/static/style.css"></head>'
        f'<body class="notice-page"><main class="notice"><h1>{html.escape(title)}</h1>'
        f"{body_html}</main></body></html>"
    )


_MAX_CODE = 200
"""The longest code looked up; a longer one is refused without touching the database."""

_REFUSED = page_html(
    "This login link no longer works",
    "<p>A login link works once and for a limited time. Get a fresh one with "
    "<code>broker login-link</code> and open it in this browser.</p>",
)


@router.get("/login", include_in_schema=False)
async def login(
    store: Annotated[Store, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    code: Annotated[str, Query()] = "",
) -> Response:
    """Trade a one-time code for the session cookie, then go to the page.

    Any code that is not a live one, empty or too long included, gets the 401 page.
    """
    try:
        if not code or len(code) > _MAX_CODE:
            raise AuthError("no code" if not code else "code too long")
        member = await LoginCodes(store).redeem(code)
    except AuthError as exc:
        log.info("login_refused", reason=str(exc))
        return HTMLResponse(_REFUSED, status_code=401, headers={"Cache-Control": "no-store"})
    token = mint_token(
        settings.require(settings.secret, "BROKER_SECRET"),
        member.workspace_id,
        member.member_id,
        SESSION_TTL_S,
    )
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.broker_url.startswith("https://"),
    )
    log.info("login_accepted", workspace_id=str(member.workspace_id))
    return response
