"""Password sign-in with throttling: every try is recorded; failures, counted per user name and per address
since that name's (or address's) last success, first make the next try wait longer and longer, then lock
the name or the address until an admin lifts it (``vitpro users unlock``).

One answer for a wrong name and a wrong password, and the same throttle for names that do not exist, so
the form tells a guesser nothing about which names are real.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import users
from .models import Lockout, SignInAttempt

OK, WRONG, LOCKED, THROTTLED = "signed_in", "wrong_password", "locked", "throttled"


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 2  # this many failures in a row cost nothing
    base_delay_s: float = 1.0  # then the next try waits 1 s, 2 s, 4 s, ... after the last failure
    max_delay_s: float = 60.0
    lock_after: int = 5  # failures in a row on one user name: locked
    address_lock_after: int = 20  # failures in a row from one address (over any names): locked
    window_minutes: float = 60.0  # failures older than this are forgotten


POLICY = ThrottlePolicy()


def policy_for(delay_s: float) -> ThrottlePolicy:
    """The policy with its first wait set (VITPRO_SIGN_IN_DELAY_SECONDS); the lock thresholds stay."""
    return replace(POLICY, base_delay_s=delay_s)


@dataclass(frozen=True)
class Outcome:
    user: users.SignedIn | None
    reason: str  # OK | WRONG | LOCKED | THROTTLED
    message: str
    wait_s: float = 0.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _failures(s: Session, column, subject: str, since: datetime) -> tuple[int, datetime | None]:
    """Failures on ``subject`` since its last success (and within the window), and when the last one was."""
    last_ok = s.scalar(select(func.max(SignInAttempt.ts)).where(column == subject, SignInAttempt.ok.is_(True)))
    start = max(since, _aware(last_ok)) if last_ok else since
    n, last = s.execute(select(func.count(), func.max(SignInAttempt.ts)).where(
        column == subject, SignInAttempt.ok.is_(False), SignInAttempt.reason == WRONG, SignInAttempt.ts > start)).one()
    return int(n or 0), (_aware(last) if last else None)


def delay_for(failures: int, policy: ThrottlePolicy = POLICY) -> float:
    """Seconds the next try must wait after ``failures`` failures in a row."""
    extra = failures - policy.free_failures
    return 0.0 if extra < 0 else min(policy.max_delay_s, policy.base_delay_s * 2 ** extra)


def locked(engine: Engine, username: str, address: str) -> Lockout | None:
    with Session(engine) as s:
        row = s.scalar(select(Lockout).where(((Lockout.kind == "user") & (Lockout.subject == username))
                                             | ((Lockout.kind == "address") & (Lockout.subject == address))))
        if row is not None:
            s.expunge(row)
        return row


def _record(s: Session, username: str, address: str, ok: bool, reason: str, now: datetime) -> None:
    s.add(SignInAttempt(username=username[:120], address=address[:64], ok=ok, reason=reason, ts=now))


def _lock(engine: Engine, kind: str, subject: str, failures: int) -> None:
    try:
        with Session(engine) as s, s.begin():
            if s.scalar(select(Lockout).where(Lockout.kind == kind, Lockout.subject == subject)) is None:
                s.add(Lockout(kind=kind, subject=subject[:120], failures=failures, locked_at=_now()))
    except IntegrityError:  # locked by a concurrent try
        pass


def attempt(engine: Engine, username: str, password: str, address: str, *, policy: ThrottlePolicy = POLICY) -> Outcome:
    """Check a name and password under the throttle; record the try whatever its outcome."""
    username, address = (username or "").strip()[:120], (address or "unknown")[:64]
    now = _now()
    if locked(engine, username, address) is not None:
        with Session(engine) as s, s.begin():
            _record(s, username, address, False, LOCKED, now)
        return Outcome(None, LOCKED, "too many failed sign-ins: this account is locked; an admin can lift it "
                                     f"(vitpro users unlock {username or 'NAME'})")
    since = now - timedelta(minutes=policy.window_minutes)
    with Session(engine) as s:
        user_fails, user_last = _failures(s, SignInAttempt.username, username, since)
        addr_fails, addr_last = _failures(s, SignInAttempt.address, address, since)
    waits = [(_aware(last) + timedelta(seconds=delay_for(n, policy)) - now).total_seconds()
             for n, last in ((user_fails, user_last), (addr_fails, addr_last)) if last is not None]
    wait = max([0.0, *waits])
    if wait > 0:
        with Session(engine) as s, s.begin():
            _record(s, username, address, False, THROTTLED, now)
        return Outcome(None, THROTTLED, f"too many failed sign-ins: wait {math.ceil(wait)} s before the next try", wait)
    who = users.authenticate(engine, username, password)
    with Session(engine) as s, s.begin():
        _record(s, username, address, who is not None, OK if who else WRONG, now)
    if who is not None:
        return Outcome(who, OK, f"signed in as {who.username}")
    if user_fails + 1 >= policy.lock_after:
        _lock(engine, "user", username, user_fails + 1)
    if addr_fails + 1 >= policy.address_lock_after:
        _lock(engine, "address", address, addr_fails + 1)
    return Outcome(None, WRONG, "wrong user name or password (or the user is disabled)", delay_for(user_fails + 1, policy))


def unlock(engine: Engine, *, username: str | None = None, address: str | None = None) -> int:
    """Lift the lockout of a user name and/or an address; their failure count starts again from zero."""
    if not username and not address:
        raise ValueError("unlock needs a user name or an address")
    now = _now()
    n = 0
    with Session(engine) as s, s.begin():
        for kind, subject in (("user", username), ("address", address)):
            if subject:
                n += s.execute(delete(Lockout).where(Lockout.kind == kind, Lockout.subject == subject)).rowcount or 0
                # a success-like marker so the old failures no longer count towards the next lock
                s.add(SignInAttempt(username=subject if kind == "user" else "", address=subject if kind == "address" else "",
                                    ok=True, reason="unlocked", ts=now))
    return n


def lockouts(engine: Engine) -> list[Lockout]:
    with Session(engine) as s:
        rows = list(s.scalars(select(Lockout).order_by(Lockout.locked_at)))
        s.expunge_all()
        return rows


def recent(engine: Engine, *, limit: int = 50, username: str | None = None) -> list[SignInAttempt]:
    q = select(SignInAttempt).order_by(SignInAttempt.ts.desc(), SignInAttempt.id.desc()).limit(limit)
    if username:
        q = q.where(SignInAttempt.username == username)
    with Session(engine) as s:
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows
