"""
The sessions console's page: one server-rendered HTML page, its sign-in hand-over, and its guards.

The page (``templates/console.html``) is Jinja2 with a little plain JavaScript, inline and allowed by a
per-response nonce in a strict Content-Security-Policy: nothing is loaded from anywhere else, and it
works in deployments without internet. It reads and changes sessions only through the console's JSON
API, with the user's Airflow token found the way Airflow's own UI finds it:

* Airflow 3.1+ keeps the token in an HttpOnly cookie (``_token``) that its API reads; the browser
  sends it by itself.
* Airflow 3.0's UI keeps it in ``localStorage`` and sends it as ``Authorization: Bearer``, and its API
  reads no cookie. The page does the same; :class:`TokenCookieAsBearer` lets the page itself (a plain
  navigation, which cannot carry a header) be authenticated from a cookie the page sets for its own
  path.

Changing requests that carry the token cookie must carry ``X-Requested-By: whatsinfinity-console``, a
header a page of another site cannot add without the API server's CORS consent, and must not come
from another site (``Sec-Fetch-Site``): see :func:`refuse_cross_site`.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse

if TYPE_CHECKING:
    from jinja2 import Environment
    from starlette.types import ASGIApp, Receive, Scope, Send

#: The cookie that holds the user's token: Airflow's own name for it.
TOKEN_COOKIE = "_token"
#: The header a changing request authenticated by a cookie must carry.
CSRF_HEADER = "X-Requested-By"
CSRF_HEADER_VALUE = "whatsinfinity-console"
#: Seconds between two refreshes of the list in the page.
REFRESH_SECONDS = 5
#: Seconds after which the page fetches a waiting QR again (the service's QR codes last 60 s).
QR_REFRESH_SECONDS = 20
#: Seconds the page's own token cookie lasts on Airflow 3.0 (set again at every load of the page).
PAGE_COOKIE_SECONDS = 600
#: Airflow's own entry to its sign-in, which sends the user back to ``next`` where the auth manager can.
AIRFLOW_LOGIN_PATH = "/api/v2/auth/login"


class CrossSiteRequestError(Exception):
    """A changing request that may have been forged by another site."""


@cache
def _templates() -> Environment:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("airflow_provider_whatsinfinity.plugins", "templates"),
        autoescape=select_autoescape(default=True),
    )


@cache
def api_reads_token_cookie() -> bool:
    """Whether Airflow's API authenticates a request by its ``_token`` cookie (Airflow 3.1+), not 3.0."""
    from airflow.api_fastapi.core_api import security

    return hasattr(security, "COOKIE_NAME_JWT_TOKEN")


def _airflow_root(request: Request) -> str:
    """Return the path Airflow is served under ("" at the root), from where the console is mounted."""
    from airflow_provider_whatsinfinity.plugins.console import URL_PREFIX

    root = str(request.scope.get("root_path", ""))
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""


def page_path(request: Request) -> str:
    """Return the page's path, e.g. ``/whatsinfinity/``."""
    return str(request.scope.get("root_path", "")) + "/"


def is_page(request: Request) -> bool:
    """Whether the request is for the page itself (with or without its trailing slash)."""
    return request.url.path in (page_path(request), page_path(request).rstrip("/"))


def login_url(request: Request) -> str:
    """Return Airflow's sign-in URL, asking it to come back to the page."""
    from urllib.parse import urlencode

    return f"{_airflow_root(request)}{AIRFLOW_LOGIN_PATH}?{urlencode({'next': page_path(request)})}"


def _html(template: str, status_code: int, **values: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    body = _templates().get_template(template).render(nonce=nonce, **values)
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "img-src 'self' blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            # Airflow 3.1+ shows the page in an iframe of its own UI; no other site may frame it.
            "frame-ancestors 'self'",
        ]
    )
    headers = {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return HTMLResponse(body, status_code=status_code, headers=headers)


def render_console(request: Request, user_name: str, can_edit: bool, api_base: str) -> HTMLResponse:
    """
    Render the console page for a signed-in user who may read connections.

    :param request: The request for the page.
    :param user_name: Who is signed in, shown on the page.
    :param can_edit: Whether the user may edit connections: only then are the QR and the actions shown
        (the API refuses them anyway).
    :param api_base: The path of ``GET /api/sessions``.
    """
    config = {
        "apiBase": api_base,
        "pagePath": page_path(request),
        "loginUrl": login_url(request),
        "canEdit": can_edit,
        "refreshSeconds": REFRESH_SECONDS,
        "qrRefreshSeconds": QR_REFRESH_SECONDS,
        "bearerFromStorage": not api_reads_token_cookie(),
        "pageCookieSeconds": PAGE_COOKIE_SECONDS,
    }
    return _html("console.html", 200, user_name=user_name, can_edit=can_edit, config=config)


def render_sign_in(request: Request) -> HTMLResponse:
    """Answer a request for the page without a valid token: hand Airflow 3.0's token over, or sign in."""
    config = {
        "pagePath": page_path(request),
        "loginUrl": login_url(request),
        "bearerFromStorage": not api_reads_token_cookie(),
        "pageCookieSeconds": PAGE_COOKIE_SECONDS,
    }
    return _html("sign_in.html", 401, login_url=config["loginUrl"], config=config)


def refuse_cross_site(request: Request) -> None:
    """
    Refuse a changing request that another site may have made in the user's name.

    A browser tells where a request comes from in ``Sec-Fetch-Site`` (over HTTPS and on localhost):
    anything but this origin is refused. A request that carries Airflow's token cookie, which a
    browser adds by itself, must also carry ``X-Requested-By: whatsinfinity-console``, a header
    another site cannot add. A script or ``curl`` sends its token in ``Authorization`` and no cookie,
    and needs nothing more.

    :param request: The request to check.
    :raises CrossSiteRequestError: When the request may have been forged.
    """
    site = request.headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        raise CrossSiteRequestError(f"refused a request from another site (Sec-Fetch-Site: {site})")
    # Whatever else the request carries: Airflow signs it in by the cookie when its Authorization is not
    # a valid bearer token (3.3) or before it looks at the header at all (3.1 and 3.2's refresh
    # middleware), and a browser adds Basic or Negotiate credentials of a proxy by itself.
    if TOKEN_COOKIE in request.cookies and request.headers.get(CSRF_HEADER) != CSRF_HEADER_VALUE:
        raise CrossSiteRequestError(
            f"a request that carries Airflow's {TOKEN_COOKIE} cookie must carry the header "
            f"{CSRF_HEADER}: {CSRF_HEADER_VALUE}"
        )


class TokenCookieAsBearer:
    """
    ASGI middleware for Airflow 3.0: the ``_token`` cookie as ``Authorization: Bearer`` for the console.

    Airflow 3.0's API reads only the header; 3.1+ reads the cookie itself, and this changes nothing
    there. A request that has its own ``Authorization`` header keeps it.

    :param app: The console's app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the header from the cookie where Airflow's API would not read the cookie."""
        if scope["type"] == "http" and not api_reads_token_cookie():
            headers = list(scope.get("headers", []))
            if not any(name == b"authorization" for name, _ in headers):
                token = Request(scope).cookies.get(TOKEN_COOKIE)
                if token:
                    bearer = f"Bearer {token}".encode("latin-1", "replace")
                    scope = {**scope, "headers": [*headers, (b"authorization", bearer)]}
        await self.app(scope, receive, send)
