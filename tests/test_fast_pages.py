"""Issue 15 (pages fast at a million samples), on a real store: the faster reads give the answers the old
ones gave, the version lookup every cached read pays is right, the snapshot diff is computed only when
asked and once, and Pilot's model lists come from the read cache."""
from __future__ import annotations

import math

import pytest

from curation import snapshots
from curation.filters import HIST_BINS, Condition, FilterConfig, stats_for
from db.lake.connection import ALIAS
from db.reads import browse, overview_stats

from .test_ui_pages import ADMIN, ANNA, page, texts, ui_store  # noqa: F401  (ui_store: the fixture)


def test_current_version_is_the_latest_commit_seen_from_another_connection(ui_store):
    home, lake, engine = ui_store
    from db.lake.connection import Lake

    other = Lake(lake.catalog_url, lake.data_path)
    try:
        latest = lake.scalar(f"SELECT max(snapshot_id) FROM ducklake_snapshots('{ALIAS}')")
        assert lake.current_version() == other.current_version() == latest > 0
        other.transaction(lambda con: con.execute("CREATE TABLE IF NOT EXISTS _version_probe (x INTEGER)"))
        other.transaction(lambda con: con.execute("INSERT INTO _version_probe VALUES (1)"))
        # two commits in the other process: this connection sees both at once
        assert lake.current_version() == latest + 2 == lake.scalar(f"SELECT max(snapshot_id) FROM ducklake_snapshots('{ALIAS}')")
    finally:
        other.close()


def test_overview_stats_give_the_old_reads_answers(ui_store):
    home, lake, engine = ui_store
    assert overview_stats.funnel(lake) == browse.funnel(lake)
    rows = overview_stats.per_task_category(lake)
    assert rows == browse.per_task_category(lake)
    assert sum(r["samples"] for r in rows) > sum(r["scored"] for r in rows) > 0  # some unscored, some scored


def test_stats_table_bins_are_the_literal_width_bins(ui_store):
    home, lake, engine = ui_store
    from db.app import saved_filters

    config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
    table = stats_for(lake, config)
    assert table.specs
    for spec in table.specs:
        col = spec.column
        lo, hi = table.value_range(Condition(spec.metric, ">=", 0.0, model_id=spec.model_id, segment=spec.segment))
        width = (hi - lo) / HIST_BINS if hi > lo else 1.0
        rows = lake.fetchall(f"SELECT {col}, _bin_{col} FROM {table.name}")
        assert any(v is not None for v, _ in rows)
        for value, got in rows:
            assert got == (None if value is None else min(math.floor((value - lo) / width), HIST_BINS - 1)), (value, got)
    codes = lake.fetchall(f"SELECT DISTINCT task, _task_code FROM {table.name} ORDER BY task")
    assert [c for _, c in codes] == list(range(1, len(codes) + 1))  # codes in task order, one per task


def _two_snapshots(lake, engine):
    from db.app import saved_filters

    base = saved_filters.get(engine, "ui-filter").config
    a = snapshots.create(lake, engine, name="fast-a", filter_name="ui-filter", config=FilterConfig.from_dict(base), created_by="admin")
    tighter = FilterConfig.from_dict(base)
    for cond in tighter.metrics():  # the same stats, a tighter cut: some samples leave
        cond.percentile, cond.value = 60.0, None
    b = snapshots.create(lake, engine, name="fast-b", filter_name=None, config=tighter, created_by="admin")
    return a, b


def test_snapshot_diff_in_sql_is_the_per_sample_diff_and_checks_the_hash(ui_store):
    home, lake, engine = ui_store
    a, b = _two_snapshots(lake, engine)
    left, right = dict(snapshots.kept(lake, a)), dict(snapshots.kept(lake, b))
    expected: dict[str, dict[str, int]] = {}
    for sid, task in right.items():
        expected.setdefault(task, {"added": 0, "removed": 0, "unchanged": 0})["unchanged" if sid in left else "added"] += 1
    for sid, task in left.items():
        if sid not in right:
            expected.setdefault(task, {"added": 0, "removed": 0, "unchanged": 0})["removed"] += 1
    got = snapshots.diff(lake, a, b)
    assert got == dict(sorted(expected.items())) and sum(v["removed"] + v["added"] for v in got.values()) > 0
    a.counts = {**a.counts, "kept_sha256": "0" * 64}  # as if the history behind it had changed
    with pytest.raises(snapshots.SnapshotError, match="no longer gives the samples"):
        snapshots.diff(lake, a, b)


def test_snapshots_page_diffs_only_when_asked_and_once(ui_store, monkeypatch):
    home, lake, engine = ui_store
    names = [x.name for x in snapshots.list_all(engine)]
    if "fast-a" not in names:
        _two_snapshots(lake, engine)
    calls = []
    real = snapshots.diff
    monkeypatch.setattr(snapshots, "diff", lambda *a: calls.append(a[1].name) or real(*a))
    at = page("snapshots", diff_a="fast-a", diff_b="fast-b")
    assert not at.exception and calls == [] and [b for b in at.button if b.label == "Compare"]
    at = [b for b in at.button if b.label == "Compare"][0].click().run()
    assert not at.exception and calls == ["fast-a"] and at.dataframe
    at.run()  # any later click: the same diff shown, from the cache
    assert not at.exception and calls == ["fast-a"] and at.dataframe and not [b for b in at.button if b.label == "Compare"]
    anna = page("snapshots", who=ANNA, diff_a="fast-a", diff_b="fast-b")  # annotators may compare too; a new session, the cached diff
    anna = [b for b in anna.button if b.label == "Compare"][0].click().run()
    assert not anna.exception and calls == ["fast-a"] and anna.dataframe


def test_pilot_reads_its_model_lists_once_per_scores_version(ui_store, monkeypatch):
    import curation.filters as filters

    calls = []
    real = filters.models.stored_models
    monkeypatch.setattr(filters.models, "stored_models", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    at = page("pilot")
    at.run()
    at.run()
    assert not at.exception
    # at most one read of each list (none if another test read them at this version already)
    assert calls.count("vis_attn") <= 1 and calls.count("clip_score") <= 1
    vis = [b for b in at.selectbox if b.label == "VisAttnScore model"]
    assert vis and vis[0].options and vis[0].options == real(ui_store[1], "vis_attn", segment="answer", scored_only=True)


def test_overview_switches_backend_without_reading_again(ui_store, monkeypatch):
    from db.reads import quality

    calls = []
    real = quality.rows_by_backend
    monkeypatch.setattr(quality, "rows_by_backend", lambda lk: calls.append(1) or real(lk))
    at = page("overview")
    assert not at.exception
    present = quality.backends(ui_store[1])
    before = list(calls)  # one read, or none where an earlier test read it at this version
    at = [b for b in at.selectbox if b.label == "Backend"][0].select("openai").run()
    assert "openai" not in present and "No samples from this backend." in texts(at)
    at = [b for b in at.selectbox if b.label == "Backend"][0].select(present[0]).run()
    assert not at.exception and "No samples from this backend." not in texts(at)
    assert calls == before  # both switches were lookups


def test_one_pass_gives_each_backends_report_as_asked_alone(ui_store):
    from db.reads import quality

    lake = ui_store[1]
    lake.transaction(lambda con: con.execute(  # a second backend: a few samples copied as if from an LLM
        "INSERT INTO samples SELECT 'llm-' || sample_id, item_id, task, question, answer || ' (llm)', answer_format, image_ids, label, "
        "'openai', model_id, prompt_version, lineage, 'test-llm', created_at, evidence FROM samples ORDER BY sample_id LIMIT 7"))
    try:
        every = quality.rows_by_backend(lake)
        assert set(every) >= {quality.ALL, "openai", *[b for b in quality.backends(lake) if b]}
        for backend in [None, *quality.backends(lake)]:
            if backend is None and None in quality.backends(lake):
                continue  # None asks for every sample (ALL); samples without a backend are under NO_BACKEND
            key = quality.ALL if backend is None else backend
            assert every[key] == (quality.task_rows(lake, backend), quality.coverage_rows(lake, backend)), key
        assert sum(r["samples"] for r in every["openai"][0]) == 7
    finally:
        lake.transaction(lambda con: con.execute("DELETE FROM samples WHERE run_id = 'test-llm'"))
