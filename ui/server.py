"""The web app's server: Streamlit's own ASGI app (``st.App``) with a sign-in page and a gate in front.

Why here and not in the Streamlit script: a cookie that scripts cannot read (HttpOnly) can only be set by
the server in an HTTP response, and a Streamlit script answers over a WebSocket. ``st.App`` (Streamlit's
supported way to add routes and middleware to its Starlette server) lets ``/login`` and ``/logout`` be
plain HTTP routes in the same process, so no extra front-end server, proxy or browser component is needed.

- ``/login`` (GET: the form; POST: name and password through the throttle of ``db/sign_in.py``) creates
  a server-side session (``db/sessions.py``) and sets its random token as the ``vitpro_session`` cookie:
  HttpOnly, SameSite=Strict, Secure over HTTPS. No credential ever goes into a URL.
- ``/logout`` revokes the session and clears the cookie.
- The gate lets a request through only with a live session cookie (or Streamlit's own OIDC identity
  cookie, which the app script ties to a session row of its own); a page load without one is sent to
  ``/login``, anything else gets 401, a WebSocket is refused. Pages are sent with ``Cache-Control:
  no-store``, so the back button after sign-out asks the server again and lands on the sign-in page.
The app script (ui/app.py) checks the session again on every rerun, so a revoked session stops at the
next click even on an open page.

Run with ``vitpro ui`` (or ``streamlit run ui/server.py``).
"""
from __future__ import annotations

import hmac
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

if __package__ in (None, ""):  # `streamlit run ui/server.py` imports this file by path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from ui.login_page import render  # noqa: E402

SESSION_COOKIE = "vitpro_session"
CSRF_COOKIE = "vitpro_csrf"
OIDC_COOKIE = "_streamlit_user"  # Streamlit's st.login identity cookie (HttpOnly, signed by Streamlit)
# Paths served without a session: the sign-in routes, health checks, Streamlit's static bundle (no data in
# it) and Streamlit's own OIDC round trip.
PUBLIC_PREFIXES = ("/login", "/logout", "/_stcore/health", "/_stcore/script-health-check", "/_stcore/host-config",
                   "/static/", "/favicon", "/manifest.json", "/auth/", "/oauth2callback")


def _engine():
    from db.app_engine import write_engine
    from vitpro.settings import load_settings

    return write_engine(load_settings().app_url)


def client_address(request) -> str:
    """The peer's address. Behind a reverse proxy every peer is the proxy: set VITPRO_TRUST_PROXY=1 there so
    the throttle counts the address the proxy reports (never trust the header without a proxy)."""
    if os.environ.get("VITPRO_TRUST_PROXY") == "1":
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded.strip():
            return forwarded.split(",")[0].strip()[:64]
    return (request.client.host if request.client else "unknown")[:64]


def _secure(request) -> bool:
    return request.url.scheme == "https" or os.environ.get("VITPRO_COOKIE_SECURE") == "1"


def _safe_next(value: str | None) -> str:
    """Only a path of this site (no scheme, no host, no '//'): the sign-in page is no open redirect."""
    value = (value or "/").strip()
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//") or value.startswith("/login"):
        return "/"
    return value


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _form_page(request: Request, *, message: str = "", status: int = 200, notice: str = "") -> Response:
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    body = render(csrf=csrf, next_path=_safe_next(request.query_params.get("next")), message=message, notice=notice,
                  oidc=_oidc_configured())
    response = _no_store(HTMLResponse(body, status_code=status))
    response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=_secure(request), path="/login")
    return response


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml
        return False


async def login(request: Request) -> Response:
    if request.method == "GET":
        notice = "You are signed out." if request.query_params.get("signed_out") else ""
        return _form_page(request, notice=notice)
    form = await request.form()
    sent, kept = str(form.get("csrf") or ""), request.cookies.get(CSRF_COOKIE) or ""
    if not kept or not hmac.compare_digest(sent, kept):  # a form posted from another site, or a stale page
        return _form_page(request, message="the sign-in form expired: try again", status=400)
    from db import sessions, sign_in

    engine = _engine()
    outcome = await run_in_threadpool(sign_in.attempt, engine, str(form.get("username") or ""), str(form.get("password") or ""),
                                      client_address(request))
    if outcome.user is None:
        status = {sign_in.LOCKED: 423, sign_in.THROTTLED: 429}.get(outcome.reason, 401)
        return _form_page(request, message=outcome.message, status=status)
    token = await run_in_threadpool(sessions.create, engine, outcome.user.username, method="password",
                                    user_agent=request.headers.get("user-agent", ""), address=client_address(request))
    response = _no_store(RedirectResponse(_safe_next(str(form.get("next") or "/")), status_code=303))
    # a session cookie (no Max-Age): closing the browser ends it too; the server-side expiry bounds it anyway
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/")
    response.delete_cookie(CSRF_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    from db import sessions
    from ui.auth import _oidc_token

    for token in (request.cookies.get(SESSION_COOKIE), _oidc_token(dict(request.cookies))):
        if token:
            who = await run_in_threadpool(sessions.lookup, _engine(), token)
            await run_in_threadpool(sessions.revoke, _engine(), token=token, by=who.username if who else "sign-out")
    response = _no_store(RedirectResponse("/login?signed_out=1", status_code=303))
    response.delete_cookie(SESSION_COOKIE, path="/")
    for name in request.cookies:  # Streamlit's OIDC identity cookie (and its chunks) go too
        if name == OIDC_COOKIE or name.startswith(OIDC_COOKIE + "__"):
            response.delete_cookie(name, path="/")
    return response


class SessionGate:
    """ASGI middleware: nothing but the public paths without a live session (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        if path.startswith(PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        request = Request(scope)
        token = request.cookies.get(SESSION_COOKIE)
        # The app script checks OIDC sessions itself. With OIDC configured, the provider round trip starts in
        # the script (st.login), so a browser without a session may open the start page and its WebSocket:
        # the script shows such a browser nothing but the sign-in button.
        allowed = bool(request.cookies.get(OIDC_COOKIE)) or (_oidc_configured() and (path == "/" or path.endswith("/_stcore/stream")))
        if token and not allowed:
            from db import sessions

            allowed = await run_in_threadpool(sessions.lookup, _engine(), token) is not None
        if not allowed:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 4401})
            wants_page = scope.get("method") == "GET" and "text/html" in request.headers.get("accept", "")
            target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
            response = (RedirectResponse(f"/login?next={quote(target)}", status_code=303) if wants_page
                        else PlainTextResponse("sign in first", status_code=401))
            return await _no_store(response)(scope, receive, send)

        async def send_no_store(message) -> None:
            if message["type"] == "http.response.start":  # pages and data: never from the browser's cache
                message.setdefault("headers", [])
                message["headers"] = [h for h in message["headers"] if h[0].lower() != b"cache-control"]
                message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        return await self.app(scope, receive, send_no_store if scope["type"] == "http" else send)


routes = [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["GET", "POST"])]
app = st.App("app.py", routes=routes, middleware=[Middleware(SessionGate)])
