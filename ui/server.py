"""The web app's server: Streamlit's own ASGI app (``st.App``) with a sign-in page and a gate in front.

Why here and not in the Streamlit script: a cookie that scripts cannot read (HttpOnly) can only be set by
the server in an HTTP response, and a Streamlit script answers over a WebSocket. ``st.App`` (Streamlit's
supported way to add routes and middleware to its Starlette server) lets ``/login`` and ``/logout`` be
plain HTTP routes in the same process, so no extra front-end server, proxy or browser component is needed.

- ``/login`` (GET: the form; POST: name and password through the throttle of ``db/app/sign_in.py``) creates
  a server-side session (``db/app/sessions.py``) and sets its random token as the ``vitpro_session`` cookie:
  HttpOnly, SameSite=Strict, Secure over HTTPS. No credential ever goes into a URL.
- ``/login/oidc`` (with OIDC configured) starts Streamlit's own ``st.login`` round trip with the provider.
- ``/logout`` revokes the session and clears the cookies (ours and Streamlit's OIDC ones).
- ``/map/thumb`` answers the Map page's hover thumbnails (ui/map_hover.py), for a live session only.
- The gate lets a request through only with a live session: the ``vitpro_session`` cookie, or Streamlit's
  own OIDC identity cookie once the app script has tied it to a session row of its own (the cookie alone,
  signed or not, opens nothing: a revoked OIDC session is refused here too); a page load without one is sent to
  ``/login``, anything else gets 401, a WebSocket is refused. Pages are sent with ``Cache-Control:
  no-store``, so the back button after sign-out asks the server again and lands on the sign-in page.
The app script (ui/app.py) checks the session again on every rerun, so a revoked session stops at the
next click even on an open page.

OIDC sign-in (Streamlit's ``st.login``) is on when an ``[auth]`` section is found: in ``.streamlit/secrets.toml``
(Streamlit's own lookup), or in the TOML file that ``VITPRO_AUTH_SECRETS_FILE`` names (read here at start and
handed to ``st.App(secrets=...)``, so the secret can live outside the checkout, e.g. a mounted file).

Run with ``vitpro ui`` (or ``streamlit run ui/server.py``).
"""
from __future__ import annotations

import hmac
import os
import secrets
import sys
import tomllib
from pathlib import Path
from urllib.parse import quote, urlsplit

if __package__ in (None, ""):  # `streamlit run ui/server.py` imports this file by path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import HTTPConnection, Request  # noqa: E402
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from ui import warm  # noqa: E402
from ui.login_page import render  # noqa: E402

SESSION_COOKIE = "vitpro_session"
CSRF_COOKIE = "vitpro_csrf"
OIDC_COOKIE = "_streamlit_user"  # Streamlit's st.login identity cookie (HttpOnly, signed by Streamlit)
AUTH_SECRETS_ENV = "VITPRO_AUTH_SECRETS_FILE"
# Paths served without a session: the sign-in routes, health checks, Streamlit's static bundle (no data in
# it) and Streamlit's own OIDC round trip.
PUBLIC_PREFIXES = ("/login", "/logout", "/_stcore/health", "/_stcore/script-health-check", "/_stcore/host-config",
                   "/static/", "/favicon", "/manifest.json", "/auth/", "/oauth2callback")


def auth_secrets(path: str | None = None) -> dict | None:
    """The ``[auth]`` section of the TOML file ``VITPRO_AUTH_SECRETS_FILE`` names, as ``st.App`` secrets; None
    without the variable. A named file that is missing or has no ``[auth]`` stops the server with a message:
    an admin who set the variable meant OIDC to be on."""
    path = path if path is not None else os.environ.get(AUTH_SECRETS_ENV, "").strip()
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"{AUTH_SECRETS_ENV}={path}: cannot read it as TOML ({exc})") from exc
    auth = data.get("auth")
    if not isinstance(auth, dict):
        raise SystemExit(f"{AUTH_SECRETS_ENV}={path}: no [auth] section in it")
    return {"auth": auth}


def _engine():
    from config.settings import load_settings
    from db.app.engine import write_engine

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
    from config.settings import load_settings
    from db.app import sessions, sign_in

    engine = _engine()
    outcome = await run_in_threadpool(sign_in.attempt, engine, str(form.get("username") or ""), str(form.get("password") or ""),
                                      client_address(request), policy=sign_in.policy_for(load_settings().sign_in_delay_seconds))
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


async def login_oidc(request: Request) -> Response:
    """Start Streamlit's OIDC round trip (what ``st.login()`` does from a script) from the sign-in page, as a
    plain same-tab link: the provider sends the browser back to Streamlit's /oauth2callback, which sets the
    identity cookie and opens the app."""
    if not _oidc_configured():
        return _no_store(RedirectResponse("/login", status_code=303))
    from streamlit.user_info import generate_login_redirect_url  # signs a short-lived provider token

    return _no_store(RedirectResponse(generate_login_redirect_url("default"), status_code=303))


async def logout(request: Request) -> Response:
    from db.app import sessions
    from ui.auth import _oidc_token

    for token in (request.cookies.get(SESSION_COOKIE), _oidc_token(dict(request.cookies))):
        if token:
            who = await run_in_threadpool(sessions.lookup, _engine(), token)
            await run_in_threadpool(sessions.revoke, _engine(), token=token, by=who.username if who else "sign-out")
    response = _no_store(RedirectResponse("/login?signed_out=1", status_code=303))
    response.delete_cookie(SESSION_COOKIE, path="/")
    for name in request.cookies:  # Streamlit's OIDC cookies (identity, tokens, and their chunks) go too
        if is_oidc_cookie(name):
            response.delete_cookie(name, path="/")
    return response


def is_oidc_cookie(name: str) -> bool:
    """Streamlit's st.login cookies: ``_streamlit_user``, ``_streamlit_user_tokens`` and their chunks
    ``<name>_1``, ``<name>_2``, ..."""
    for base in (OIDC_COOKIE, OIDC_COOKIE + "_tokens"):
        if name == base or (name.startswith(base + "_") and name[len(base) + 1:].isdigit()):
            return True
    return False


async def _end_oidc_session(request: Request) -> None:
    from db.app import sessions
    from ui.auth import _oidc_token

    token = _oidc_token(dict(request.cookies))
    if token:
        await run_in_threadpool(sessions.revoke, _engine(), token=token, by="sign-out")


class SessionGate:
    """ASGI middleware: nothing but the public paths without a live session (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        if path.startswith(PUBLIC_PREFIXES):
            if path.startswith("/auth/logout"):  # st.logout: end the session row with the cookie
                await _end_oidc_session(Request(scope))
            return await self.app(scope, receive, send)
        request = HTTPConnection(scope)  # HTTP or WebSocket: cookies and headers alike
        # An OIDC sign-in starts on /login (/login/oidc: Streamlit's own st.login round trip) and comes back
        # with Streamlit's identity cookie but no session row yet: the app script makes that row (once it has
        # checked the cookie's signature and the e-mail against the store), so such a browser may open the
        # start page and its WebSocket, and nothing else. A browser with no cookie at all goes to /login, and a
        # revoked or expired OIDC session is refused like any other.
        from db.app import sessions
        from ui.auth import _oidc_token

        engine = _engine()
        session_token, oidc_token = request.cookies.get(SESSION_COOKIE), _oidc_token(dict(request.cookies))
        allowed = False
        for token in (session_token, oidc_token):
            if token and await run_in_threadpool(sessions.lookup, engine, token) is not None:
                allowed = True
                break
        if not allowed and oidc_token and (path == "/" or path.endswith("/_stcore/stream")) and _oidc_configured():
            allowed = not await run_in_threadpool(sessions.known, engine, oidc_token)
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


async def map_thumb(request: Request) -> Response:
    """The Map's hover thumbnail (ui/map_hover.py): behind the gate like every page, so only for a live session."""
    from ui import map_hover

    q = request.query_params
    status, body = await run_in_threadpool(map_hover.thumbnail_response, q.get("f"), q.get("t"), q.get("i"))
    if status != 200:
        return PlainTextResponse(body.decode(), status_code=status)
    return Response(body, media_type="image/jpeg")


routes = [Route("/login", login, methods=["GET", "POST"]), Route("/login/oidc", login_oidc, methods=["GET"]),
          Route("/logout", logout, methods=["GET", "POST"]), Route("/map/thumb", map_thumb, methods=["GET"])]
app = st.App("app.py", routes=routes, middleware=[Middleware(SessionGate)], secrets=auth_secrets())
# this process serves the pages (`streamlit run ui/server.py`, as `vitpro ui` starts it): app.py starts its cache warmer.
# Asked of the command line, not of the import: a test that imports this module to call its helpers serves nothing.
# (Streamlit sets sys.argv to the script's path and its arguments before it runs the script.)
if sys.argv and Path(sys.argv[0]).resolve() == Path(__file__).resolve():
    warm.serving()
