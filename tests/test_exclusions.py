"""Sample exclusions (db/lake/exclusions.py) honoured by filters, snapshots and exports, on real ingested and
generated demo data; snapshot renames; the `vitpro samples` and `vitpro snapshot rename` commands."""
from __future__ import annotations

import json

import pytest

from config.settings import load_settings
from curation import snapshots
from curation.exports import DATA_FILES, FORMATS, write_export
from curation.filters import Condition, FilterConfig, stats_for
from db.app import saved_filters, training
from db.app.engine import write_engine
from db.lake import exclusions
from jobs.export import ExportJob

from .curation_store import add_scores, ingest_and_generate
from .helpers import excluded_ids as _excluded_ids
from .test_generation import _run_job

CONFIG = [Condition.parse("vis_attn >= p25"), Condition.parse("clip_score >= p20")]


@pytest.fixture
def scored(home, tmp_path):
    lake = ingest_and_generate(tmp_path / "demo")
    add_scores(lake)
    return lake


def _config() -> FilterConfig:
    return FilterConfig.from_dict(FilterConfig(CONFIG).to_dict())


def _ids_from_records(folder) -> set[str]:
    """The sample ids of an export's records, read from its data file as a trainer would."""
    import pyarrow.parquet as pq

    path = next(folder / name for fmt, name in DATA_FILES.items() if (folder / name).exists() and fmt == folder.name)
    if path.suffix == ".parquet":
        return set(pq.read_table(path).column("id").to_pylist())
    if path.suffix == ".jsonl":
        return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
    records = json.loads(path.read_text())
    if folder.name == "llamafactory":  # ShareGPT records carry no id: the same records as swift's (sorted by id), less the id
        swift = [json.loads(line) for line in (folder.parent / "swift" / DATA_FILES["swift"]).read_text().splitlines() if line.strip()]
        assert records == [{k: v for k, v in r.items() if k != "id"} for r in swift]
        return {r["id"] for r in swift}
    return {r["id"] for r in records}


def test_exclude_and_restore_keep_a_history_and_refuse_bad_input(scored):
    lake = scored
    ids = [r[0] for r in lake.fetchall("SELECT DISTINCT sample_id FROM samples ORDER BY 1 LIMIT 3")]
    before = lake.current_version()
    with pytest.raises(exclusions.ExclusionError, match="reason is required"):
        exclusions.exclude(lake, ids, reason="  ", by="ann")
    with pytest.raises(exclusions.ExclusionError, match=r"no sample with id nope-1, nope-2, nope-3, nope-4, nope-5 \(and 1 more\); nothing was excluded"):
        exclusions.exclude(lake, [ids[0], *(f"nope-{k}" for k in range(1, 7))], reason="blurred", by="ann")
    assert exclusions.count(lake) == 0 and lake.current_version() == before  # refused: nothing written

    assert exclusions.exclude(lake, ids[:2], reason="blurred photo", by="ann") == 2
    assert exclusions.exclude(lake, ids, reason="again", by="bob") == 1  # only the third is new
    assert _excluded_ids(lake) == set(ids) and exclusions.count(lake) == 3
    listed = exclusions.list_excluded(lake, limit=10)
    assert listed[0] == {"sample_id": ids[2], "reason": "again", "by": "bob", "at": listed[0]["at"]}
    assert {r["sample_id"]: r["reason"] for r in listed} == {ids[0]: "blurred photo", ids[1]: "blurred photo", ids[2]: "again"}
    assert listed[0]["at"].utcoffset().total_seconds() == 0
    assert [r["sample_id"] for r in exclusions.list_excluded(lake, limit=1, offset=1)] == [listed[1]["sample_id"]]

    at_exclusion = lake.current_version()
    assert exclusions.restore(lake, [ids[0], ids[0]], by="cy") == 1
    assert exclusions.restore(lake, [ids[0]], by="cy") == 0  # not excluded any more
    with pytest.raises(exclusions.ExclusionError, match="no sample with id zzz; nothing was restored"):
        exclusions.restore(lake, ["zzz"], by="cy")
    assert _excluded_ids(lake) == set(ids[1:])
    # the log keeps every change; time travel gives the state at any version
    assert [(h["excluded"], h["reason"], h["by"]) for h in exclusions.history(lake, ids[0])] == [(True, "blurred photo", "ann"), (False, None, "cy")]
    assert _excluded_ids(lake, version=at_exclusion) == set(ids)
    assert _excluded_ids(lake, version=before) == set()
    assert _excluded_ids(lake, version=1) == set()  # before the table existed (a snapshot from before migration 5)
    assert exclusions.exclude(lake, [ids[0]], reason="second look", by="ann") == 1
    assert [h["excluded"] for h in exclusions.history(lake, ids[0])] == [True, False, True]
    assert lake.fetchall("SELECT seq FROM exclusions WHERE sample_id = ? ORDER BY seq", [ids[0]]) == [(1,), (2,), (3,)]


def test_filters_snapshots_and_exports_leave_excluded_samples_out(scored, tmp_path):
    lake = scored
    s = load_settings()
    engine = write_engine(s.app_url)
    saved_filters.save(engine, "f", FilterConfig(CONFIG).to_dict(), "tester")
    first = snapshots.create(lake, engine, name="before", filter_name="f", config=_config(), created_by="tester")
    assert first.counts["excluded"] == 0 and first.counts["kept"] > 2
    first_ids = dict(snapshots.kept(lake, first))
    victim = sorted(first_ids)[1]
    task = first_ids[victim]

    assert exclusions.exclude(lake, [victim], reason="answer is wrong", by="tester") == 1
    config = _config()
    table = stats_for(lake, config)
    report = table.report(config)
    assert report.kept == first.counts["kept"] - 1 and report.excluded == 1 and report.per_task_excluded == {task: 1}
    assert report.kept + report.dropped == first.counts["kept"] + first.counts["dropped"]  # excluded count as dropped
    assert victim not in table.kept_ids(config) and len(table.kept_ids(config)) == report.kept
    assert dict((t, k) for t, k, _ in report.per_task)[task] == first.counts["per_task"][task]["kept"] - 1
    # a filter that keeps everything keeps every sample but the excluded one
    everything = FilterConfig([])
    all_table = stats_for(lake, everything)
    total = lake.scalar("SELECT count(DISTINCT sample_id) FROM samples")
    assert all_table.report(everything).kept == total - 1 and victim not in all_table.kept_ids(everything)
    # the percentile cuts do not move: excluded samples still count in the data set's percentiles
    old = _config()
    assert table.thresholds(config) == stats_for(lake, old, version=first.lake_version).thresholds(old) == first.counts["thresholds"]
    # margins (what a curator reads at a cut) skip it too
    vis = config.conditions[0]
    value = lake.scalar("SELECT value FROM scores WHERE subject_id = ? AND metric = 'vis_attn'", [victim])
    above, below = table.margin(vis, value, n=50)
    assert victim not in {sid for sid, _ in above + below}

    second = snapshots.create(lake, engine, name="after", filter_name="f", config=_config(), created_by="tester")
    assert second.counts["kept"] == first.counts["kept"] - 1 and second.counts["excluded"] == 1
    assert second.counts["per_task"][task] == {**first.counts["per_task"][task], "kept": first.counts["per_task"][task]["kept"] - 1,
                                               "dropped": first.counts["per_task"][task]["dropped"] + 1, "excluded": 1}
    assert set(dict(snapshots.kept(lake, second))) == set(first_ids) - {victim}
    assert snapshots.diff(lake, first, second)[task]["removed"] == 1
    # the snapshot made before keeps its samples (time travel), its hash still checks
    assert dict(snapshots.kept(lake, first)) == first_ids

    # exports: the export job (in process, every unit) for the new snapshot, write_export for the old one
    out = tmp_path / "exports" / "after"
    job = _run_job("export", ExportJob(snapshot="after", formats=list(FORMATS), out=str(out)).params())
    assert job.status == "succeeded", job.error
    for fmt in FORMATS:
        ids = _ids_from_records(out / fmt)
        assert victim not in ids and len(ids) == second.counts["kept"], fmt
    samples, sources = snapshots.export_samples(lake, first, s.blob_path)
    write_export(tmp_path / "old" / "llava", "llava", samples, sources=sources, meta=snapshots.manifest_meta(first))
    assert victim in _ids_from_records(tmp_path / "old" / "llava")

    assert exclusions.restore(lake, [victim], by="tester") == 1
    third = snapshots.create(lake, engine, name="restored", filter_name="f", config=_config(), created_by="tester")
    assert third.counts["kept"] == first.counts["kept"] and third.counts["excluded"] == 0
    assert set(dict(snapshots.kept(lake, third))) == set(first_ids)
    assert dict(snapshots.kept(lake, second)) == {k: v for k, v in first_ids.items() if k != victim}  # still without it


def test_snapshot_rename_moves_the_export_folder_and_refuses_taken_or_bad_names(scored, tmp_path):
    lake = scored
    s = load_settings()
    engine = write_engine(s.app_url)
    a = snapshots.create(lake, engine, name="a", filter_name=None, config=_config(), created_by="tester")
    snapshots.create(lake, engine, name="b", filter_name=None, config=_config(), created_by="tester")
    training.create_run(engine, name="r1", snapshot="a", base_model="m", config={}, out_dir=str(tmp_path / "r1"), created_by="tester")
    root = tmp_path / "exports"
    (root / "a" / "llava").mkdir(parents=True)
    (root / "a" / "llava" / "manifest.json").write_text('{"snapshot": "a"}')

    with pytest.raises(snapshots.SnapshotError, match="'b' exists already"):
        snapshots.rename(engine, "a", "b", exports_root=root)
    for bad, message in (("", "give the snapshot a name"), ("x/y", "no slashes"), ("..", "no leading dot"), ("x" * 121, "at most 120")):
        with pytest.raises(snapshots.SnapshotError, match=message):
            snapshots.rename(engine, "a", bad, exports_root=root)
        with pytest.raises(snapshots.SnapshotError, match=message):
            snapshots.create(lake, engine, name=bad, filter_name=None, config=_config(), created_by="tester")
    with pytest.raises(snapshots.SnapshotError, match="no snapshot 'zz'"):
        snapshots.rename(engine, "zz", "c")
    (root / "taken").mkdir()
    with pytest.raises(snapshots.SnapshotError, match="taken exists already"):
        snapshots.rename(engine, "a", "taken", exports_root=root)
    assert (root / "a" / "llava").is_dir() and snapshots.get(engine, "a").id == a.id  # refused: nothing moved

    renamed = snapshots.rename(engine, "a", "  a-final ", exports_root=root)
    assert renamed.name == "a-final" and renamed.id == a.id and renamed.lake_version == a.lake_version and renamed.counts == a.counts
    assert not (root / "a").exists() and json.loads((root / "a-final" / "llava" / "manifest.json").read_text()) == {"snapshot": "a"}
    assert training.get_run(engine, "r1").snapshot == "a-final"
    assert [x.name for x in snapshots.list_all(engine)] == ["a-final", "b"]
    assert len(snapshots.kept(lake, renamed)) == a.counts["kept"]
    assert snapshots.rename(engine, "b", "b-2").name == "b-2"  # no exports root: the records only


def test_samples_and_snapshot_rename_from_the_command_line(scored, cli, home):
    lake = scored
    run = cli
    ids = [r[0] for r in lake.fetchall("SELECT DISTINCT sample_id FROM samples ORDER BY 1 LIMIT 2")]
    assert "no sample is excluded" in run("samples", "excluded", check=True).stdout
    missing = run("samples", "exclude", ids[0])
    assert missing.returncode == 2 and "--reason" in missing.stderr
    unknown = run("samples", "exclude", "nope", "--reason", "x")
    assert unknown.returncode == 2 and "no sample with id nope" in unknown.stderr and exclusions.count(lake) == 0
    out = run("samples", "exclude", *ids, "--reason", "text on the box is unreadable", check=True).stdout
    assert "excluded 2 sample(s)" in out
    again = run("samples", "exclude", ids[0], "--reason", "x", check=True).stdout
    assert "excluded 0 sample(s); 1 already excluded" in again
    listing = run("samples", "excluded", check=True).stdout
    assert all(i in listing for i in ids) and "text on the box is unreadable" in listing and "tester" in listing  # VITPRO_USER
    assert "2 excluded in all" in listing
    assert {r["by"] for r in exclusions.list_excluded(lake)} == {"tester"}
    assert "restored 1 sample(s)" in run("samples", "restore", ids[0], check=True).stdout
    assert _excluded_ids(lake) == {ids[1]}

    engine = write_engine(load_settings().app_url)
    snapshots.create(lake, engine, name="s1", filter_name=None, config=_config(), created_by="tester")
    (home / "exports" / "s1" / "parquet").mkdir(parents=True)
    out = run("snapshot", "rename", "s1", "s-final", check=True).stdout
    assert "snapshot 's1' is now 's-final'" in out and (home / "exports" / "s-final" / "parquet").is_dir()
    taken = run("snapshot", "rename", "s-final", "s-final ")
    assert taken.returncode == 0  # the same name: nothing to do
    bad = run("snapshot", "rename", "s-final", "a/b")
    assert bad.returncode == 2 and "no slashes" in bad.stderr
    assert "s-final" in run("snapshot", "list", check=True).stdout


def test_samples_exclude_a_whole_query_from_the_command_line(scored, cli):
    """`vitpro samples exclude --where COND` and `--filter NAME --dropped`: the count is said and confirmed
    first; what is excluded is exactly what the filter engine selects."""
    lake = scored
    task = lake.scalar("SELECT task FROM samples GROUP BY task ORDER BY count(*) DESC LIMIT 1")
    cond = FilterConfig([Condition.parse(f"task in {task}"), Condition.parse("vis_attn < p30")])
    expected = set(stats_for(lake, cond).kept_ids(cond))
    assert 0 < len(expected)
    dry = cli("samples", "exclude", "--where", f"task in {task}", "--where", "vis_attn < p30", "--reason", "r", "--dry-run", check=True).stdout
    assert f"{len(expected):,} sample(s) matching task in {task} and vis_attn < p30" in dry and exclusions.count(lake) == 0
    declined = cli("samples", "exclude", "--where", f"task in {task}", "--where", "vis_attn < p30", "--reason", "r", input="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stdout + declined.stderr and exclusions.count(lake) == 0
    done = cli("samples", "exclude", "--where", f"task in {task}", "--where", "vis_attn < p30", "--reason", "weak grounding", input="y\n", check=True)
    assert f"excluded {len(expected):,} sample(s)" in done.stdout and _excluded_ids(lake) == expected
    # a saved filter's dropped samples (those excluded already are left out of the count)
    saved_filters.save(write_engine(load_settings().app_url), "cut", _config().to_dict(), "tester")
    config = _config()
    dropped = {r[0] for r in lake.fetchall(f"SELECT sample_id FROM ({stats_for(lake, config).kept_sql(config)}) WHERE NOT keep")} - expected
    out = cli("samples", "exclude", "--filter", "cut", "--dropped", "--reason", "below the cut", "--yes", check=True).stdout
    assert f"{len(dropped):,} sample(s) dropped by filter 'cut' (excluded ones aside)" in out and _excluded_ids(lake) == expected | dropped
    assert {r["reason"] for r in exclusions.list_excluded(lake, limit=10_000)} == {"weak grounding", "below the cut"}
    for args, message in ((["--dropped", "--reason", "x"], "--dropped goes with --filter"), (["--reason", "x"], "name the samples"),
                          (["abc", "--where", "task in x", "--reason", "x"], "not both"), (["--where", "colour >= 3", "--reason", "x"], "colour")):
        bad = cli("samples", "exclude", *args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
