"""Snapshots list their samples (db/lake/snapshot_members.py, curation/snapshots.py): the list is what the filter
kept at the snapshot's version, every reader uses it instead of rebuilding the filter, a snapshot made
before lists is backfilled (lazily and by `vitpro snapshot backfill`), a rename keeps the list, and a
create whose list cannot be written leaves nothing behind. On the synthetic store of 400 samples."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from config.settings import load_settings
from curation import snapshots
from curation.filters import FilterConfig, stats_for
from db.app import saved_filters
from db.app.engine import write_engine
from db.lake import batches, exclusions
from db.lake import snapshot_members as lists
from db.store import open_store


@pytest.fixture
def store(small_store):
    s = load_settings()
    return open_store(s.store), write_engine(s.app_url)


def _config(engine) -> FilterConfig:
    from bench.synthetic_store import FILTER

    return FilterConfig.from_dict(saved_filters.get(engine, FILTER).config)


def _old_kept(lake, snap) -> list[tuple[str, str]]:
    """What every reader did before lists: the filter rebuilt at the snapshot's version."""
    config = FilterConfig.from_dict(snap.filter_config)
    table = stats_for(lake, config, version=snap.lake_version)
    return [(r[0], r[1]) for r in lake.fetchall(f"SELECT sample_id, task FROM ({table.kept_sql(config)}) WHERE keep ORDER BY sample_id")]


def _unlist(lake, snap) -> None:
    """As if the snapshot had been made before lists existed."""
    lake.transaction(lambda con: (con.execute("DELETE FROM snapshot_members WHERE snapshot_id = ?", [snap.id]),
                                  con.execute("DELETE FROM snapshot_member_lists WHERE snapshot_id = ?", [snap.id])))


def _rows_of(lake, snap) -> int:
    return lake.scalar("SELECT count(*) FROM snapshot_members WHERE snapshot_id = ?", [snap.id])


def _no_rebuild(monkeypatch) -> None:
    """Any read that rebuilds the filter fails the test."""
    def refuse(*a, **k):
        raise AssertionError("the filter was rebuilt: the member list was not used")
    monkeypatch.setattr(snapshots, "stats_for", refuse)


def _count_rebuilds(monkeypatch) -> list:
    calls = []
    real = snapshots.stats_for
    monkeypatch.setattr(snapshots, "stats_for", lambda *a, **k: calls.append(k.get("version")) or real(*a, **k))
    return calls


def _change_the_store(lake, kept_ids: list[str]) -> None:
    """Writes that change what the filter keeps today: some kept samples excluded, the never-scored samples
    scored (VisAttnScore's percentiles move)."""
    from bench.synthetic_store import VIS_MODEL

    exclusions.exclude(lake, kept_ids[:5], reason="blurred photo", by="tester")
    unscored = [r[0] for r in lake.fetchall(
        "SELECT sample_id FROM samples WHERE sample_id NOT IN (SELECT subject_id FROM scores WHERE metric = 'vis_attn') ORDER BY 1")]
    now = datetime.now(timezone.utc)
    rows = [{"subject_kind": "sample", "subject_id": sid, "metric": "vis_attn", "model_id": VIS_MODEL, "segment": "answer", "value": 0.5,
             "flags": None, "run_id": "later", "created_at": now} for sid in unscored]
    batches.write_scores(lake, "later-scores", rows)


def test_the_list_is_what_the_filter_kept_at_that_version(store):
    lake, engine = store
    snap = snapshots.create(lake, engine, name="listed", filter_name=None, config=_config(engine), created_by="tester")
    listed = lists.listed(lake, snap.id)
    assert listed == lists.MemberList(snap.id, snap.lake_version, snap.counts["kept_sha256"], snap.counts["kept"])
    before = snapshots.kept(lake, snap)
    assert before == _old_kept(lake, snap) and len(before) == snap.counts["kept"] == _rows_of(lake, snap)

    _change_the_store(lake, [sid for sid, _ in before])
    config = FilterConfig.from_dict(snap.filter_config)
    today = stats_for(lake, config).kept_ids(config)
    assert today != [sid for sid, _ in before]  # the filter keeps other samples now ...
    assert snapshots.kept(lake, snap) == before == _old_kept(lake, snap)  # ... the list, and the filter at its version, do not
    assert snapshots.member_ids(lake, snap) == [sid for sid, _ in before]
    assert lake.fetchall(f"SELECT sample_id, task FROM ({snapshots.members_sql(lake, snap)}) ORDER BY 1") == before
    # one row per sample, each with the snapshot's version
    assert lake.fetchall("SELECT count(DISTINCT sample_id) = count(*), min(lake_version), max(lake_version) FROM snapshot_members "
                         "WHERE snapshot_id = ?", [snap.id]) == [(True, snap.lake_version, snap.lake_version)]


def test_readers_use_the_list_and_give_what_they_gave(store, monkeypatch):
    lake, engine = store
    a, b = snapshots.get(engine, "bench-snap-1"), snapshots.get(engine, "bench-snap-2")
    _change_the_store(lake, snapshots.member_ids(lake, a))
    c = snapshots.create(lake, engine, name="after-changes", filter_name=None, config=_config(engine), created_by="tester")
    blob_root = load_settings().blob_path
    # the results computed the old way (the filter rebuilt for each snapshot) ...
    old_a, old_c = dict(_old_kept(lake, a)), dict(_old_kept(lake, c))
    expected_diff: dict[str, dict[str, int]] = {}
    for sid, task in old_c.items():
        expected_diff.setdefault(task, {"added": 0, "removed": 0, "unchanged": 0})["unchanged" if sid in old_a else "added"] += 1
    for sid, task in old_a.items():
        if sid not in old_c:
            expected_diff.setdefault(task, {"added": 0, "removed": 0, "unchanged": 0})["removed"] += 1
    from db.reads import samples_view

    expected_rows = samples_view.samples_with_images(lake, sorted(old_a), version=a.lake_version)
    # ... are what the readers give from the lists, without rebuilding a filter
    _no_rebuild(monkeypatch)
    assert snapshots.diff(lake, a, c) == dict(sorted(expected_diff.items())) and snapshots.diff(lake, a, b) == {
        t: {"added": 0, "removed": 0, "unchanged": n} for t, n in sorted(_per_task(old_a).items())}
    assert snapshots.snapshot_rows(lake, engine, a.name) == expected_rows
    samples, sources = snapshots.export_samples(lake, a, blob_root)
    assert [x.sample_id for x in samples] == sorted(old_a) and [x.task for x in samples] == [r["task"] for r in expected_rows]
    assert sources and all(p.exists() for p in sources.values())
    evaluated = snapshots.eval_rows(lake, engine, a.name)
    assert [r["sample_id"] for r in evaluated] == sorted(old_a) and all("title" in r for r in evaluated)


def _per_task(kept: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for task in kept.values():
        out[task] = out.get(task, 0) + 1
    return out


def test_a_snapshot_from_before_lists_is_backfilled_on_first_read(store, monkeypatch):
    lake, engine = store
    snap = snapshots.get(engine, "bench-snap-1")
    before = snapshots.kept(lake, snap)
    rows_before = snapshots.snapshot_rows(lake, engine, snap.name)
    _unlist(lake, snap)
    assert lists.listed(lake, snap.id) is None and _rows_of(lake, snap) == 0
    _change_the_store(lake, [sid for sid, _ in before])

    rebuilds = _count_rebuilds(monkeypatch)
    assert snapshots.member_ids(lake, snap) == [sid for sid, _ in before]
    assert rebuilds == [snap.lake_version]  # the old path, once, at the snapshot's version
    assert snapshots.kept(lake, snap) == before and snapshots.snapshot_rows(lake, engine, snap.name) == rows_before
    assert rebuilds == [snap.lake_version] and _rows_of(lake, snap) == snap.counts["kept"]  # listed now: no second rebuild

    # a list that is not this record's (say one left under a reused id) is replaced the same way
    lists.write(lake, snap.id, snap.lake_version, "f" * 64, ["not-a-sample"], ["recognition"])
    assert snapshots.kept(lake, snap) == before and len(rebuilds) == 2 and lists.listed(lake, snap.id).kept_sha256 == snap.counts["kept_sha256"]


def test_backfill_lists_every_snapshot_without_one_and_reports_each(store, monkeypatch):
    lake, engine = store
    a, b = snapshots.get(engine, "bench-snap-1"), snapshots.get(engine, "bench-snap-2")
    before = {s.name: snapshots.kept(lake, s) for s in (a, b)}
    _unlist(lake, a)
    _unlist(lake, b)
    seen = []
    done = snapshots.backfill_members(lake, engine, progress=lambda snap, result: seen.append((snap.name, result)))
    assert done == {a.name: a.counts["kept"], b.name: b.counts["kept"]} and seen == list(done.items())
    assert snapshots.backfill_members(lake, engine) == {}  # nothing left to do
    _no_rebuild(monkeypatch)
    assert {s.name: snapshots.kept(lake, s) for s in (a, b)} == before


def test_a_snapshot_whose_history_expired_cannot_be_backfilled(store):
    lake, engine = store
    a, b = snapshots.get(engine, "bench-snap-1"), snapshots.get(engine, "bench-snap-2")
    assert a.lake_version < b.lake_version
    _unlist(lake, a)
    _unlist(lake, b)
    lake.execute(f"CALL ducklake_expire_snapshots('lake', versions => [{a.lake_version}])")
    with pytest.raises(snapshots.SnapshotError, match="no longer gives the samples it was made of"):
        snapshots.member_ids(lake, a)
    seen = []
    with pytest.raises(snapshots.SnapshotError, match="1 snapshot.s. could not be listed.*bench-snap-1"):
        snapshots.backfill_members(lake, engine, progress=lambda snap, result: seen.append((snap.name, type(result).__name__)))
    assert seen == [(a.name, "SnapshotError"), (b.name, "int")]  # the other one is listed all the same
    assert lists.listed(lake, a.id) is None and _rows_of(lake, b) == b.counts["kept"]


def test_a_rename_keeps_the_list(store, monkeypatch):
    lake, engine = store
    snap = snapshots.get(engine, "bench-snap-1")
    before = snapshots.member_ids(lake, snap)
    renamed = snapshots.rename(engine, snap.name, "bench-final")
    _no_rebuild(monkeypatch)
    assert renamed.id == snap.id and snapshots.member_ids(lake, renamed) == before
    assert [r["sample_id"] for r in snapshots.snapshot_rows(lake, engine, "bench-final")] == before


def test_a_create_whose_list_fails_leaves_nothing(store, monkeypatch):
    lake, engine = store
    config = _config(engine)
    members_before = lake.scalar("SELECT count(*) FROM snapshot_members")
    lists_before = lake.fetchall("SELECT snapshot_id FROM snapshot_member_lists ORDER BY 1")
    real = lists._mark

    def broken(con, *args):
        # after the members went in, inside the same transaction: they must go with it
        assert con.execute("SELECT count(*) FROM snapshot_members").fetchone()[0] > members_before
        raise RuntimeError("the catalog went away")

    monkeypatch.setattr(lists, "_mark", broken)
    with pytest.raises(RuntimeError, match="the catalog went away"):
        snapshots.create(lake, engine, name="half", filter_name=None, config=config, created_by="tester")
    assert "half" not in [s.name for s in snapshots.list_all(engine)]  # no record ...
    assert lake.scalar("SELECT count(*) FROM snapshot_members") == members_before  # ... and no rows
    assert lake.fetchall("SELECT snapshot_id FROM snapshot_member_lists ORDER BY 1") == lists_before

    monkeypatch.setattr(lists, "_mark", real)
    snap = snapshots.create(lake, engine, name="half", filter_name=None, config=config, created_by="tester")  # the name is free
    assert _rows_of(lake, snap) == snap.counts["kept"] and snapshots.kept(lake, snap) == _old_kept(lake, snap)
    # writing the list again (a retry) leaves one list, not two
    lists.write(lake, snap.id, snap.lake_version, snap.counts["kept_sha256"], *map(list, zip(*_old_kept(lake, snap))))
    assert _rows_of(lake, snap) == snap.counts["kept"] and len([r for r in lake.fetchall(
        "SELECT 1 FROM snapshot_member_lists WHERE snapshot_id = ?", [snap.id])]) == 1


def test_backfill_from_the_command_line(store, cli):
    lake, engine = store
    a = snapshots.get(engine, "bench-snap-1")
    _unlist(lake, a)
    out = cli("snapshot", "backfill", check=True).stdout
    assert f"snapshot {a.name!r}: listed {a.counts['kept']} sample(s)" in out and "1 snapshot(s) listed" in out
    again = cli("snapshot", "backfill", check=True).stdout
    assert "every snapshot lists its samples already" in again


def test_lists_on_a_postgresql_catalog(home, pg_url, monkeypatch):
    """The same writes and reads with the production catalog (DuckLake on PostgreSQL, app tables beside it)."""
    from bench import synthetic_store

    monkeypatch.setenv("VITPRO_CATALOG", pg_url)
    synthetic_store.build(400)
    s = load_settings()
    lake, engine = open_store(s.store), write_engine(s.app_url)
    a, b = snapshots.get(engine, "bench-snap-1"), snapshots.get(engine, "bench-snap-2")
    before = snapshots.kept(lake, a)
    assert before == _old_kept(lake, a) and _rows_of(lake, a) == a.counts["kept"]
    _unlist(lake, a)
    assert snapshots.backfill_members(lake, engine) == {a.name: a.counts["kept"]}
    assert snapshots.kept(lake, a) == before
    assert snapshots.diff(lake, a, b) == {t: {"added": 0, "removed": 0, "unchanged": n} for t, n in sorted(_per_task(dict(before)).items())}
