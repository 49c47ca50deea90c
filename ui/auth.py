"""Who this browser session is signed in as, checked again on every rerun.

The sign-in itself happens outside the Streamlit script, on the server's ``/login`` route (ui/server.py),
which sets a random session token in an HttpOnly cookie; the Streamlit script reads that cookie from the
WebSocket's handshake (``st.context.cookies``) and asks the store (db/sessions.py) whose live session it
is. Nothing here trusts the browser beyond that token, and no credential is ever put in the URL.

Where Streamlit's OIDC sign-in is configured (``[auth]`` in ``.streamlit/secrets.toml``), ``st.login``
does the provider round trip; the provider's e-mail must be a user's name, and the role comes from the
store. That sign-in gets a session row too, keyed by Streamlit's identity cookie, so revoking works alike.
"""
from __future__ import annotations

import streamlit as st

from db import sessions, users
from ui import context

SESSION_COOKIE = "vitpro_session"  # the same name as ui/server.py's (kept apart: this module must not import Starlette routes)
OIDC_COOKIE = "_streamlit_user"
# Tests under AppTest (which cannot send cookies) hand the token over in session state; no widget has this key,
# so a browser cannot set it.
TOKEN_KEY = "_vitpro_session_token"


def _cookies() -> dict[str, str]:
    try:
        return dict(st.context.cookies)
    except Exception:  # AppTest, or no request context
        return {}


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all
        return False


def _oidc_token(cookies: dict[str, str]) -> str | None:
    """Streamlit's identity cookie (it may come in chunks), as one string: the OIDC session's key."""
    parts = [v for k, v in sorted(cookies.items()) if k == OIDC_COOKIE or k.startswith(OIDC_COOKIE + "__")]
    return "".join(parts) or None


def restore() -> None:
    """Set the signed-in user from the session cookie (or the OIDC sign-in), or clear it: run on every rerun,
    so a revoked session, a disabled user or a changed role takes effect at the next click."""
    engine = context.engine()
    cookies = _cookies()
    token = cookies.get(SESSION_COOKIE) or st.session_state.get(TOKEN_KEY)
    who = sessions.lookup(engine, token) if token else None
    if who is None and _oidc_configured() and getattr(st.user, "is_logged_in", False):
        token = _oidc_token(cookies) or st.session_state.get(TOKEN_KEY)
        email = str(st.user.get("email") or "")
        if users.current(engine, email) is not None:
            if token is None:  # no cookie to key a session by (AppTest): the provider's word for this run only
                who = users.current(engine, email)
            elif not sessions.known(engine, token):
                sessions.create(engine, email, method="oidc", token=token, user_agent=st.context.headers.get("user-agent", "") if cookies else "")
                who = sessions.lookup(engine, token)
            else:
                who = sessions.lookup(engine, token)  # None once revoked: the provider's cookie alone is not enough
    if who is None:
        st.session_state.pop(context.USER_KEY, None)
        st.session_state.pop("_vitpro_token_in_use", None)
    else:
        st.session_state[context.USER_KEY] = who
        st.session_state["_vitpro_token_in_use"] = token


def sign_out() -> None:
    """End this session on the server (its cookie is worthless from now on) and forget the user here."""
    token = st.session_state.get("_vitpro_token_in_use")
    u = context.user()
    if token:
        sessions.revoke(context.engine(), token=token, by=u.username if u else "sign-out")
    st.session_state.pop(context.USER_KEY, None)
    st.session_state.pop(TOKEN_KEY, None)
    if _oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def sign_in_page() -> None:
    """What a browser without a live session sees: the way to the sign-in page (the form lives at /login)."""
    st.title("VIT-Pro Curation Studio")
    if users.count(context.engine()) == 0:
        st.warning("No users yet. On the server: `vitpro users add admin --role admin`, then sign in.")
    st.markdown("You are not signed in, or your session ended. [Sign in](/login)")
    if _oidc_configured():
        st.divider()
        if getattr(st.user, "is_logged_in", False):
            st.error(f"{st.user.get('email')} is not a user of this store, or this sign-in was revoked; ask an admin.")
            if st.button("Sign out of the organisation's account"):
                st.logout()
        elif st.button("Sign in with your organisation's account"):
            st.login()
