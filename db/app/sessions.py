"""Web sessions: who a browser is signed in as, kept on the server.

The browser holds only a random token, in a cookie scripts cannot read (set by ``ui/server.py``); the store
keeps the token's SHA-256, so a copy of this table signs nobody in. A session ends when it is revoked
(sign-out, ``vitpro users revoke``, disabling the user), when it has not been used for ``idle_hours``
(each use slides that expiry), or ``max_days`` after sign-in, whatever its use.

An OIDC sign-in (Streamlit's ``st.login``) gets a row too: its key is the hash of the identity cookie
Streamlit set, so the same revocation applies to both kinds.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import users
from .models import WebSession


@dataclass(frozen=True)
class SessionPolicy:
    idle_hours: float = 12.0  # unused this long: signed out
    max_days: float = 7.0  # signed in this long: signed out, however busy
    renew_every_s: float = 60.0  # a use writes the new expiry at most this often (not on every click)


POLICY = SessionPolicy()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)  # SQLite hands back naive UTC


def create(engine: Engine, username: str, *, method: str = "password", user_agent: str = "", address: str = "",
           token: str | None = None, policy: SessionPolicy = POLICY) -> str:
    """A new session for ``username``; returns the token for the cookie (the only copy of it). ``token`` is
    given for an OIDC session (Streamlit's identity cookie); otherwise a fresh 256-bit one is drawn."""
    raw = token or secrets.token_urlsafe(32)
    now = _now()
    row = WebSession(token_hash=token_hash(raw), username=username, method=method, user_agent=(user_agent or "")[:400],
                     address=(address or "")[:64], created_at=now, last_seen=now, expires_at=now + timedelta(hours=policy.idle_hours))
    try:
        with Session(engine) as s, s.begin():
            s.add(row)
    except IntegrityError:  # the same OIDC cookie seen by two tabs at once: the other made the row
        pass
    return raw


def lookup(engine: Engine, token: str | None, *, policy: SessionPolicy = POLICY) -> users.SignedIn | None:
    """The user a live session token belongs to, as the store has them now (role, enabled); None for an
    unknown, revoked or expired token or a disabled user. A use slides the idle expiry."""
    if not token:
        return None
    now = _now()
    # one short transaction at a time: on SQLite every transaction takes the write lock (db/app/engine.py)
    with Session(engine) as s:
        row = s.scalar(select(WebSession).where(WebSession.token_hash == token_hash(token)))
        if row is not None:
            s.expunge(row)
    if row is None or row.revoked_at is not None or _aware(row.expires_at) <= now:
        return None
    if _aware(row.created_at) + timedelta(days=policy.max_days) <= now:
        return None
    who = users.current(engine, row.username)
    if who is None:
        return None
    if (now - _aware(row.last_seen)).total_seconds() >= policy.renew_every_s:
        with Session(engine) as s, s.begin():
            s.execute(update(WebSession).where(WebSession.id == row.id, WebSession.revoked_at.is_(None))
                      .values(last_seen=now, expires_at=now + timedelta(hours=policy.idle_hours)))
    return who


def known(engine: Engine, token: str) -> bool:
    """Whether a session row exists for ``token`` at all (live, revoked or expired)."""
    with Session(engine) as s:
        return s.scalar(select(WebSession.id).where(WebSession.token_hash == token_hash(token))) is not None


def revoke(engine: Engine, *, token: str | None = None, session_id: int | None = None, username: str | None = None,
           by: str) -> int:
    """End the sessions picked by token, id or user name (all of that user's); returns how many ended."""
    if token is None and session_id is None and username is None:
        raise ValueError("revoke needs a token, a session id or a user name")
    q = update(WebSession).where(WebSession.revoked_at.is_(None))
    if token is not None:
        q = q.where(WebSession.token_hash == token_hash(token))
    if session_id is not None:
        q = q.where(WebSession.id == session_id)
    if username is not None:
        q = q.where(WebSession.username == username)
    with Session(engine) as s, s.begin():
        return s.execute(q.values(revoked_at=_now(), revoked_by=by)).rowcount or 0


def list_sessions(engine: Engine, username: str | None = None, *, active_only: bool = True,
                  policy: SessionPolicy = POLICY) -> list[WebSession]:
    """Sessions, newest first; ``active_only`` leaves out revoked and expired ones."""
    now = _now()
    q = select(WebSession).order_by(WebSession.last_seen.desc(), WebSession.id.desc())
    if username:
        q = q.where(WebSession.username == username)
    if active_only:
        q = q.where(WebSession.revoked_at.is_(None), WebSession.expires_at > now,
                    WebSession.created_at > now - timedelta(days=policy.max_days))
    with Session(engine) as s:
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows


def state(row: WebSession, *, now: datetime | None = None, policy: SessionPolicy = POLICY) -> str:
    now = now or _now()
    if row.revoked_at is not None:
        return f"revoked by {row.revoked_by}"
    if _aware(row.expires_at) <= now or _aware(row.created_at) + timedelta(days=policy.max_days) <= now:
        return "expired"
    return "active"
