"""People who sign in to the web app, their roles, and what each role may do.

Passwords are kept as scrypt hashes with a per-user salt (stdlib ``hashlib.scrypt``; no plain text is
stored or logged). ``can(role, action)`` is the one table of permissions: the web app asks it on the
server before every privileged action, so hiding a button is never the only guard.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import User

ANNOTATOR, ADMIN = "annotator", "admin"
ROLES = (ANNOTATOR, ADMIN)
# What each role may do. An annotator inspects and labels; an admin also launches jobs, saves filters,
# makes snapshots and exports (which are jobs too), excludes samples from the dataset, settles annotators'
# disagreements and manages users (unlocks, revokes sessions).
PERMISSIONS = {
    ANNOTATOR: frozenset({"inspect", "label"}),
    ADMIN: frozenset({"inspect", "label", "launch_jobs", "save_filters", "create_pilots", "create_snapshots", "export", "manage_jobs",
                      "exclude_samples", "adjudicate", "manage_users"}),
}
MIN_PASSWORD = 8
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # about 16 MB and 50 ms per check: slow to brute-force, quick to sign in
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,119}$")


class UserError(ValueError):
    """A user that cannot be made or found as asked (bad name, weak password, unknown role, taken name)."""


class Forbidden(PermissionError):
    """The signed-in user's role does not allow this action."""


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in, as the server established it (never taken from the browser)."""

    username: str
    role: str

    def can(self, action: str) -> bool:
        return can(self.role, action)


def can(role: str, action: str) -> bool:
    return action in PERMISSIONS.get(role, frozenset())


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt)}${b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def add(engine: Engine, username: str, password: str, role: str, *, replace: bool = False) -> bool:
    """Create ``username``; with ``replace`` an existing user gets the new password and role (and is
    enabled again). Returns True when a user was replaced."""
    if not _NAME.match(username or ""):
        raise UserError(f"a user name is letters, digits and _.@+- (at most 120), not {username!r}")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")
    hashed = hash_password(password)
    try:
        with Session(engine) as s, s.begin():
            row = s.scalar(select(User).where(User.username == username))
            if row is not None:
                if not replace:
                    raise UserError(f"user {username!r} exists already (use --replace to set a new password or role)")
                row.password_hash, row.role, row.disabled = hashed, role, False
                return True
            s.add(User(username=username, password_hash=hashed, role=role, created_at=datetime.now(timezone.utc), disabled=False))
            return False
    except IntegrityError:  # two admins adding the same name at once
        raise UserError(f"user {username!r} exists already") from None


def authenticate(engine: Engine, username: str, password: str) -> SignedIn | None:
    """The signed-in user, or None for a wrong name, wrong password or disabled user (one answer for all:
    the sign-in form does not tell which names exist)."""
    with Session(engine) as s:
        row = s.scalar(select(User).where(User.username == (username or "").strip()))
        if row is None:
            check_password(password or "", hash_password("x" * MIN_PASSWORD))  # same time as a real check
            return None
        if row.disabled or not check_password(password or "", row.password_hash):
            return None
        return SignedIn(row.username, row.role)


def current(engine: Engine, username: str) -> SignedIn | None:
    """The user as the store has them now: a role changed or a user disabled takes effect at the next
    action, not at the next sign-in."""
    with Session(engine) as s:
        row = s.scalar(select(User).where(User.username == username))
        return None if row is None or row.disabled else SignedIn(row.username, row.role)


def require(engine: Engine, user: SignedIn | None, action: str) -> SignedIn:
    """``user`` re-read from the store, if allowed ``action``; otherwise :class:`Forbidden`."""
    fresh = current(engine, user.username) if user else None
    if fresh is None:
        raise Forbidden("sign in first")
    if not fresh.can(action):
        raise Forbidden(f"{fresh.username} is {fresh.role}: {action.replace('_', ' ')} needs an admin")
    return fresh


def list_users(engine: Engine) -> list[User]:
    with Session(engine) as s:
        rows = list(s.scalars(select(User).order_by(User.username)))
        s.expunge_all()
        return rows


def set_disabled(engine: Engine, username: str, disabled: bool = True, *, by: str = "admin") -> int:
    """Disable (or enable) a user; disabling ends their sessions at once. Returns how many sessions ended."""
    with Session(engine) as s, s.begin():
        row = s.scalar(select(User).where(User.username == username))
        if row is None:
            raise UserError(f"no user {username!r}")
        row.disabled = disabled
    if not disabled:
        return 0
    from .sessions import revoke  # sessions reads users: imported here, not at the top

    return revoke(engine, username=username, by=by)


def count(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count(User.id))) or 0)
