"""Cache warming (ui/warm.py): after a commit, the reads the pages asked for are built again in the background,
so the first page opened afterwards builds nothing. The pass logic on its own, then on a real store with the
Gallery run as Streamlit runs it (AppTest), then the server process's thread itself."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from db.lake import exclusions
from ui import stats_cache, warm

from .helpers import until
from .test_ui_gallery import _tiles
from .test_ui_pages import page, ui_store  # noqa: F401 - ui_store is a fixture
from .ui_store import VIS_MODEL


@pytest.fixture
def kinds():
    """Warmers of this test only (the app's own stay registered), and nothing noted before or after."""
    saved = dict(warm._warmers)
    warm.forget()
    yield
    warm._warmers.clear()
    warm._warmers.update(saved)
    warm.forget()


def test_a_pass_runs_only_when_the_version_moves_and_a_failing_read_stops_no_other(kinds):
    calls: list[tuple] = []
    warm.register("ok", lambda *args: calls.append(args))

    def broken(*args):
        raise KeyError("the model is gone")

    warm.register("broken", broken)
    warm.note("ok", "a", 1)
    warm.note("broken", "x")
    warm.note("ok", "b", 2)
    warm.note("unknown kind", 3)  # nothing registered to read it: skipped
    version = [5]
    w = warm.Warmer(lambda: version[0], interval=60)
    assert w.step() is None and calls == []  # the first look only remembers the version
    assert w.step() is None and calls == []  # no commit since
    version[0] = 6
    done = w.step()
    assert (done.version, done.warmed, calls) == (6, 2, [("a", 1), ("b", 2)])
    assert len(done.failed) == 1 and "broken" in done.failed[0] and "the model is gone" in done.failed[0]
    assert w.step() is None and w.passes == 1


def test_the_warmer_notes_nothing_of_its_own_and_keeps_the_most_recent(kinds, monkeypatch):
    seen: list[tuple] = []
    warm.register("k", lambda n: (seen.append(n), warm.note("k", n + 1000)))  # a read that asks for another one
    for n in range(warm.KEPT + 5):
        warm.note("k", n)
    warm.note("k", 0)  # asked for again: now the most recent
    assert len(warm.noted()) == warm.KEPT and warm.noted()[-1] == ("k", 0) and ("k", 1) not in warm.noted()
    warm.warm_now(1)
    assert len(seen) == warm.KEPT and not any(key[1] >= 1000 for key in warm.noted())  # its own reads were not noted
    monkeypatch.setattr(warm, "FRESH_FOR", -1.0)  # asked for too long ago: left to its next asker
    assert warm.noted() == [] and warm.warm_now(2).warmed == 0


def test_after_a_commit_the_warmer_builds_what_the_gallery_reads_and_the_page_then_builds_nothing(ui_store, monkeypatch):
    home, lake, engine = ui_store
    warm.forget()
    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12)  # the saved filter is chosen: its stats table is read
    assert not at.exception
    asked = {key[0] for key in warm.noted()}
    assert {"browse_index", "stats_table", "read"} <= asked, asked

    built: list[int] = []
    real = stats_cache.StatsTable

    def counted(*args, **kwargs):
        if "saved" not in kwargs:  # built from the store, not loaded from its file
            built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stats_cache, "StatsTable", counted)
    w = warm.Warmer(lake.current_version, interval=60)
    w.step()
    first = sorted(_tiles(at))[0]
    try:
        exclusions.exclude(lake, [first], reason="warm test", by="admin")  # a commit to a table the stats table reads
        done = w.step()
        assert done is not None and not done.failed and done.warmed >= 3
        assert built == [1]  # the new version's stats table, built in the pass
        key = next(key for key in warm.noted() if key[0] == "stats_table")[1]
        assert stats_cache.path_for(str(home), key, stats_cache.context.tables_version(stats_cache.TABLES)).is_file()
        after = page("gallery", gal_vis=VIS_MODEL, gal_size=12)
        assert not after.exception and built == [1]  # the page found it built
        assert "excluded" in _tiles(after)[first]  # and it is the new data
    finally:
        exclusions.restore(lake, [first], by="admin")


def test_the_server_process_thread_warms_after_a_commit_and_can_be_turned_off(kinds, ui_store, monkeypatch):
    calls: list[int] = []
    version = [1]
    warm.register("count", lambda: calls.append(version[0]))
    warm.note("count")
    assert warm.start(lambda: version[0], 60) is None  # not a web server (ui/server.py says so): pages run here under AppTest
    from streamlit.testing.v1 import AppTest

    from db.app import sessions
    from ui import auth
    from ui.context import USER_KEY

    at = AppTest.from_file(str(Path(warm.__file__).with_name("app.py")), default_timeout=60)  # the app's script, signed in
    at.session_state[auth.TOKEN_KEY] = sessions.create(ui_store[2], "admin", user_agent="AppTest")
    at.run()
    assert not at.exception and at.session_state[USER_KEY].username == "admin"
    assert warm._started is None and "vitpro-cache-warmer" not in {t.name for t in threading.enumerate()}
    monkeypatch.setattr(warm, "_serving", True)
    assert warm.start(lambda: version[0], 0) is None  # VITPRO_UI_WARM_SECONDS=0
    w = warm.Warmer(lambda: version[0], interval=0.05).start()
    try:
        until(lambda: w._seen == 1, timeout=10, what="the first look")
        version[0] = 2
        until(lambda: w.passes == 1, timeout=10, what="a pass after the commit")
        assert calls == [2] and w.last.version == 2
    finally:
        w.stop()
    assert not w.thread.is_alive()
