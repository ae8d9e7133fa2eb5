"""The browser page: `GET /`, `GET /threads/{thread_id}` and its static files.

Both page routes answer the same HTML shell (`static/index.html`); the ES
modules read the thread from the URL and talk to the JSON API with the
session cookie. Without a valid cookie the routes answer a 401 page that
says how to get a login link. The page is served with a strict Content
Security Policy: scripts, styles and connections from this origin only, so
even a sanitizer miss could not run inline script or send data elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from broker.errors import AuthError
from broker.web.auth import COOKIE_NAME, verify_token
from broker.web.http import get_settings
from broker.web.login import page_html

__all__ = ["STATIC_DIR", "install_page", "router"]

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter()

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_SIGN_IN = page_html(
    "Sign in to the broker",
    "<p>Open the login link that <code>broker up</code> printed, or print a fresh one with "
    "<code>broker login-link</code>.</p>",
)


def _signed_in(request: Request) -> bool:
    settings = get_settings(request)
    token = request.cookies.get(COOKIE_NAME, "")
    try:
        verify_token(settings.require(settings.secret, "BROKER_SECRET"), token)
    except AuthError:
        return False
    return True


def _page(request: Request) -> Response:
    if not _signed_in(request):
        return HTMLResponse(_SIGN_IN, status_code=401, headers=_SECURITY_HEADERS)
    return FileResponse(STATIC_DIR / "index.html", headers=_SECURITY_HEADERS)


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    """The page: the workspace's threads and a message box."""
    return _page(request)


@router.get("/threads/{thread_id}", include_in_schema=False)
async def thread_page(request: Request, thread_id: str) -> Response:
    """The page opened on a thread: its transcript and its live run."""
    return _page(request)


def install_page(app: FastAPI) -> None:
    """Add the page routes and serve `static/` under `/static`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
