"""ui/stats_cache.py on a real store (bench/synthetic_store.py's, small): the filter engine's stats table is
kept on disk per version of the tables it reads; a fresh server process loads it (no rebuild) and gives
the same answers, and a commit to scores, samples or exclusions makes it rebuild with the change."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import streamlit as st

from bench import synthetic_store
from curation import filters
from curation.filters import FilterConfig, StatsTable, stats_for
from db.app import saved_filters
from db.lake import batches, exclusions
from ui import context, stats_cache


def _config() -> FilterConfig:
    return FilterConfig.from_dict(saved_filters.get(context.engine(), synthetic_store.FILTER).config)


def _per_task_config() -> FilterConfig:
    config = _config()
    for cond in config.metrics():
        cond.per_task = True
    return config


def _answers(table: StatsTable, config: FilterConfig):
    """Everything a page reads from a stats table."""
    report, hists = table.summary(config, config.metrics())
    cond = config.metrics()[0]
    lo, hi = table.value_range(cond)
    return (report.to_dict(), hists, table.kept_ids(config), table.thresholds(config), (lo, hi),
            table.margin(cond, (lo + hi) / 2), table.histogram(cond, config, bins=17))


def _files(home):
    return sorted((home / "cache" / "reads").glob("stats_table-*.parquet"))


def _fresh_process():
    st.cache_data.clear()
    st.cache_resource.clear()
    context._table_versions_seen.clear()


def test_a_fresh_process_loads_the_table_from_disk_and_gives_the_same_answers(small_store, monkeypatch):
    configs = [_config(), _per_task_config()]
    first = [_answers(context.stats_table(c), c) for c in configs]
    assert first[0][0]["kept"] > 0 and first[0][0]["dropped"] > 0
    assert first == [_answers(stats_for(context.lake(), c), c) for c in configs]  # as the engine computes it uncached
    files = _files(small_store)
    assert len(files) == 1  # both configs read the same stats: one table
    _fresh_process()
    with monkeypatch.context() as m:
        m.setattr(StatsTable, "_build", lambda self, selection: pytest.fail("rebuilt although the tables did not change"))
        # the percentiles come from the sorted values kept beside it, not from sorting the stats again
        m.setattr(type(context.lake()), "fetchnumpy", lambda *a, **k: pytest.fail("sorted the stats again"))
        again = [_answers(context.stats_table(c), c) for c in configs]
    assert again == first
    assert sorted(p.suffix for p in (small_store / "cache" / "reads").glob(files[0].name + ".*.npz")) == [".npz"] * len(first[0][0]["thresholds"])
    assert _files(small_store) == files


def test_a_commit_to_scores_samples_or_exclusions_rebuilds_it(small_store):
    lake = context.lake()
    config = _config()
    before = context.stats_table(config).report(config)
    files = _files(small_store)

    def check(changed: str):
        _fresh_process()
        got = context.stats_table(config).report(config)
        assert got == stats_for(lake, config).report(config), changed
        now = _files(small_store)
        newest = max(stats_cache._version_of(f) for f in now)
        # the new version's file, and the previous version's kept (a page still on it reads it in place); older ones gone
        assert newest > max(stats_cache._version_of(f) for f in files), f"{changed}: the file was not replaced"
        assert sorted(stats_cache._version_of(f) for f in now) == [max(stats_cache._version_of(f) for f in files), newest], changed
        return got, now

    # an exclusion: that sample is no longer kept, and the report counts it
    kept_id = context.stats_table(config).kept_ids(config)[0]
    exclusions.exclude(lake, [kept_id], reason="blurred", by="admin")
    after, files = check("exclusions")
    assert (after.kept, after.excluded) == (before.kept - 1, before.excluded + 1)
    assert kept_id not in context.stats_table(config).kept_ids(config)

    # new samples (copies of five, scoreless): five more samples in the table
    def add(con):
        con.execute("INSERT INTO samples SELECT 'extra' || sample_id, item_id, task, question, answer, answer_format, image_ids, label, "
                    "backend, model_id, prompt_version, lineage, 'extra', created_at, evidence FROM samples ORDER BY sample_id LIMIT 5")
    lake.transaction(add)
    grown, files = check("samples")
    assert grown.kept + grown.dropped == after.kept + after.dropped + 5

    # a new score: the extra samples get a VisAttnScore
    spec = next(s for s in context.stats_table(config).specs if s.metric == "vis_attn")
    now = datetime.now(timezone.utc)
    extra = [r[0] for r in lake.fetchall("SELECT sample_id FROM samples WHERE sample_id LIKE 'extra%' ORDER BY 1")]
    batches.write_scores(lake, "test-extra", [{"subject_kind": "sample", "subject_id": sid, "metric": "vis_attn", "model_id": spec.model_id,
                                               "segment": spec.segment, "value": 1e6, "flags": None, "run_id": "test-extra",
                                               "created_at": now} for sid in extra])
    scored, files = check("scores")
    assert scored != grown
    table = context.stats_table(config)
    assert lake.fetchall(f"SELECT sample_id FROM {table.name} WHERE {spec.column} = 1e6 ORDER BY 1") == [(sid,) for sid in extra]


def test_a_new_versions_table_leaves_the_previous_one_readable_and_frees_the_one_before(small_store):
    """A page (or the cache warmer) may still read the previous version's table while a commit's new one is
    built: when both took one name on the connection, the build dropped it under the reader ("Table with name
    _stats_... does not exist", seen in the browser test). Two versions stay alive; the third one back is freed."""
    lake, config = context.lake(), _config()

    def alive(table: StatsTable) -> bool:
        return bool(lake.fetchall("SELECT 1 FROM duckdb_tables() WHERE table_name = ? UNION ALL "
                                  "SELECT 1 FROM duckdb_views() WHERE view_name = ?", [table.name, table.name]))

    first = context.stats_table(config)
    before = first.report(config)
    kept_id = first.kept_ids(config)[0]
    exclusions.exclude(lake, [kept_id], reason="blurred", by="admin")
    second = context.stats_table(config)
    assert second.name != first.name and alive(first) and alive(second)
    assert first.report(config) == before  # the reader on the previous version still gets its answers
    assert (second.report(config).kept, second.report(config).excluded) == (before.kept - 1, before.excluded + 1)
    exclusions.restore(lake, [kept_id], by="admin")
    third = context.stats_table(config)
    assert third.report(config) == before and second.report(config).excluded == before.excluded + 1
    assert not alive(first) and alive(second) and alive(third)  # two versions kept, the oldest's memory freed


def test_a_commit_to_a_table_it_does_not_read_keeps_it(small_store, monkeypatch):
    config = _config()
    first = context.stats_table(config).report(config)
    files = _files(small_store)
    version = context.tables_version(stats_cache.tables_read(None))
    context.lake().transaction(lambda con: con.execute(
        "INSERT INTO selections SELECT 'other', 'sample', sample_id, NULL, 0, 'test', now() FROM samples LIMIT 3"))
    assert context.lake().current_version() > version == context.tables_version(stats_cache.tables_read(None))
    _fresh_process()
    with monkeypatch.context() as m:
        m.setattr(StatsTable, "_build", lambda self, selection: pytest.fail("rebuilt after a commit it does not read"))
        assert context.stats_table(config).report(config) == first
    assert _files(small_store) == files


def test_a_damaged_file_is_rebuilt_and_replaced(small_store):
    config = _config()
    first = context.stats_table(config).report(config)
    (path,) = _files(small_store)
    path.write_bytes(b"not parquet")
    _fresh_process()
    assert context.stats_table(config).report(config) == first
    assert path.read_bytes()[:4] == b"PAR1"


def test_a_rerun_finds_the_models_in_the_read_cache(small_store, monkeypatch):
    config = _config()
    for cond in config.metrics():  # as a page builds it: no model named, the store's only one is used
        cond.model_id = None
    first = context.stats_table(config).report(config)
    calls = []
    real = filters.models.stored_models
    monkeypatch.setattr(filters.models, "stored_models", lambda *a, **k: calls.append(a) or real(*a, **k))
    st.cache_data.clear()  # the model lists come back from the disk copy of the read, not from the scores
    for cond in config.metrics():
        cond.model_id = None
    assert context.stats_table(config).report(config) == first
    assert calls == []


# ---- Pilot: its results and labelling loop on the app's cached reads ------------------------------------
def _label_some(engine, n: int = 12) -> list[str]:
    from db.app import pilots

    p = pilots.get(engine, "bench-pilot")
    ids = [x.sample_id for x in pilots.samples(engine, p.id)]
    for k, sid in enumerate(ids[:n]):
        pilots.set_label(engine, p.id, sid, "admin", "grounded" if k % 3 else "not_grounded")
    return ids


def _old_current_predictions(lake, config, sample_ids):
    """What current_predictions computed before it shared one cached table: a table per score, every row read."""
    out = {}
    for metric in ("vis_attn", "clip_score"):
        conds = [c for c in config.conditions if c.metric == metric]
        if conds:
            sub = FilterConfig(conds, config.selection, config.segment)
            rows = lake.fetchall(f"SELECT sample_id, keep FROM ({stats_for(lake, sub).kept_sql(sub)})")
            out[metric] = ("; ".join(c.describe() for c in conds), {sid: bool(k) for sid, k in rows if sid in set(sample_ids)})
    return out


def test_pilot_results_on_the_apps_stats_table_are_the_ones_built_for_them(small_store):
    from curation import pilot_results

    lake, engine = context.lake(), context.engine()
    ids = _label_some(engine)
    assert pilot_results.current_predictions(lake, _config(), ids, stats=context.stats_table) == _old_current_predictions(lake, _config(), ids)
    built = pilot_results.results(lake, engine, "bench-pilot", synthetic_store.FILTER)
    cached = pilot_results.results(lake, engine, "bench-pilot", synthetic_store.FILTER, stats=context.stats_table)
    assert cached == built and cached.report.labelled == 12
    assert {r.current_accuracy is not None for r in cached.report.scores.values()} == {True}


def test_pilot_page_clicks_build_no_stats_table_and_read_no_sample(small_store, monkeypatch):
    from db.app import pilots

    from .test_ui_pages import page

    ids = _label_some(context.engine())
    at = page("pilot", pilot_name="bench-pilot", pilot_filter=synthetic_store.FILTER)
    assert not at.exception
    assert "sample **13** of 200" in "\n".join(m.value for m in at.markdown)  # resumes at the first unlabelled
    with monkeypatch.context() as m:
        m.setattr(StatsTable, "_build", lambda self, selection: pytest.fail("a stats table built on a click"))
        m.setattr(StatsTable, "_load", lambda self, path: pytest.fail("a stats table loaded on a click"))
        m.setattr(pilots, "sample_details", lambda *a, **k: pytest.fail("a sample read on a click"))
        at.button(key="pilot_next").click().run()
        assert not at.exception
        assert "sample **14** of 200" in "\n".join(m.value for m in at.markdown)
        at.button(key="pilot_grounded").click().run()
        assert not at.exception
    (row,) = [r for r in pilots.labels(context.engine(), pilots.get(context.engine(), "bench-pilot").id) if r.sample_id == ids[13]]
    assert row.label == "grounded"
