"""A change of cut computed in memory (StatsTable._kept_in_memory, numpy over columns read once) gives the
very counts and histograms of the SQL pass it replaces, for every comparison, percentile or value cut,
per task or global, with missing values kept or dropped, exclusions included."""
from __future__ import annotations

import random

import pytest

from curation.filters import Condition, FilterConfig, StatsTable, stats_for
from db.lake import exclusions


def _configs(seed: int = 3, n: int = 40):
    rng = random.Random(seed)
    ops = [">=", ">", "<=", "<", "==", "!="]
    out = []
    for _ in range(n):
        conds = []
        for metric in rng.sample(["vis_attn", "clip_score", "vis_attn_mass"], rng.randint(1, 3)):
            op = rng.choice(ops)
            if rng.random() < 0.6:
                conds.append(Condition(metric, op, None, float(rng.randint(0, 100)), per_task=rng.random() < 0.5 and metric != "clip_score",
                                       keep_missing=rng.random() < 0.4))
            else:
                conds.append(Condition(metric, op, round(rng.uniform(0, 40), 3), keep_missing=rng.random() < 0.4))
        out.append(FilterConfig(conds))
    return out


def test_in_memory_counts_equal_the_sql_pass(small_store, monkeypatch):
    from ui import context

    lake = context.lake()
    some = [sid for (sid,) in lake.fetchall("SELECT sample_id FROM samples ORDER BY sample_id LIMIT 9")]
    exclusions.exclude(lake, some, reason="a test", by="tester")
    configs = _configs()
    table = stats_for(lake, FilterConfig([Condition(m, ">=", 0.0) for m in ("vis_attn", "clip_score", "vis_attn_mass")]))
    fast = [table.summary(c, c.conditions[:2]) for c in configs]
    assert table._arrays, "the in-memory path did not run"
    monkeypatch.setattr(StatsTable, "_kept_in_memory", lambda self, config, cols: None)
    slow = [table.summary(c, c.conditions[:2]) for c in configs]
    for config, (r1, h1), (r2, h2) in zip(configs, fast, slow):
        assert r1 == r2 and h1 == h2, config
    assert any(r.excluded for r, _ in fast) and len({r.kept for r, _ in fast}) > 10  # the configs differ in what they keep


def test_a_condition_on_a_text_field_stays_in_sql(small_store):
    from ui import context

    table = stats_for(context.lake(), FilterConfig([Condition("vis_attn", ">=", 0.0)]))
    config = FilterConfig([Condition("vis_attn", ">=", None, 30.0), Condition("task", "in", ["recognition", "matching"])])
    assert table._kept_in_memory(table.resolve(config), []) is None
    report, _ = table.summary(config)
    assert {t for t, kept, _ in report.per_task if kept} <= {"recognition", "matching"}


@pytest.mark.parametrize("keep_missing", [False, True])
def test_a_task_without_a_cut_follows_keep_missing(small_store, keep_missing):
    from ui import context

    table = stats_for(context.lake(), FilterConfig([Condition("vis_attn", ">=", 0.0)]))
    config = table.resolve(FilterConfig([Condition("vis_attn", ">=", None, 50.0, per_task=True, keep_missing=keep_missing)]))
    fast = table.summary(config)[0]
    table._kept_in_memory = lambda config, cols: None
    assert fast == table.summary(config)[0]
