"""Who this browser session is signed in as, checked again on every rerun.

The sign-in itself happens outside the Streamlit script, on the server's ``/login`` route (ui/server.py),
which sets a random session token in an HttpOnly cookie; the Streamlit script reads that cookie from the
WebSocket's handshake (``st.context.cookies``) and asks the store (db/app/sessions.py) whose live session it
is. Nothing here trusts the browser beyond that token, and no credential is ever put in the URL.

Where Streamlit's OIDC sign-in is configured (``[auth]`` in ``.streamlit/secrets.toml`` or in the file
``VITPRO_AUTH_SECRETS_FILE`` names, see ui/server.py), ``st.login`` does the provider round trip (started
from the server's /login page); the provider's e-mail must be a user's name, and the role comes from the
store. That sign-in gets a session row too, keyed by Streamlit's identity cookie, so revoking works alike.
"""
from __future__ import annotations

import streamlit as st

from db.app import sessions, users
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
    """Streamlit's identity cookie as one string: the OIDC session's key. A large one comes split: the main
    cookie holds ``chunks-N`` and the parts are ``_streamlit_user_1`` .. ``_N`` (numbered, in that order;
    ``_streamlit_user_tokens`` is another cookie)."""
    main = cookies.get(OIDC_COOKIE)
    if not main:
        return None
    chunks = sorted((int(k[len(OIDC_COOKIE) + 1:]), v) for k, v in cookies.items()
                    if k.startswith(OIDC_COOKIE + "_") and k[len(OIDC_COOKIE) + 1:].isdigit())
    return main + "".join(v for _, v in chunks)


# Why an OIDC sign-in did not give a session (shown by sign_in_page): keyed in session state, set by restore().
OIDC_REFUSAL_KEY = "_vitpro_oidc_refusal"
NOT_A_USER, ENDED, UNVERIFIED = "not_a_user", "ended", "unverified"


def _oidc_user(engine, cookies: dict[str, str]) -> users.SignedIn | None:
    """The store user the provider's sign-in stands for, with a session row of its own; None (and the reason
    in session state) when the e-mail is no enabled user, the provider says it is unverified, or this sign-in's
    session was revoked or ran out (the provider's cookie alone is not enough)."""
    email = str(st.user.get("email") or "")
    if st.user.get("email_verified") is False:  # a provider that lets anyone type any address says so here
        st.session_state[OIDC_REFUSAL_KEY] = UNVERIFIED
        return None
    if users.current(engine, email) is None:
        st.session_state[OIDC_REFUSAL_KEY] = NOT_A_USER
        return None
    token = _oidc_token(cookies) or st.session_state.get(TOKEN_KEY)
    if token is None:  # no cookie to key a session by (AppTest): the provider's word for this run only
        return users.current(engine, email)
    if not sessions.known(engine, token):
        headers = st.context.headers if cookies else {}
        sessions.create(engine, email, method="oidc", token=token, user_agent=headers.get("user-agent", ""),
                        address=str(getattr(st.context, "ip_address", "") or "") if cookies else "")
    who = sessions.lookup(engine, token)
    if who is None:
        st.session_state[OIDC_REFUSAL_KEY] = ENDED
    else:
        st.session_state["_vitpro_token_in_use"] = token
    return who


def restore() -> None:
    """Set the signed-in user from the session cookie (or the OIDC sign-in), or clear it: run on every rerun,
    so a revoked session, a disabled user or a changed role takes effect at the next click."""
    engine = context.engine()
    cookies = _cookies()
    token = cookies.get(SESSION_COOKIE) or st.session_state.get(TOKEN_KEY)
    who = sessions.lookup(engine, token) if token else None
    st.session_state.pop(OIDC_REFUSAL_KEY, None)
    if who is None and _oidc_configured() and getattr(st.user, "is_logged_in", False):
        who = _oidc_user(engine, cookies)
        token = st.session_state.get("_vitpro_token_in_use") if who is not None else None
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
            email = str(st.user.get("email") or "(no e-mail)")
            reason = st.session_state.get(OIDC_REFUSAL_KEY)
            if reason == ENDED:
                st.warning(f"Your sign-in as {email} has ended (signed out, revoked by an admin, or expired). Sign in again.")
                if st.button("Sign in with your organisation's account"):
                    st.login()
            else:
                st.error(f"{email} is not a user of this store{' (the provider has not verified this address)' if reason == UNVERIFIED else ''}:"
                         " ask an admin to add this e-mail address as a user.")
            if st.button("Sign out of the organisation's account"):
                st.logout()
        elif st.button("Sign in with your organisation's account"):
            st.login()
