"""Sign-in for the web app.

A name and password are checked against the store's users (scrypt hashes, db/users.py); where Streamlit's
OIDC sign-in is configured (``[auth]`` in ``.streamlit/secrets.toml``), the provider's e-mail must be a
user's name and the role comes from the store. The signed-in user lives in the server-side session only.

A page refresh starts a new Streamlit session; so that it does not sign the curator out mid-label, the URL
carries a session token: the user name and an expiry, signed with HMAC-SHA256 by a secret kept beside the
store (``$VITPRO_HOME/app-secret``, or ``VITPRO_APP_SECRET``). A token is only a claim of who signed in;
the role is read from the store at every action.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

import streamlit as st

from db import users
from ui import context

TOKEN_PARAM = "s"
TOKEN_HOURS = 12


def _secret(home: Path) -> bytes:
    env = os.environ.get("VITPRO_APP_SECRET")
    if env:
        return env.encode("utf-8")
    path = home / "app-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two servers starting at once keep one secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip().encode("utf-8")


def make_token(username: str, secret: bytes, *, now: float | None = None, hours: float = TOKEN_HOURS) -> str:
    expires = int((now or time.time()) + hours * 3600)
    body = base64.urlsafe_b64encode(f"{username}|{expires}".encode("utf-8")).decode("ascii").rstrip("=")
    sig = hmac.new(secret, body.encode("ascii"), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{sig}"


def read_token(token: str, secret: bytes, *, now: float | None = None) -> str | None:
    """The user name a valid, unexpired token was made for; None otherwise."""
    try:
        body, sig = token.rsplit(".", 1)
        if not hmac.compare_digest(hmac.new(secret, body.encode("ascii"), hashlib.sha256).hexdigest()[:32], sig):
            return None
        username, expires = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8").rsplit("|", 1)
        return username if int(expires) > (now or time.time()) else None
    except (ValueError, UnicodeDecodeError):
        return None


def _start(u: users.SignedIn) -> None:
    st.session_state[context.USER_KEY] = u
    st.session_state["_vitpro_token"] = make_token(u.username, _secret(context.settings().home))


def sign_out() -> None:
    st.session_state.pop(context.USER_KEY, None)
    st.session_state.pop("_vitpro_token", None)
    st.query_params.pop(TOKEN_PARAM, None)
    if _oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def keep_in_url() -> None:
    """Put the session token in the URL, so a refresh of this tab stays signed in."""
    token = st.session_state.get("_vitpro_token")
    if token and st.query_params.get(TOKEN_PARAM) != token:
        st.query_params[TOKEN_PARAM] = token


def restore() -> None:
    """Sign in again from the URL's token (after a refresh) or from the OIDC provider's session."""
    if context.user() is not None:
        return
    token = st.query_params.get(TOKEN_PARAM)
    if token:
        name = read_token(token, _secret(context.settings().home))
        u = users.current(context.engine(), name) if name else None
        if u is not None:
            st.session_state[context.USER_KEY] = u
            st.session_state["_vitpro_token"] = token
            return
        st.query_params.pop(TOKEN_PARAM, None)
    if _oidc_configured() and getattr(st.user, "is_logged_in", False):
        u = users.current(context.engine(), str(st.user.get("email") or ""))
        if u is not None:
            _start(u)


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all
        return False


def sign_in_page() -> None:
    st.title("VIT-Pro Curation Studio")
    st.caption("Sign in with the name and password an admin made for you (`vitpro users add NAME --role annotator|admin`).")
    if users.count(context.engine()) == 0:
        st.warning("No users yet. On the server: `vitpro users add admin --role admin`, then sign in here.")
    with st.form("sign_in"):
        name = st.text_input("User name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        u = users.authenticate(context.engine(), name, password)
        if u is None:
            time.sleep(0.3)  # a little friction for guessing
            st.error("wrong user name or password (or the user is disabled)")
        else:
            st.session_state.pop("sign_in_password", None)
            _start(u)
            st.rerun()
    if _oidc_configured():
        st.divider()
        if st.button("Sign in with your organisation's account"):
            st.login()
        if getattr(st.user, "is_logged_in", False):
            st.error(f"{st.user.get('email')} is not a user of this store; ask an admin to add them.")
