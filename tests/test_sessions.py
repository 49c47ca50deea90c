"""Sign-in and sessions: server-side session rows (hashed tokens, sliding expiry, revocation), the sign-in
throttle and lockout, the CLI that manages them, and the real server (``vitpro ui``'s st.App) over real HTTP:
the HttpOnly cookie, no credential in any URL, the gate, sign-out."""
from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from config.settings import load_settings
from db.app import sessions, sign_in, users
from db.app.engine import write_engine
from db.app.models import SignInAttempt, WebSession
from db.store import open_store

from .helpers import AppServer


@pytest.fixture
def engine(home):
    s = load_settings()
    open_store(s.store)
    eng = write_engine(s.app_url)
    users.add(eng, "anna", "annotator-pass-1", "annotator")
    users.add(eng, "admin", "admin-pass-1", "admin")
    return eng


def _set(engine, token: str, **values) -> None:
    """Move a session's clock (Python datetimes: SQLite keeps them as text, SQL arithmetic on them is not portable)."""
    with Session(engine) as s, s.begin():
        s.execute(update(WebSession).where(WebSession.token_hash == sessions.token_hash(token)).values(**values))


def test_a_session_is_a_hashed_server_side_row_that_slides_and_ends(engine):
    token = sessions.create(engine, "anna", user_agent="Firefox", address="10.0.0.7")
    assert len(token) >= 43  # 256 random bits
    with Session(engine) as s:
        row = s.scalar(select(WebSession))
        assert row.token_hash == sessions.token_hash(token) and token not in (row.token_hash, row.user_agent, row.address)
        assert (row.user_agent, row.address, row.method) == ("Firefox", "10.0.0.7", "password")
    assert sessions.lookup(engine, token) == users.SignedIn("anna", "annotator")
    assert sessions.lookup(engine, token + "x") is None and sessions.lookup(engine, "") is None
    # sliding expiry: a use after renew_every_s pushes the expiry to idle_hours from now
    now = sessions._now()
    _set(engine, token, last_seen=now - timedelta(hours=2), expires_at=now + timedelta(minutes=5))
    before = sessions.list_sessions(engine)[0].expires_at
    assert sessions.lookup(engine, token) is not None
    after = sessions.list_sessions(engine)[0].expires_at
    assert after - before > timedelta(hours=11)
    # idle too long: ended
    _set(engine, token, expires_at=now - timedelta(seconds=1))
    assert sessions.lookup(engine, token) is None and sessions.list_sessions(engine) == []
    assert sessions.state(sessions.list_sessions(engine, active_only=False)[0]) == "expired"
    # the absolute cap holds however busy the session is
    busy = sessions.create(engine, "anna")
    _set(engine, busy, created_at=now - timedelta(days=8))
    assert sessions.lookup(engine, busy) is None


def test_revoking_and_disabling_end_sessions_at_once(engine):
    a1, a2, admin = sessions.create(engine, "anna"), sessions.create(engine, "anna"), sessions.create(engine, "admin")
    assert sessions.revoke(engine, token=a1, by="anna") == 1
    assert sessions.lookup(engine, a1) is None and sessions.lookup(engine, a2) is not None
    assert sessions.revoke(engine, token=a1, by="anna") == 0  # already ended
    assert users.set_disabled(engine, "anna", by="admin") == 1  # a2 ends with the user
    assert sessions.lookup(engine, a2) is None
    users.set_disabled(engine, "anna", False)
    assert sessions.lookup(engine, a2) is None  # enabling again does not bring old sessions back
    assert sessions.lookup(engine, admin) == users.SignedIn("admin", "admin")
    users.add(engine, "admin", "admin-pass-2", "annotator", replace=True)
    assert sessions.lookup(engine, admin) == users.SignedIn("admin", "annotator")  # the role is the store's, now
    states = {r.id: sessions.state(r) for r in sessions.list_sessions(engine, active_only=False)}
    assert sorted(states.values()) == ["active", "revoked by admin", "revoked by anna"]


def test_failed_sign_ins_wait_longer_then_lock_until_an_admin_unlocks(engine, monkeypatch):
    # the throttle's clock is the test's: a try "at once" is at once however slow the machine (a password check
    # under load took longer than the 0.2 s wait), and the waits cost no time
    clock = [sign_in._now()]
    monkeypatch.setattr(sign_in, "_now", lambda: clock[0])

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    fast = sign_in.ThrottlePolicy(free_failures=2, base_delay_s=0.2, max_delay_s=1.0, lock_after=5, address_lock_after=8)
    assert [sign_in.delay_for(n, sign_in.POLICY) for n in range(1, 7)] == [0, 1, 2, 4, 8, 16]

    def wrong(name="anna", address="10.0.0.9"):
        return sign_in.attempt(engine, name, "not-the-password", address, policy=fast)

    assert wrong().reason == sign_in.WRONG and wrong().reason == sign_in.WRONG
    third = wrong()  # the third try within the delay after two failures is refused without a password check
    assert third.reason == sign_in.THROTTLED and "wait 1 s" in third.message
    for expected_wait in (0.2, 0.4, 0.8):
        sleep(expected_wait + 0.05)
        assert wrong().reason == sign_in.WRONG
    locked = sign_in.attempt(engine, "anna", "annotator-pass-1", "10.0.0.10", policy=fast)  # right password, other address
    assert locked.reason == sign_in.LOCKED and locked.user is None and "vitpro users unlock anna" in locked.message
    assert [(x.kind, x.subject, x.failures) for x in sign_in.lockouts(engine)] == [("user", "anna", 5)]
    assert sign_in.unlock(engine, username="anna") == 1 and sign_in.lockouts(engine) == []
    ok = sign_in.attempt(engine, "anna", "annotator-pass-1", "10.0.0.10", policy=fast)
    assert ok.reason == sign_in.OK and ok.user == users.SignedIn("anna", "annotator")
    # every try is recorded, with its outcome
    with Session(engine) as s:
        reasons = [r for (r,) in s.execute(select(SignInAttempt.reason).where(SignInAttempt.username == "anna").order_by(SignInAttempt.id))]
    assert reasons == ["wrong_password"] * 2 + ["throttled"] + ["wrong_password"] * 3 + ["locked", "unlocked", "signed_in"]
    # names that do not exist are throttled alike (the form does not tell which names are real), and an
    # address that tries many names is locked on its own
    for k in range(8):
        sleep(sign_in.delay_for(k, fast) + 0.02)
        wrong(f"ghost{k}", "10.6.6.6")
    assert ("address", "10.6.6.6") in [(x.kind, x.subject) for x in sign_in.lockouts(engine)]
    assert sign_in.attempt(engine, "admin", "admin-pass-1", "10.6.6.6", policy=fast).reason == sign_in.LOCKED


def test_the_first_wait_is_a_setting_and_the_locks_stay(monkeypatch):
    from config.settings import load_settings

    monkeypatch.setenv("VITPRO_SIGN_IN_DELAY_SECONDS", "0.25")
    policy = sign_in.policy_for(load_settings().sign_in_delay_seconds)
    assert [sign_in.delay_for(n, policy) for n in range(1, 6)] == [0, 0.25, 0.5, 1.0, 2.0]
    assert (policy.lock_after, policy.address_lock_after, policy.max_delay_s) == (sign_in.POLICY.lock_after, sign_in.POLICY.address_lock_after, 60.0)
    monkeypatch.setenv("VITPRO_SIGN_IN_DELAY_SECONDS", "0")  # no throttle at all is not on offer
    assert load_settings().sign_in_delay_seconds == 0.1
    monkeypatch.setenv("VITPRO_UI_LIVE_SECONDS", "0.2")
    assert load_settings().ui_live_seconds == 1.0


def test_sessions_lockouts_and_revocation_from_the_command_line(engine, cli):
    token = sessions.create(engine, "anna", user_agent="Mozilla/5.0 Test", address="10.1.2.3")
    out = cli("users", "sessions", check=True).stdout
    assert re.search(r"\b1\s+anna\s+password\b.*active\s+10\.1\.2\.3\s+Mozilla/5\.0 Test", out)
    assert token not in out
    assert cli("users", "revoke", "1", check=True).stdout.strip() == "revoked 1 session(s)"
    assert sessions.lookup(engine, token) is None
    missing = cli("users", "revoke", "anna")
    assert missing.returncode != 0 and "no active session matches 'anna'" in missing.stderr
    for _ in range(5):
        with Session(engine) as s, s.begin():  # five failures in a row, as the throttle counts them
            s.add(SignInAttempt(username="anna", address="10.0.0.1", ok=False, reason="wrong_password", ts=sessions._now() - timedelta(minutes=1)))
    assert sign_in.attempt(engine, "anna", "wrong", "10.0.0.1").reason == sign_in.WRONG
    assert re.search(r"user\s+anna\s+6", cli("users", "lockouts", check=True).stdout)
    assert cli("users", "unlock", "anna", check=True).stdout.strip() == "unlocked anna"
    assert cli("users", "lockouts", check=True).stdout.strip() == "nothing is locked"
    assert re.search(r"anna\s+10\.0\.0\.1\s+locked|anna\s+10\.0\.0\.1\s+wrong_password", cli("users", "attempts", "anna", check=True).stdout)
    a2 = sessions.create(engine, "anna")
    assert "1 session(s) ended" in cli("users", "disable", "anna", check=True).stdout
    assert sessions.lookup(engine, a2) is None


# ---- the real server over real HTTP -------------------------------------------------------------------
@pytest.fixture
def server(engine, tmp_path):
    """`vitpro ui`'s server (ui/server.py: st.App with the sign-in routes and the gate) on a free port."""
    app = AppServer(tmp_path / "server.log")
    yield app.start()
    app.stop()


def _post_login(client: httpx.Client, name: str, password: str, next_path: str = "/") -> httpx.Response:
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return client.post("/login", data={"csrf": csrf, "username": name, "password": password, "next": next_path})


def test_the_server_signs_in_with_an_httponly_cookie_and_never_a_url(server, engine):
    with httpx.Client(base_url=server, timeout=30) as c:
        page = c.get("/inspect?sample=abc", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/inspect%3Fsample%3Dabc"
        assert c.get("/media/anything.png").status_code == 401  # images are data too
        assert c.get("/map/thumb?f=x&t=0&i=0").status_code == 401  # the Map's hover thumbnails as well
        signed = _post_login(c, "anna", "annotator-pass-1", "/inspect?sample=abc")
        assert signed.status_code == 303 and signed.headers["location"] == "/inspect?sample=abc"
        cookie = signed.headers["set-cookie"]
        assert re.match(r"vitpro_session=[\w-]{43};", cookie) and "HttpOnly" in cookie and "SameSite=strict" in cookie
        token = c.cookies["vitpro_session"]
        assert token not in signed.headers["location"] and "password" not in signed.headers["location"]
        assert sessions.lookup(engine, token) == users.SignedIn("anna", "annotator")
        app = c.get("/", headers={"accept": "text/html"})
        assert app.status_code == 200 and app.headers["cache-control"] == "no-store" and "<div id=\"root\">" in app.text
        assert c.get("/map/thumb?f=nothing-drawn&t=0&i=0").status_code == 404  # signed in: the route answers, for no figure here
        # the open redirect is closed: a next that leaves the site goes home
        assert _post_login(httpx.Client(base_url=server), "anna", "annotator-pass-1", "//evil.example/x").headers["location"] == "/"
        out = c.get("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
        assert "vitpro_session" not in c.cookies and sessions.lookup(engine, token) is None
        assert "You are signed out." in c.get("/login?signed_out=1").text
    # the old cookie, replayed from elsewhere after sign-out, opens nothing
    with httpx.Client(base_url=server, cookies={"vitpro_session": token}, timeout=30) as thief:
        assert thief.get("/", headers={"accept": "text/html"}).status_code == 303


def test_the_server_refuses_forged_forms_and_throttles_guessing(server, engine):
    with httpx.Client(base_url=server, timeout=30) as c:
        c.get("/login")
        forged = c.post("/login", data={"csrf": "guess", "username": "anna", "password": "annotator-pass-1"})
        assert forged.status_code == 400 and "the sign-in form expired" in forged.text and "vitpro_session" not in c.cookies
        assert [_post_login(c, "anna", "nope-nope").status_code for _ in range(3)] == [401, 401, 429]
        assert "wait 1 s before the next try" in _post_login(c, "anna", "nope-nope").text
        page = _post_login(c, "anna", "<script>alert(1)</script>")
        assert "<script>alert(1)</script>" not in page.text  # nothing typed is echoed back unescaped
