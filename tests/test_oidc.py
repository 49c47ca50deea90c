"""Streamlit's native OIDC sign-in (st.login) end to end: a real OIDC provider (oidc-provider-mock, a Flask
server run here on a free port), `vitpro ui`'s server (ui/server.py) with `[auth]` read from the file that
VITPRO_AUTH_SECRETS_FILE names, and Debian's chromium driven by Playwright through the provider's form.
The store decides who gets in (the e-mail must be a user) and with which role; the session row it keeps
is what `vitpro users revoke` and /logout end."""
from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.app import sessions, users
from db.app.models import WebSession

from .helpers import AppServer, free_port
from .test_sessions import engine  # noqa: F401  (engine: a store with users anna and admin)

CHROMIUM = Path("/usr/bin/chromium")

CURATOR = "curator@example.org"  # a store user whose name is the e-mail the provider vouches for
STRANGER = "stranger@example.org"  # the provider knows them, the store does not
SIGN_IN = "Sign in with your organisation's account"


@pytest.fixture
def provider():
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(port=0) as srv:
        yield f"http://localhost:{srv.server_port}"


@pytest.fixture
def oidc_server(engine, provider, tmp_path):  # noqa: F811
    """ui/server.py on a free port with OIDC on: `[auth]` from a TOML file outside the checkout."""
    users.add(engine, CURATOR, secrets.token_urlsafe(16), "admin")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = tmp_path / "auth.toml"
    auth.write_text(f'''[auth]
redirect_uri = "{url}/oauth2callback"
cookie_secret = "{secrets.token_urlsafe(32)}"
client_id = "vitpro-test"
client_secret = "{secrets.token_urlsafe(24)}"
server_metadata_url = "{provider}/.well-known/openid-configuration"
''')
    server = AppServer(tmp_path / "server.log", port=port, env={"VITPRO_AUTH_SECRETS_FILE": str(auth)})
    server.start()
    yield url
    died = server.stop()
    assert died is None, f"the server stopped early ({died}):\n" + (tmp_path / "server.log").read_text()[-4000:]


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed for the browser test: apt-get install -y chromium (make test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"])
        yield b
        b.close()


def _settle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=30000)
    page.wait_for_timeout(200)


def _provider_sign_in(page, url: str, email: str) -> None:
    """Open the app (the gate sends a browser without a session to /login), follow the OIDC link, type the
    subject into the provider's form and authorise."""
    page.goto(url)
    page.wait_for_url(f"{url}/login?next=/", timeout=30000)
    page.get_by_role("link", name=SIGN_IN).click()
    page.get_by_placeholder("sub").fill(email)  # the mock provider's form: its e-mail claim is the subject
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{url}/", timeout=30000)
    _settle(page)


def _oidc_rows(engine, username: str) -> list[WebSession]:  # noqa: F811
    with Session(engine) as s:
        rows = list(s.scalars(select(WebSession).where(WebSession.username == username).order_by(WebSession.id)))
        s.expunge_all()
        return rows


def _identity(context) -> dict:
    return {c["name"]: c for c in context.cookies() if c["name"].startswith("_streamlit_user")}


@pytest.mark.slow
def test_oidc_sign_in_round_trip_refusal_revoke_and_sign_out(oidc_server, engine, browser, cli):  # noqa: F811
    url = oidc_server
    # an e-mail the provider vouches for but the store does not know is refused, with no session row
    ctx = browser.new_context()
    page = ctx.new_page()
    _provider_sign_in(page, url, STRANGER)
    page.get_by_text(f"{STRANGER} is not a user of this store").wait_for(timeout=30000)
    assert page.get_by_role("link", name="Inspect").count() == 0
    assert _oidc_rows(engine, STRANGER) == []
    jar = {c["name"]: c["value"] for c in ctx.cookies()}
    with httpx.Client(base_url=url, timeout=30) as c:  # the provider's cookie opens no data path
        assert c.get("/inspect", headers={"accept": "text/html"}, cookies=jar).status_code == 303
    # leaving the provider's account clears Streamlit's cookies, ends the provider's session (OIDC
    # RP-initiated logout: the provider asks) and lands on the sign-in page
    page.get_by_role("button", name="Sign out of the organisation's account").click()
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(f"{url}/login?next=/", timeout=30000)
    assert "_streamlit_user" not in _identity(ctx)
    ctx.close()

    ctx = browser.new_context()
    page = ctx.new_page()
    # a browser without any session cookie gets no page and no WebSocket: /login offers the provider
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/", headers={"accept": "text/html"}).headers["location"] == "/login?next=/"
        assert c.get("/login/oidc").headers["location"].startswith("/auth/login?provider=")
    _provider_sign_in(page, url, CURATOR)
    page.get_by_text(f"{CURATOR} · admin").wait_for(timeout=30000)  # the role is the store's
    assert page.get_by_role("link", name="Inspect").count() == 1
    rows = _oidc_rows(engine, CURATOR)
    assert [(r.method, r.revoked_at) for r in rows] == [("oidc", None)]
    assert "Chrome" in rows[0].user_agent
    cookies = _identity(ctx)
    assert cookies["_streamlit_user"]["httpOnly"] and "vitpro_session" not in {c["name"] for c in ctx.cookies()}
    from ui.auth import _oidc_token

    token = _oidc_token({k: v["value"] for k, v in cookies.items()})
    assert sessions.lookup(engine, token) == users.SignedIn(CURATOR, "admin")

    # the gate opens data paths to the live OIDC session only, not to any cookie of that name
    jar = {c["name"]: c["value"] for c in ctx.cookies()}
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/inspect", headers={"accept": "text/html"}, cookies=jar).status_code == 200
        assert c.get("/inspect", headers={"accept": "text/html"}, cookies={"_streamlit_user": "forged"}).status_code == 303

    # an admin revokes: the next load shows the app signed out, and the provider's cookie opens nothing
    assert cli("users", "revoke", CURATOR, check=True).stdout.strip() == "revoked 1 session(s)"
    page.reload()
    page.wait_for_url(f"{url}/login?next=/", timeout=30000)
    assert page.get_by_role("link", name="Inspect").count() == 0 and page.get_by_text(f"{CURATOR} · admin").count() == 0
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/inspect", headers={"accept": "text/html"}, cookies=jar).status_code == 303

    # signing in again is a new session; /logout ends it and clears Streamlit's identity cookies
    page.get_by_role("link", name=SIGN_IN).click()
    page.get_by_role("button", name=CURATOR).click()  # the provider offers the recent subject
    page.wait_for_url(f"{url}/", timeout=30000)
    page.get_by_text(f"{CURATOR} · admin").wait_for(timeout=30000)
    live = [r for r in _oidc_rows(engine, CURATOR) if r.revoked_at is None]
    assert len(live) == 1 and len(_oidc_rows(engine, CURATOR)) == 2
    # the app's Sign out button: a form posted to /logout in this tab
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{url}/login?signed_out=1", timeout=30000)
    assert len(ctx.pages) == 1
    assert _identity(ctx) == {}
    assert [r.revoked_by for r in _oidc_rows(engine, CURATOR)] == ["tester", CURATOR]
    page.goto(url)
    page.wait_for_url(f"{url}/login?next=/", timeout=30000)
    ctx.close()


def test_oidc_session_key_joins_streamlits_cookie_chunks_in_order():
    """Streamlit splits a large identity cookie into `_streamlit_user` ("chunks-N", signed) and
    `_streamlit_user_1`..`_N`; `_streamlit_user_tokens` is another cookie and no part of the key."""
    from ui.auth import _oidc_token
    from ui.server import is_oidc_cookie

    parts = {f"_streamlit_user_{i}": f"p{i}." for i in range(1, 12)}
    cookies = {"_streamlit_user": "chunks-11|sig", **parts, "_streamlit_user_tokens": "T", "_streamlit_user_tokens_1": "T1",
               "vitpro_session": "x", "_streamlit_xsrf": "y"}
    assert _oidc_token(cookies) == "chunks-11|sig" + "".join(f"p{i}." for i in range(1, 12))  # 10 after 9, not after 1
    assert _oidc_token({"_streamlit_user": "whole"}) == "whole" and _oidc_token({"_streamlit_user_1": "orphan"}) is None
    assert sorted(n for n in cookies if is_oidc_cookie(n)) == sorted(["_streamlit_user", *parts, "_streamlit_user_tokens",
                                                                      "_streamlit_user_tokens_1"])


def test_auth_secrets_come_from_the_named_toml_file_only(tmp_path):
    from ui.server import auth_secrets

    assert auth_secrets("") is None
    good = tmp_path / "auth.toml"
    good.write_text('[auth]\nclient_id = "c"\n[other]\nkey = "not handed over"\n')
    assert auth_secrets(str(good)) == {"auth": {"client_id": "c"}}
    bare = tmp_path / "bare.toml"
    bare.write_text('x = 1\n')
    with pytest.raises(SystemExit, match="no \\[auth\\] section"):
        auth_secrets(str(bare))
    with pytest.raises(SystemExit, match="cannot read it as TOML"):
        auth_secrets(str(tmp_path / "missing.toml"))
