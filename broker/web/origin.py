"""The same-origin check for cookie-authenticated requests that change state.

A browser attaches the session cookie to requests other sites trigger;
SameSite=Strict already stops most of them, and this check stops the rest
(older browsers, a sibling subdomain). A request passes when the browser
says it comes from the page itself (`Sec-Fetch-Site: same-origin`, or `none`
for one the user typed), or, without that header, when its `Origin` is the
origin it was sent to. Neither header: refused, since every browser sends
`Origin` on a POST; non-browser clients use a bearer token instead.
"""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["SAFE_METHODS", "is_same_origin"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_same_origin(request: Request) -> bool:
    """Whether a request comes from a page of the origin it was sent to."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() in {"same-origin", "none"}
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return False
    host = request.headers.get("host", "")
    return origin.lower() == f"{request.url.scheme}://{host}".lower()
