"""Filters against a brute-force count in Python, snapshots that re-export byte for byte after the store
changed, and snapshot diffs, on real ingested and generated demo data."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from config.settings import load_settings
from curation import snapshots
from curation.exports import FORMATS, verify_export, write_export
from curation.filters import Condition, FilterConfig, FilterError, resolve, resolve_models, stats_for
from db.app import saved_filters
from db.app.engine import write_engine

from .curation_store import CLIP_MODEL, VIS_MODEL, add_scores, ingest_and_generate


@pytest.fixture
def scored(home, tmp_path):
    lake = ingest_and_generate(tmp_path / "demo")
    add_scores(lake)
    return lake


def _raw(lake):
    """Every sample with its fields and stats, gathered in Python without the engine's SQL."""
    items = {r[0]: r[1:] for r in lake.fetchall("SELECT item_id, kind, category, product_ref, external_id FROM items")}
    product_category = {}
    for kind, category, _, external_id in items.values():
        if kind == "catalog" and category is not None:
            product_category.setdefault(external_id, category)
    scores = collections.defaultdict(dict)
    for kind, sid, metric, model, segment, value in lake.fetchall("SELECT subject_kind, subject_id, metric, model_id, segment, value FROM scores"):
        scores[(kind, metric, model, segment)][sid] = value
    out = []
    for sid, item_id, task, image_ids in lake.fetchall("SELECT sample_id, item_id, task, CAST(image_ids AS VARCHAR) FROM samples"):
        kind, category, product_ref, _ = items[item_id]
        category = category if category is not None else product_category.get(product_ref, "(none)")
        ocr = [scores[("image", "ocr_chars", "", "")].get(i) for i in json.loads(image_ids or "[]")]
        ocr = [v for v in ocr if v is not None]
        out.append({
            "id": sid, "task": task, "category": category,
            "vis": scores[("sample", "vis_attn", VIS_MODEL, "answer")].get(sid),
            "clip": scores[("item", "clip_score", CLIP_MODEL, "")].get(item_id),
            "ocr": max(ocr) if ocr else None,
        })
    return out


def _quantile(values, p):
    values = [v for v in values if v is not None]
    return float(np.quantile(values, p / 100.0)) if values else None  # numpy's default is quantile_cont's interpolation


def _counts(rows, keep):
    overall = collections.Counter(keep(r) for r in rows)
    per_task = collections.defaultdict(lambda: [0, 0])
    per_category = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        k = keep(r)
        per_task[r["task"]][0 if k else 1] += 1
        per_category[r["category"]][0 if k else 1] += 1
    return overall[True], overall[False], {t: tuple(v) for t, v in per_task.items()}, {c: tuple(v) for c, v in per_category.items()}


def _engine_counts(lake, config):
    report = stats_for(lake, config).report(config)
    return report.kept, report.dropped, {t: (k, d) for t, k, d in report.per_task}, {c: (k, d) for c, k, d in report.per_category}


def test_filter_counts_equal_a_brute_force_count(scored):
    lake = scored
    rows = _raw(lake)
    assert len(rows) > 100 and len({r["task"] for r in rows}) >= 5 and len({r["category"] for r in rows}) >= 3
    assert any(r["vis"] is None for r in rows) and any(r["clip"] is None for r in rows)

    # percentile + value
    vis25 = _quantile([r["vis"] for r in rows], 25)
    config = FilterConfig([Condition.parse("vis_attn >= p25"), Condition.parse("clip_score >= 22.5")])
    expected = _counts(rows, lambda r: r["vis"] is not None and r["vis"] >= vis25 and r["clip"] is not None and r["clip"] >= 22.5)
    assert _engine_counts(lake, config) == expected
    assert config.conditions[0].model_id is None and config.conditions[0].segment is None  # the caller's conditions stay as written

    # per-task percentile, missing stats pass, text field
    by_task = collections.defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r["vis"])
    cut = {t: _quantile(v, 40) for t, v in by_task.items()}
    config = FilterConfig([Condition.parse("vis_attn >= p40 per task or missing"), Condition.parse("task not in refusal")])
    expected = _counts(rows, lambda r: (r["vis"] is None or r["vis"] >= cut[r["task"]]) and r["task"] != "refusal")
    assert _engine_counts(lake, config) == expected

    # image stats (largest over the sample's images), categories, a ceiling
    top = _quantile([r["clip"] for r in rows], 90)
    config = FilterConfig([Condition.parse("ocr_chars >= 12"), Condition.parse("clip_score < p90"), Condition.parse("category == Grocery")])
    expected = _counts(rows, lambda r: r["ocr"] is not None and r["ocr"] >= 12 and r["clip"] is not None and r["clip"] < top and r["category"] == "Grocery")
    assert _engine_counts(lake, config) == expected


def test_histogram_and_thresholds_agree_with_the_data(scored):
    lake = scored
    rows = _raw(lake)
    config = FilterConfig([Condition.parse("vis_attn >= p30")])
    table = stats_for(lake, config)
    hist = table.histogram(config.conditions[0], config, 50)
    assert len(hist) == 50
    values = [r["vis"] for r in rows if r["vis"] is not None]
    assert sum(n for _, n, _ in hist) == len(values)
    assert sum(k for _, _, k in hist) == sum(1 for v in values if v >= _quantile(values, 30))
    assert hist[0][0] == pytest.approx(min(values))
    thresholds = table.thresholds(config)
    assert list(thresholds.values())[0] == pytest.approx(_quantile(values, 30))


def test_resolving_models_leaves_the_callers_config_as_it_was(scored):
    lake = scored
    config = FilterConfig([Condition.parse("vis_attn >= p25"), Condition.parse("clip_score >= 20"), Condition.parse("task != refusal")])
    written = config.to_dict()
    specs = resolve_models(lake, config)
    assert config.to_dict() == written
    assert [(s.metric, s.model_id, s.segment) for s in specs] == [("vis_attn", VIS_MODEL, "answer"), ("clip_score", CLIP_MODEL, "")]
    resolved = resolve(lake, config)
    assert config.to_dict() == written
    assert [(c.metric, c.model_id, c.segment) for c in resolved.conditions] == [("vis_attn", VIS_MODEL, "answer"), ("clip_score", CLIP_MODEL, ""),
                                                                              ("task", None, None)]
    # a table built from the resolved stats answers the config as written and as resolved alike
    table = stats_for(lake, config)
    assert table.report(config) == table.report(resolved)
    assert config.to_dict() == written


def test_filters_refuse_what_they_cannot_apply(scored):
    lake = scored
    with pytest.raises(FilterError, match="no vis_attn_nosink scores stored"):
        stats_for(lake, FilterConfig([Condition.parse("vis_attn_nosink >= p10")]))
    with pytest.raises(FilterError, match="no vis_attn scores from model 'nope'; there are: vlm-a"):
        stats_for(lake, FilterConfig([Condition("vis_attn", ">=", 0.1, model_id="nope")]))
    add_scores(lake, vis_model="vlm-b", seed=3)
    with pytest.raises(FilterError, match="comes from 2 models; name one: vlm-a, vlm-b"):
        stats_for(lake, FilterConfig([Condition.parse("vis_attn >= p10")]))
    for text, message in (("vis_attn ~ 3", "cannot read the condition"), ("task >= 3", "task is text"), ("clip_score >= high", "needs a number or a percentile"),
                          ("vis_attn >= p120", "between 0 and 100"), ("vis_attn in a,b", "needs a number list")):
        with pytest.raises(FilterError, match=message):
            Condition.parse(text)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_snapshot_reexports_byte_identical_after_the_store_changed_and_diffs(scored, home, tmp_path):
    lake = scored
    s = load_settings()
    engine = write_engine(s.app_url)
    config = FilterConfig([Condition.parse("vis_attn >= p25"), Condition.parse("clip_score >= p20")])
    saved_filters.save(engine, "f", config.to_dict(), "tester")
    first = snapshots.create(lake, engine, name="v1", filter_name="f", config=FilterConfig.from_dict(config.to_dict()), created_by="tester")
    # pinned at the version it froze; the commit after it is its member list (no data table changes)
    assert first.lake_version == lake.current_version() - 1 and first.created_by == "tester"
    assert first.model_ids == [{"metric": "vis_attn", "model_id": VIS_MODEL, "segment": "answer"}, {"metric": "clip_score", "model_id": CLIP_MODEL, "segment": ""}]
    assert first.prompt_versions and all(p["backend"] == "template" for p in first.prompt_versions)
    with pytest.raises(snapshots.SnapshotError, match="exists already"):
        snapshots.create(lake, engine, name="v1", filter_name="f", config=config, created_by="tester")

    def export(snap, root):
        samples, sources = snapshots.export_samples(lake, snap, s.blob_path)
        for fmt in FORMATS:
            write_export(root / fmt, fmt, samples, sources=sources, meta=snapshots.manifest_meta(snap), ocr=True, dataset_name=snap.name)
        return len(samples)

    n = export(first, tmp_path / "a")
    assert n == first.counts["kept"] > 0
    before_ids = {sid for sid, _ in snapshots.kept(lake, first)}

    # the store changes: a second catalog and complaint source, new samples, new scores
    ingest_and_generate(tmp_path / "more", products=8, complaints=6, names=("catalog-2", "complaints-2"))
    add_scores(lake, seed=1)
    assert lake.current_version() > first.lake_version

    export(first, tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")  # byte for byte, every file
    for fmt in FORMATS:
        manifest = verify_export(tmp_path / "b" / fmt)
        assert manifest["lake_version"] == first.lake_version and manifest["records"] == n and manifest["snapshot"] == "v1"

    second = snapshots.create(lake, engine, name="v2", filter_name="f", config=FilterConfig.from_dict(config.to_dict()), created_by="tester")
    after = dict(snapshots.kept(lake, second))
    diff = snapshots.diff(lake, first, second)
    tasks = collections.Counter(after[sid] for sid in set(after) - before_ids)
    assert {t: c["added"] for t, c in diff.items() if c["added"]} == dict(tasks)
    assert sum(c["removed"] for c in diff.values()) == len(before_ids - set(after))
    assert sum(c["unchanged"] for c in diff.values()) == len(before_ids & set(after))
    assert sum(c["added"] for c in diff.values()) > 0
