"""The web app end to end in a real browser: Debian's chromium driven by Playwright, against `vitpro ui`'s
server (ui/server.py) on a real store, with a real worker behind it for the export job; and the sessions:
a copied URL, the HttpOnly cookie, revocation on an open page, sign-out and the back button, the lockout."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import wait_job
from .helpers import AppServer, until
from .helpers import excluded_ids as _excluded_ids
from .ui_store import PASSWORDS, XSS, build

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow


@pytest.fixture
def app_url(home, tmp_path):
    # the live views look for others' work every 3 s rather than 10, and a throttled sign-in waits 0.2 s, 0.4 s, ...
    # rather than 1 s, 2 s, ... (settings: VITPRO_UI_LIVE_SECONDS, VITPRO_SIGN_IN_DELAY_SECONDS)
    server = AppServer(tmp_path / "streamlit.log", env={"VITPRO_UI_LIVE_SECONDS": "3", "VITPRO_SIGN_IN_DELAY_SECONDS": "0.2"})
    yield server.start()
    server.stop()


def _settle(page) -> None:
    """Wait until Streamlit has finished the rerun a click started."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60000)
    page.wait_for_timeout(200)


def _submit_sign_in(page, url: str, name: str, password: str) -> None:
    """The server's own sign-in page (/login): a plain form, posted in the request body."""
    page.goto(url)
    page.wait_for_url(re.compile(r"/login"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def _sign_in(page, url: str, name: str) -> None:
    _submit_sign_in(page, url, name, PASSWORDS[name])
    page.get_by_role("link", name="Inspect").wait_for(timeout=60000)
    _settle(page)


def _open(page, name: str) -> None:
    page.get_by_role("link", name=name).click()
    page.get_by_role("heading", name=name).first.wait_for(timeout=60000)
    _settle(page)


def _metric(page, label: str) -> int:
    box = page.locator("[data-testid=stMetric]").filter(has=page.locator("[data-testid=stMetricLabel]", has_text=re.compile(f"^{label}$")))
    return int(box.locator("[data-testid=stMetricValue]").inner_text().replace(",", ""))


def test_curator_session_in_a_real_browser(home, tmp_path, start_worker, app_url):
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed for the browser test: apt-get install -y chromium (make test does it)")
    from playwright.sync_api import expect, sync_playwright

    from curation.filters import FilterConfig, stats_for
    from db.app import jobs as jobs_db
    from db.app import pilots, saved_filters, snapshots

    lake, engine = build(tmp_path / "data")
    start_worker("cpu", wait=False)  # it registers while the browser starts; the first job comes much later
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.set_default_timeout(60000)

        # admin: Inspect, read a token's score (the hover title carries it)
        _sign_in(page, app_url, "admin")
        _open(page, "Inspect")
        token = page.locator(".heat .tok[data-score]").first
        token.hover()
        sample_id = page.locator("code").filter(has_text=re.compile(r"^\w{24}$")).first.inner_text()
        from curation.filters import stored_models

        shown_model = stored_models(lake, "vis_attn", segment="answer", scored_only=True)[0]  # the page's first VisAttnScore model
        stored = lake.scalar("SELECT word_scores FROM token_scores WHERE subject_id = ? AND segment = 'answer' AND model_id = ?", [sample_id, shown_model])
        import json

        assert float(token.get_attribute("data-score")) == pytest.approx(json.loads(stored)[0], rel=1e-5)
        assert token.get_attribute("title").startswith(f"A(t) = {token.get_attribute('data-score')} (percentile ")
        _settle(page)
        page.evaluate("document.activeElement && document.activeElement.blur()")  # the shortcut acts when no field has focus
        page.keyboard.press("ArrowRight")  # next sample, from the keyboard
        page.get_by_text(re.compile(r"^sample 2 of \d+")).wait_for()
        expect(page.locator("code").filter(has_text=re.compile(r"^\w{24}$")).first).not_to_have_text(sample_id)

        # Thresholds: move the VisAttnScore percentile with the keyboard, the kept count follows
        _open(page, "Thresholds")
        before = _metric(page, "kept")
        slider = page.locator("[data-testid=stSlider] input[type=range]").nth(1)  # CLIPScore first, VisAttnScore second
        slider.focus()
        for _ in range(25):  # steps of 0.1: from the 25th percentile to the 27.5th (each key is a rerun)
            slider.press("ArrowRight")
        page.get_by_text(re.compile(r"vis_attn ≥ p27\.5 ")).wait_for(timeout=120000)  # the last key's rerun is shown
        _settle(page)
        pct = float(slider.evaluate("e => e.value"))
        after = _metric(page, "kept")
        assert pct == pytest.approx(27.5) and after <= before
        # saved from the page, the filter keeps exactly what the page showed, as the filter engine counts it
        page.get_by_role("textbox", name="Filter name").fill("ui-filter")
        page.get_by_role("button", name="Save filter").click()
        page.get_by_text("a filter named 'ui-filter' exists already: save again to replace it").wait_for()
        page.get_by_role("button", name="Save filter").click()  # a name typed over another filter: said once, then replaced
        page.get_by_text(re.compile(r"replaced filter 'ui-filter': [\d,]+ samples kept")).wait_for()
        config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
        vis = next(c for c in config.conditions if c.metric == "vis_attn")
        assert vis.percentile == pytest.approx(27.5)
        assert after == stats_for(lake, config).report(config).kept

        # Pilot: three labels with the buttons
        _open(page, "Pilot")
        page.get_by_role("button", name=re.compile("^Grounded")).click()
        page.get_by_text("you have labelled 1 of 20").wait_for()
        page.get_by_role("button", name=re.compile("^Grounded")).click()
        page.get_by_text("you have labelled 2 of 20").wait_for()
        page.keyboard.press("n")  # the shortcut of "Not grounded"
        page.get_by_text("you have labelled 3 of 20").wait_for()
        pilot = pilots.get(engine, "ui-pilot")
        assert sorted(x.label for x in pilots.labels(engine, pilot.id, annotator="admin")) == ["grounded", "grounded", "not_grounded"]
        page.get_by_role("button", name="Undo my last label").click()  # the "not grounded" is taken back
        page.get_by_text("you have labelled 2 of 20").wait_for()
        assert sorted(x.label for x in pilots.labels(engine, pilot.id, annotator="admin")) == ["grounded", "grounded"]

        # Snapshots: create one from the saved filter and export it (a job on the real worker)
        _open(page, "Snapshots")
        page.get_by_role("button", name="Create snapshot").click()
        page.get_by_text(re.compile(r"snapshot 'ui-filter-v\d+': \d+ samples")).wait_for()
        page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_text("export job").first.wait_for()
        job = jobs_db.list_jobs(engine, limit=1, kind="export")[0]
        assert wait_job(job.id, timeout=180).status == "succeeded"
        page.reload()  # the session survives a refresh (the HttpOnly cookie; nothing in the URL)
        assert "vitpro_session" not in page.url and "token" not in page.url
        # the exports list is a live fragment: it may draw its rows one rerun after the page
        expect(page.get_by_role("button", name="Download manifest")).to_have_count(5)
        expect(page.get_by_role("button", name="Download zip")).to_have_count(5)
        first = snapshots.list_all(engine)[-1]

        # Gallery -> a sample's permalink -> exclude it -> the next snapshot has one sample fewer
        _open(page, "Gallery")
        page.locator('a[href*="sample="]').first.wait_for()
        kept_ids = set(stats_for(lake, FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)).kept_ids(
            FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)))
        shown = [re.search(r"sample=(\w+)", a.get_attribute("href")).group(1) for a in page.locator('a[href*="sample="]').all()]
        chosen = next(sid for sid in shown if sid in kept_ids)  # a sample the filter keeps
        assert page.locator(f'a[href*="sample={chosen}"]').count() >= 1
        page.goto(f"{app_url}/inspect?sample={chosen}")  # the permalink, as a colleague would open it
        page.get_by_role("heading", name="Inspect").first.wait_for()
        _settle(page)
        expect(page.locator("code").filter(has_text=re.compile(r"^\w{24}$")).first).to_have_text(chosen)
        page.goto(f"{app_url}/gallery")
        page.get_by_role("heading", name="Gallery").first.wait_for()
        _settle(page)
        tile = page.locator(f'a[href*="sample={chosen}"]').last.locator("xpath=ancestor::div[.//label[normalize-space()='select']][1]")
        tile.get_by_text("select", exact=True).click()
        _settle(page)
        page.get_by_role("textbox", name="Reason (kept with the exclusion)").fill("wrong product photo")
        page.get_by_role("button", name="Exclude", exact=True).click()
        page.get_by_text("excluded 1 sample(s)").wait_for()
        assert _excluded_ids(lake) == {chosen}
        _open(page, "Snapshots")
        page.get_by_role("textbox", name="Snapshot name").fill("after-exclusion")
        page.get_by_role("button", name="Create snapshot").click()
        page.get_by_text(re.compile(r"snapshot 'after-exclusion': \d+ samples")).wait_for()
        after = snapshots.get(engine, "after-exclusion")
        assert after.counts["kept"] == first.counts["kept"] - 1 and after.counts["excluded"] == 1

        # annotator: no admin form at all; the injected markup stays text
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r"/login\?signed_out=1"))
        _sign_in(page, app_url, "anna")
        _open(page, "Jobs")
        page.get_by_role("heading", name="Jobs").last.wait_for()
        assert page.get_by_role("button", name=re.compile("^Launch")).count() == 0
        assert page.get_by_role("tab", name="Aux stats").count() == 0
        _open(page, "Snapshots")
        assert page.get_by_role("button", name="Export", exact=True).count() == 0
        assert page.get_by_role("button", name="Create snapshot").count() == 0

        _open(page, "Inspect")
        search = page.get_by_role("textbox", name="Text contains")
        search.fill("onerror")
        search.press("Enter")
        _settle(page)
        page.get_by_text(XSS).first.wait_for()
        assert page.locator('img[src="x"]').count() == 0
        page.wait_for_timeout(500)
        browser.close()
    assert dialogs == []


def test_sessions_cannot_be_stolen_and_guessing_locks_out(home, tmp_path, app_url, cli):
    """A copied URL signs nobody in; the cookie is out of scripts' reach; sign-out holds against the back
    button; five wrong passwords lock the name until an admin unlocks it."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed for the browser test: apt-get install -y chromium (make test does it)")
    from playwright.sync_api import sync_playwright

    from db.app import sessions

    lake, engine = build(tmp_path / "data")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60000)
        _sign_in(page, app_url, "admin")
        _open(page, "Training")
        copied = page.url
        assert re.search(r"/training$", copied) and "?" not in copied
        cookie = next(c for c in context.cookies() if c["name"] == "vitpro_session")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["value"] not in copied
        assert "vitpro_session" not in page.evaluate("document.cookie")  # scripts cannot read it
        assert [s.username for s in sessions.list_sessions(engine)] == ["admin"]
        assert "HeadlessChrome" in sessions.list_sessions(engine)[0].user_agent

        # the copied URL in a fresh browser: the sign-in page, not the app
        other = browser.new_context()
        thief = other.new_page()
        thief.goto(copied)
        thief.wait_for_url(re.compile(r"/login\?next="))
        thief.get_by_role("button", name="Sign in").wait_for()
        assert thief.get_by_role("link", name="Inspect").count() == 0
        other.close()

        # revoked by an admin while the page is open: the next click shows the sign-in page
        assert cli("users", "revoke", "admin", check=True).stdout.strip() == "revoked 1 session(s)"
        page.get_by_role("link", name="Overview").click()
        page.get_by_text("You are not signed in, or your session ended.").wait_for()
        assert page.get_by_role("link", name="Inspect").count() == 0
        _sign_in(page, app_url, "admin")

        # sign-out ends the session on the server; the back button then shows the sign-in page
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r"/login\?signed_out=1"))
        assert sessions.list_sessions(engine) == []
        page.go_back()
        page.wait_for_url(re.compile(r"/login"))
        page.get_by_role("button", name="Sign in").wait_for()
        assert page.get_by_role("link", name="Inspect").count() == 0

        # guessing: wrong passwords wait longer and longer, the fifth locks the name
        outcomes = []
        for k in range(5):
            _submit_sign_in(page, app_url, "anna", f"wrong-guess-{k}")
            text = page.get_by_role("alert").inner_text()
            while "wait" in text:  # throttled: the try was not even checked; wait as told and try again
                page.wait_for_timeout(1000 * int(re.search(r"wait (\d+) s", text).group(1)) + 100)
                _submit_sign_in(page, app_url, "anna", f"wrong-guess-{k}")
                text = page.get_by_role("alert").inner_text()
            outcomes.append(text)
        assert outcomes == ["wrong user name or password (or the user is disabled)"] * 5
        _submit_sign_in(page, app_url, "anna", PASSWORDS["anna"])  # the right password no longer helps
        assert "this account is locked" in page.get_by_role("alert").inner_text()
        assert page.get_by_role("link", name="Inspect").count() == 0
        assert cli("users", "unlock", "anna", check=True).stdout.strip() == "unlocked anna"  # an admin lifts it
        _submit_sign_in(page, app_url, "anna", PASSWORDS["anna"])
        alert = page.get_by_role("alert")
        if alert.count():  # this address failed five times too: its own delay still runs (the lock was the name's)
            wait = re.search(r"wait (\d+) s", alert.inner_text())
            assert wait, alert.inner_text()
            page.wait_for_timeout(1000 * int(wait.group(1)) + 200)
            _submit_sign_in(page, app_url, "anna", PASSWORDS["anna"])
        page.get_by_role("link", name="Inspect").wait_for(timeout=60000)
        assert [s.username for s in sessions.list_sessions(engine)] == ["anna"]
        browser.close()


def _nav(page, name: str) -> None:
    """Another page through the sidebar (where a page's own links share the name, as the Gallery's tiles do)."""
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name).click()
    page.get_by_role("heading", name=name).first.wait_for(timeout=60000)
    _settle(page)


def _slider_value(page, n: int) -> float:
    return float(page.locator("[data-testid=stSlider] input[type=range]").nth(n).evaluate("e => e.value"))


def test_views_survive_navigation_and_reload_and_two_tabs_never_overwrite_unseen(home, tmp_path, app_url):
    """Issue 26's defects in a real browser: a cut and a Gallery page survive a trip to Inspect and back
    through the sidebar, and a reload; a reload keeps the pilot being labelled and its undo; two tabs of one
    annotator never overwrite each other's label unseen; the admin's Adjudicate tab shows another
    browser's labels without a reload; a sample open in one annotator's page is not served first to another."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed for the browser test: apt-get install -y chromium (make test does it)")
    from playwright.sync_api import expect, sync_playwright

    from curation.pilot_words import answer_groups
    from db.app import pilots
    from db.lake import exclusions
    from db.reads.samples_view import samples_with_images

    from .ui_store import CLIP_MODEL, VIS_MODEL

    lake, engine = build(tmp_path / "data")
    pilots.draw_and_create(lake, engine, name="newer-pilot", size=6, seed=1, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, created_by="admin")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"])
        admin = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = admin.new_page()
        page.set_default_timeout(60000)
        _sign_in(page, app_url, "admin")

        # Thresholds: the VisAttnScore cut from p25 to p26, then Inspect from the margin strip, then back
        _open(page, "Thresholds")
        slider = page.locator("[data-testid=stSlider] input[type=range]").nth(1)
        slider.focus()
        for _ in range(10):
            slider.press("ArrowRight")
        page.get_by_text(re.compile(r"vis_attn ≥ p26 ")).wait_for(timeout=120000)
        _settle(page)
        kept = _metric(page, "kept")
        assert _slider_value(page, 1) == pytest.approx(26.0) and "thr_pct_" in page.url
        page.get_by_role("link", name="open in Inspect").first.click()
        page.get_by_role("heading", name="Inspect").first.wait_for()
        _settle(page)
        _nav(page, "Thresholds")
        assert _slider_value(page, 1) == pytest.approx(26.0) and _metric(page, "kept") == kept
        page.reload()
        page.get_by_role("heading", name="Thresholds").first.wait_for()
        _settle(page)
        assert _slider_value(page, 1) == pytest.approx(26.0) and _metric(page, "kept") == kept

        # Gallery: page 2, then Inspect and back: still page 2
        _open(page, "Gallery")
        number = page.get_by_role("spinbutton", name="Page")
        number.fill("2")
        number.press("Enter")
        page.get_by_text(re.compile(r"^page 2 of")).wait_for()
        _settle(page)
        _nav(page, "Inspect")
        _nav(page, "Gallery")
        page.get_by_text(re.compile(r"^page 2 of")).wait_for()
        assert "gal_page=2" in page.url

        # the keyboard on another tab's Gallery: J marks the second tile, X excludes it with the reason typed
        # once, O opens it on Inspect, where X puts it back
        gal = admin.new_page()
        gal.set_default_timeout(60000)
        gal.goto(f"{app_url}/gallery")
        gal.get_by_text(re.compile(r"^page 1 of")).wait_for()
        _settle(gal)
        tiles = list(dict.fromkeys(re.search(r"sample=(\w+)", a.get_attribute("href")).group(1) for a in gal.locator("a[href*='sample=']").all()))
        gal.get_by_role("textbox", name="Reason for X").fill("keyboard test")
        gal.get_by_role("textbox", name="Reason for X").press("Enter")
        _settle(gal)
        gal.get_by_role("heading", name="Gallery").first.click()  # the focus out of the text box: keys go to the page
        gal.keyboard.press("j")
        gal.get_by_text("▸ marked").wait_for()
        _settle(gal)
        gal.keyboard.press("x")
        until(lambda: exclusions.current(lake, tiles[1]), what="the marked tile excluded with X")
        assert exclusions.current(lake, tiles[1])["reason"] == "keyboard test"
        _settle(gal)
        gal.keyboard.press("o")
        gal.get_by_text(re.compile("Excluded from the data set by admin")).wait_for()
        assert f"sample={tiles[1]}" in gal.url
        _settle(gal)
        gal.get_by_role("heading", name="Inspect").first.click()
        gal.keyboard.press("x")
        until(lambda: exclusions.current(lake, tiles[1]) is None, what="the sample put back with X on Inspect")
        # Gallery is live: a commit from elsewhere (here the store itself) shows on its tiles without a reload
        gal.goto(f"{app_url}/gallery")
        gal.get_by_text(re.compile(r"^page 1 of")).wait_for()
        exclusions.exclude(lake, [tiles[0]], reason="from elsewhere", by="admin")

        # the Pilot page: the older pilot chosen, one label, then a reload: same pilot, undo still there
        _open(page, "Pilot")
        page.locator("[data-testid=stSelectbox]").filter(has_text="Pilot").first.click()
        page.get_by_role("option", name="ui-pilot").click()
        _settle(page)
        page.get_by_text("you have labelled 0 of 20").wait_for()
        page.get_by_role("button", name=re.compile("^Grounded")).click()
        page.get_by_text("you have labelled 1 of 20").wait_for()
        page.reload()
        page.get_by_text("you have labelled 1 of 20").wait_for()  # ui-pilot still, not the newest pilot
        expect(page.get_by_role("button", name="Undo my last label")).to_be_enabled()

        # a second tab of the same admin on the same sample: tab 1 labels it first, tab 2 is told
        second = admin.new_page()
        second.set_default_timeout(60000)
        second.goto(page.url.split("&tab=")[0].split("?")[0] + "?pilot_name=ui-pilot")
        second.get_by_text("you have labelled 1 of 20").wait_for()
        _settle(second)
        second.get_by_role("button", name="◀").click()  # back to sample 1, which tab 1 labelled grounded
        second.get_by_text(re.compile(r"sample 1 of 20 · you said grounded")).wait_for()
        page.get_by_role("button", name="◀").click()
        page.get_by_text(re.compile(r"sample 1 of 20")).first.wait_for()
        _settle(page)
        page.get_by_role("button", name=re.compile("^Skip")).click()  # tab 1 changes it to skip
        pilot = pilots.get(engine, "ui-pilot")
        # the count on the page reads 1 before and after, so it cannot tell that the skip is stored: the store can
        until(lambda: {x.label for x in pilots.labels(engine, pilot.id, annotator="admin")} == {"skip"},
              what="tab 1's skip stored")
        second.get_by_role("button", name=re.compile("^Not grounded")).click()  # tab 2 still shows "grounded"
        second.get_by_text(re.compile("changed in another tab or session meanwhile")).wait_for()
        assert {x.label for x in pilots.labels(engine, pilot.id, annotator="admin")} == {"skip"}
        page.get_by_role("button", name="Undo my last label").click()  # tab 1 undoes its own skip: back to grounded
        page.get_by_text("undone: sample 1 is back to 'grounded'").wait_for()

        # Adjudicate: open, nothing to settle; another browser (anna) disagrees; shown without a reload
        page.get_by_role("tab", name="Adjudicate").click()
        page.get_by_text(re.compile(r"^0 sample\(s\) with disagreeing annotators")).wait_for()
        other = browser.new_context(viewport={"width": 1400, "height": 1000})
        anna = other.new_page()
        anna.set_default_timeout(60000)
        _sign_in(anna, app_url, "anna")
        anna.goto(f"{app_url}/pilot?pilot_name=ui-pilot")
        anna.get_by_text("you have labelled 0 of 20").wait_for()
        _settle(anna)
        anna.get_by_text(re.compile(r"sample 2 of 20 · not labelled")).wait_for()  # sample 1 is open in the admin's tab: not served first
        anna.get_by_role("button", name="◀").click()
        anna.get_by_text("admin has this sample open right now").wait_for()
        _settle(anna)
        anna.get_by_text(re.compile(r"sample 1 of 20 · not labelled")).wait_for()
        # a word the image does not support, then N; the chip is found again by its word for each click: a click
        # that lands while a rerun redraws the chips (a live refresh) is lost, or lands on a chip of the words
        # drawn before, and N would then save no word or another one
        # the chips are read off the store, not off the page: until the rerun that ◀ started has drawn them, the
        # page can still show the chips of the sample before (sample 2), and a word read there is gone a moment later
        first = pilots.queue(engine, pilot.id, "anna")[0]
        word = answer_groups(next(r["answer"] for r in samples_with_images(lake, [first])))[0]
        expect(anna.locator("[data-testid=stButtonGroup] button").first).to_have_text(word)
        chip = anna.locator("[data-testid=stButtonGroup] button").filter(has_text=re.compile(f"^{re.escape(word)}$")).first
        active = anna.locator("[data-testid=stButtonGroup] button[data-selected]")
        for _ in range(3):
            chip.click()
            try:
                expect(active).to_have_text(word, timeout=5000)
                break
            except AssertionError:
                _settle(anna)
                if active.count():  # a click on the redrawn chips chose another word: unchoose it
                    active.first.click()
                    _settle(anna)
        _settle(anna)
        expect(active).to_have_text(word)
        anna.keyboard.press("n")  # sample 1: the admin said grounded
        anna.get_by_text("you have labelled 1 of 20").wait_for()
        theirs = until(lambda: pilots.labels(engine, pilot.id, annotator="anna"), what="anna's label stored")
        assert [(x.label, tuple(x.ungrounded_words or ())) for x in theirs] == [("not_grounded", (word,))]  # the mark made before N is kept
        page.get_by_text(re.compile(r"^1 sample\(s\) with disagreeing annotators")).wait_for(timeout=30000)  # the live refresh
        tile = gal.locator("[data-testid=stMarkdownContainer]", has=gal.locator(f"a[href*='sample={tiles[0]}']"))
        tile.filter(has_text="excluded").wait_for(timeout=30000)  # redrawn by the live look at the store, no reload
        # the server's cache warmer (ui/warm.py) rebuilt the pages' reads after those commits, and none failed
        served = (tmp_path / "streamlit.log").read_text()
        assert re.search(r"cache warming for store version \d+: [1-9]\d* read\(s\)", served), served[-3000:]
        assert "cache warming: " not in served  # no read failed, the store's version was always readable
        browser.close()


def test_a_box_dragged_on_the_map_selects_every_sample_inside_and_opens_them_in_the_gallery(home, tmp_path, app_url):
    """The Map page as a browser uses it: the WebGL scatter drawn, a point's photo shown on hover, a box dragged over it
    with the mouse (plotly's own select event, sent to the server), the count of every sample inside, and the Gallery
    limited to them."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed for the browser test: apt-get install -y chromium (make test does it)")
    from playwright.sync_api import sync_playwright

    from .test_ui_map import samples_at, write_map

    lake, engine = build(tmp_path / "data")
    places = write_map(lake)
    on_map = samples_at(lake, places)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new", "--use-gl=swiftshader"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60000)
        _sign_in(page, app_url, "admin")
        _open(page, "Map")
        plot = page.locator(".js-plotly-plot").first
        plot.wait_for()
        page.get_by_text("Nothing selected").wait_for()
        # the mouse over a drawn point: its photo shows by the cursor, from /map/thumb (behind the sign-in gate)
        x, y = page.evaluate("""() => {
            const gd = document.querySelector('.st-key-map_chart .js-plotly-plot');
            const t = gd._fullData.find(d => d.type === 'scattergl'), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const r = gd.getBoundingClientRect();
            return [r.left + xa._offset + xa.l2p(t.x[0]), r.top + ya._offset + ya.l2p(t.y[0])];
        }""")
        with page.expect_response(lambda r: "/map/thumb?" in r.url) as thumb:
            page.mouse.move(x - 30, y - 30)
            page.mouse.move(x, y, steps=6)
        assert thumb.value.status == 200 and thumb.value.headers["content-type"] == "image/jpeg"
        tip = page.locator("#vitpro-map-hover img.vitpro-hover-thumb")
        tip.wait_for(state="visible")
        assert page.evaluate("() => document.querySelector('#vitpro-map-hover img').naturalWidth") > 0
        page.mouse.move(3, 3)  # off the chart: the photo goes
        tip.wait_for(state="hidden")
        # drag over the whole plotting area (its drag layer): every point is inside
        area = plot.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(area["x"] + 3, area["y"] + 3)
        page.mouse.down()
        page.mouse.move(area["x"] + area["width"] / 2, area["y"] + area["height"] / 2, steps=8)
        page.mouse.move(area["x"] + area["width"] - 3, area["y"] + area["height"] - 3, steps=8)
        page.mouse.up()
        heading = page.get_by_role("heading", name=re.compile(r"^Selection: [\d,]+ samples?"))
        heading.wait_for()
        _settle(page)
        assert int(re.search(r"Selection: ([\d,]+)", heading.inner_text()).group(1).replace(",", "")) == len(on_map)
        page.get_by_role("button", name=re.compile(r"^Open the [\d,]+ in the Gallery")).click()
        page.get_by_text(re.compile(rf"Showing only the {len(on_map):,} samples selected on the Map")).wait_for()
        _settle(page)
        browser.close()
