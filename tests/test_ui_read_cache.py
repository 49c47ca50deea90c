"""ui/context.read's keys and disk copies, on a real store (bench/synthetic_store.py's, small): a read is
kept until a commit to a table it reads, and Overview's aggregates survive a fresh server process."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import streamlit as st

from bench import synthetic_store
from db.app import saved_filters
from db.lake import batches
from ui import context

from .test_ui_pages import page, shown, texts


def _score_commit(lake) -> None:
    now = datetime.now(timezone.utc)
    batches.write_scores(lake, "test-extra", [{"subject_kind": "image", "subject_id": "img-x", "metric": "ocr_chars", "model_id": "",
                                               "segment": "", "value": 3.0, "flags": None, "run_id": "test-extra", "created_at": now}])


def test_a_commit_to_scores_keeps_what_was_read_from_samples_and_items(small_store):
    lake = context.lake()
    before = {name: context.read_version(name) for name in ("generation_quality", "facets", "funnel", "demo_scores")}
    report = context.read("generation_quality")
    _score_commit(lake)
    after = {name: context.read_version(name) for name in before}
    assert after["generation_quality"] == before["generation_quality"] and after["facets"] == before["facets"]
    assert after["funnel"] > before["funnel"] and after["demo_scores"] > before["demo_scores"]  # they read scores
    assert context.read("generation_quality") == report
    # a read not in _DEPENDS is keyed by the store's version, as before
    assert context.read_version("browse") == lake.current_version()


def test_overview_aggregates_are_read_back_from_disk_in_a_fresh_process_and_redone_after_new_samples(small_store, monkeypatch):
    first = context.read("funnel")
    samples = dict(first)["samples generated"]
    assert samples == 400
    files = list((small_store / "cache" / "reads").glob("funnel-*.json"))
    assert len(files) == 1
    # a fresh server process: Streamlit's caches empty, the queries unavailable; the disk copy answers
    st.cache_data.clear()
    with monkeypatch.context() as m:  # (not monkeypatch.undo(): that would also undo the home fixture's VITPRO_HOME)
        m.setattr(context, "_reads", lambda: pytest.fail("recomputed although the tables did not change"))
        assert context.read("funnel") == first

    def add(con):
        con.execute("INSERT INTO samples SELECT 'extra' || sample_id, item_id, task, question, answer, answer_format, image_ids, label, "
                    "backend, model_id, prompt_version, lineage, 'extra', created_at, evidence FROM samples ORDER BY sample_id LIMIT 5")
    context.lake().transaction(add)
    assert dict(context.read("funnel"))["samples generated"] == 405
    assert len(list((small_store / "cache" / "reads").glob("funnel-*.json"))) == 1  # the older copy replaced


def test_overview_shows_the_filters_kept_count_as_the_filter_engine_counts_it(small_store):
    from curation.filters import FilterConfig

    config = FilterConfig.from_dict(saved_filters.get(context.engine(), synthetic_store.FILTER).config)
    kept = context.stats_table(config).report(config).kept
    assert 0 < kept < 400
    at = page("overview")
    assert not at.exception
    metrics = {shown(m.label): m.value for m in at.metric}
    assert metrics[f"kept by filter '{synthetic_store.FILTER}'"] == f"{kept:,}"
    assert metrics["samples generated"] == "400"
    assert json.loads(next((small_store / "cache" / "reads").glob("filter_kept-*.json")).read_text()) == kept
    assert "Quality of the generated answers" in texts(at) or at.subheader
