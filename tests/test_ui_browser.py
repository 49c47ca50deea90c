"""The web app end to end in a real browser: Debian's chromium driven by Playwright, against `streamlit run
ui/app.py` on a real store, with a real worker behind it for the export job."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, wait_job
from .ui_store import PASSWORDS, XSS, build

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(home, tmp_path):
    from vitpro.cli_app import streamlit_command

    port = _free_port()
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(streamlit_command(port, "127.0.0.1"), cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError((tmp_path / "streamlit.log").read_text())
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _settle(page) -> None:
    """Wait until Streamlit has finished the rerun a click started."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60000)
    page.wait_for_timeout(200)


def _sign_in(page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_label("User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
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
    from db import jobs as jobs_db
    from db import pilots, saved_filters

    lake, engine = build(tmp_path / "data")
    start_worker("cpu")
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
        assert token.get_attribute("title") == f"A(t) = {token.get_attribute('data-score')}"
        page.keyboard.press("ArrowRight")  # next sample, from the keyboard
        page.get_by_text(re.compile(r"^sample 2 of \d+")).wait_for()
        expect(page.locator("code").filter(has_text=re.compile(r"^\w{24}$")).first).not_to_have_text(sample_id)

        # Thresholds: move the VisAttnScore percentile with the keyboard, the kept count follows
        _open(page, "Thresholds")
        before = _metric(page, "kept")
        slider = page.locator("[data-testid=stSlider] input[type=range]").nth(1)  # CLIPScore first, VisAttnScore second
        slider.focus()
        for _ in range(25):
            slider.press("ArrowRight")
        _settle(page)
        pct = float(slider.evaluate("e => e.value"))
        after = _metric(page, "kept")
        assert pct == 50 and after < before
        config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
        vis = next(c for c in config.conditions if c.metric == "vis_attn")
        vis.percentile, vis.model_id = pct, shown_model  # the page starts on the first VisAttnScore model
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

        # Snapshots: create one from the saved filter and export it (a job on the real worker)
        _open(page, "Snapshots")
        page.get_by_role("button", name="Create snapshot").click()
        page.get_by_text(re.compile(r"snapshot 'ui-filter-v\d+': \d+ samples")).wait_for()
        page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_text("export job").first.wait_for()
        job = jobs_db.list_jobs(engine, limit=1, kind="export")[0]
        assert wait_job(job.id, timeout=180).status == "succeeded"
        page.reload()  # the session survives a refresh (signed token in the URL)
        page.get_by_role("button", name="Download manifest").first.wait_for()
        assert page.get_by_role("button", name="Download manifest").count() == 5

        # annotator: launch and export are refused by the server; the injected markup stays text
        page.get_by_role("button", name="Sign out").click()
        _settle(page)
        _sign_in(page, app_url, "anna")
        _open(page, "Jobs")
        page.get_by_role("tab", name="Aux stats").click()
        page.get_by_role("button", name="Launch aux stats").click()
        page.get_by_text("refused: anna is annotator: launch jobs needs an admin").wait_for()
        assert jobs_db.list_jobs(engine, limit=1)[0].kind == "export"  # nothing launched
        _open(page, "Snapshots")
        page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_text("refused: anna is annotator: export needs an admin").wait_for()

        _open(page, "Inspect")
        search = page.get_by_label("Text contains")
        search.fill("onerror")
        search.press("Enter")
        _settle(page)
        page.get_by_text(XSS).first.wait_for()
        assert page.locator('img[src="x"]').count() == 0
        page.wait_for_timeout(500)
        browser.close()
    assert dialogs == []
