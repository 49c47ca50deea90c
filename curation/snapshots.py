"""Dataset snapshots: a saved filter applied to one DuckLake version, frozen, compared and shaped for export.

The record (db.app.snapshots) keeps the version, the filter with its models resolved, the counts, the model
and prompt ids and a hash of the kept sample ids. The samples themselves are never copied: DuckLake's
time travel (``AT (VERSION => n)``) gives the same rows forever, so an export made next year is the
export made today, byte for byte. The hash catches the one way that could break (expired history).

Which samples a snapshot holds is listed once, when it is made (db.lake.snapshot_members): every reader
(:func:`members_sql`, :func:`member_ids`, and through them :func:`kept`, :func:`diff`,
:func:`export_samples`, :func:`snapshot_rows`, :func:`eval_rows`) joins that list instead of rebuilding
the filter's stats at the snapshot's version. A snapshot made before lists existed gets its list from
that rebuild, once: on its first read, or for all of them with :func:`backfill_members`
(`vitpro snapshot backfill`).

Exclusions (db/lake/exclusions.py) live in the lake too, so a snapshot leaves out the samples excluded at its
version, and only those: a sample excluded later is still in it (make a new snapshot to drop it).

The records' own functions (get, list_all, rename, check_name) are db.app.snapshots', named here too so a
caller needs one module.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import duckdb
from sqlalchemy import Engine

from db.app.models import Snapshot
from db.app.snapshots import NAME_MAX, SnapshotError, check_name, discard, get, insert, list_all, refuse_taken, rename  # noqa: F401 (one module for callers)
from db.app.training import product_fields
from db.lake import snapshot_members as lists
from db.lake.connection import Lake, at_version
from db.reads import samples_view
from db.storage.blobs import as_blobs

from .exports import ExportSample
from .filters import FilterConfig, FilterError, resolve, stats_for


def _digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass
class Frozen:
    """What a filter keeps at one version: ids (sorted), counts, models and prompts, and each kept
    sample's task (``tasks[k]`` is ``ids[k]``'s: what the member list stores beside the id)."""

    version: int
    config: FilterConfig
    ids: list[str]
    counts: dict[str, Any]
    model_ids: list[dict[str, str]]
    prompt_versions: list[dict[str, Any]]
    tasks: list[str] = field(default_factory=list)


def _kept_at(lake: Lake, table, config: FilterConfig) -> tuple[list[str], list[str]]:
    """(ids, tasks) a stats table keeps, sorted by id: the ids exactly as the record's hash was taken of them."""
    kept = lake.fetch_arrow(f"SELECT sample_id, task FROM ({table.kept_sql(config)}) WHERE keep ORDER BY sample_id")
    return kept.column("sample_id").to_pylist(), kept.column("task").to_pylist()


def freeze(lake: Lake, config: FilterConfig, version: int | None = None) -> Frozen:
    version = lake.current_version() if version is None else version
    config = resolve(lake, config, version)  # the record says which model each stat came from
    table = stats_for(lake, config, version=version)
    report = table.report(config)
    kept_sql = table.kept_sql(config)
    ids, tasks = _kept_at(lake, table, config)
    prompts = lake.fetchall(
        f"SELECT s.backend, s.model_id, s.prompt_version, count(*) FROM {at_version('samples', version)} s "
        f"JOIN ({kept_sql}) k USING (sample_id) WHERE k.keep GROUP BY ALL ORDER BY ALL"
    )
    counts = {
        "kept": report.kept,
        "dropped": report.dropped,  # excluded samples included, so kept + dropped is every sample
        "excluded": report.excluded,
        "per_task": {t: {"kept": k, "dropped": d, "excluded": report.per_task_excluded.get(t, 0)} for t, k, d in report.per_task},
        "per_category": {c: {"kept": k, "dropped": d} for c, k, d in report.per_category},
        "thresholds": report.thresholds,
        "kept_sha256": _digest(ids),
    }
    models = [{"metric": c.metric, "model_id": c.model_id, "segment": c.segment} for c in config.metrics()]
    prompt_rows = [{"backend": b, "model_id": m, "prompt_version": p, "samples": int(n)} for b, m, p, n in prompts]
    return Frozen(version, config, ids, counts, models, prompt_rows, tasks)


def create(lake: Lake, engine: Engine, *, name: str, filter_name: str | None, config: FilterConfig, created_by: str) -> Snapshot:
    name = check_name(name)
    refuse_taken(engine, name)  # before freezing, which reads the whole filter's stats
    frozen = freeze(lake, config)
    if not frozen.ids:
        raise SnapshotError("the filter keeps no samples: nothing to snapshot (see `vitpro filter show`)")
    row = Snapshot(
        name=name, filter_name=filter_name, filter_config=frozen.config.to_dict(), lake_version=frozen.version, counts=frozen.counts,
        model_ids=frozen.model_ids, prompt_versions=frozen.prompt_versions, created_by=created_by, created_at=datetime.now(timezone.utc),
    )
    row = insert(engine, row)
    # The record first, then its member list: the list is keyed by the record's id, which only the insert
    # gives. Should the list's write fail, the record is deleted again, so a failed create leaves neither
    # (the list's own write is one transaction: all of it or nothing). A process killed between the two
    # leaves a record without a list, which is a snapshot made before lists existed: its first read
    # rebuilds the list from the filter (_listed), so nothing is lost, it is only slower once.
    try:
        _write_list(lake, row, frozen.ids, frozen.tasks)
    except BaseException:
        discard(engine, row.id)
        raise
    return row


# ---- the member list ----------------------------------------------------------------------------------
# Checked against the record's kept_sha256 over every id when written (the ids are in memory then, and
# wrong ids must never be listed); a read checks only the list's row: that it exists (the list is whole:
# same transaction) and names this record's hash and version. Hashing a million ids on every read would
# cost a good part of what the list saves, and a stored list cannot drift from what was checked: only
# create and backfill write one, each after the full check, in one transaction with its row.
def _no_longer(snap: Snapshot) -> SnapshotError:
    return SnapshotError(
        f"snapshot {snap.name!r} no longer gives the samples it was made of (was the DuckLake history at version "
        f"{snap.lake_version} expired or compacted away?)"
    )


def _write_list(lake: Lake, snap: Snapshot, ids: list[str], tasks: list[str]) -> int:
    if _digest(ids) != snap.counts.get("kept_sha256"):
        raise _no_longer(snap)
    return lists.write(lake, snap.id, snap.lake_version, snap.counts["kept_sha256"], ids, tasks)


def _rebuild(lake: Lake, snap: Snapshot) -> tuple[list[str], list[str]]:
    """The snapshot's (ids, tasks) from its filter at its version (what every read did before lists; the
    hash is checked by :func:`_write_list`). History expired since gives the SnapshotError that says so,
    not DuckDB's."""
    config = FilterConfig.from_dict(snap.filter_config)
    try:
        ids, tasks = _kept_at(lake, stats_for(lake, config, version=snap.lake_version), config)
    except (duckdb.Error, FilterError) as exc:  # "No snapshot found at version n", or its scores gone with it
        raise _no_longer(snap) from exc
    return ids, tasks


def _is_listed(lake: Lake, snap: Snapshot) -> bool:
    found = lists.listed(lake, snap.id)
    return found is not None and (found.kept_sha256, found.lake_version) == (snap.counts.get("kept_sha256"), snap.lake_version)


def backfill_one(lake: Lake, snap: Snapshot) -> int:
    """Give ``snap`` its member list from its filter (see :func:`_rebuild`), whatever it has now; returns the
    samples listed. A list is only ever replaced after the rebuilt ids passed the hash check."""
    return _write_list(lake, snap, *_rebuild(lake, snap))


def _listed(lake: Lake, snap: Snapshot) -> None:
    """Make sure ``snap`` has its list: the lazy backfill, so a store from before lists just works."""
    if not _is_listed(lake, snap):
        backfill_one(lake, snap)


def backfill_members(lake: Lake, engine: Engine, *, progress: Callable[[Snapshot, int | SnapshotError], None] | None = None) -> dict[str, int]:
    """List the members of every snapshot that has no list yet (made before lists existed, or whose create
    was killed before writing one), each rebuilt from its filter once; ``progress(snap, samples listed or
    the error)`` after each. Returns {name: samples listed} of those written now. A snapshot that cannot
    be rebuilt (history expired) does not stop the others; they are named in one SnapshotError at the end."""
    done: dict[str, int] = {}
    failed: list[str] = []
    for snap in list_all(engine):
        if _is_listed(lake, snap):
            continue
        try:
            done[snap.name] = backfill_one(lake, snap)
        except SnapshotError as exc:
            failed.append(snap.name)
            if progress:
                progress(snap, exc)
            continue
        if progress:
            progress(snap, done[snap.name])
    if failed:
        raise SnapshotError(f"{len(failed)} snapshot(s) could not be listed (their DuckLake history is gone?): {', '.join(failed)}")
    return done


def members_sql(lake: Lake, snap: Snapshot) -> str:
    """SQL of (sample_id, task) of the snapshot's samples, one row per sample: what to join against. The
    list is backfilled first where the snapshot has none."""
    _listed(lake, snap)
    return lists.members_sql(snap.id)


def member_ids(lake: Lake, snap: Snapshot) -> list[str]:
    """The snapshot's sample ids, sorted."""
    return lake.fetch_arrow(f"SELECT sample_id FROM ({members_sql(lake, snap)}) ORDER BY sample_id").column(0).to_pylist()


def kept(lake: Lake, snap: Snapshot) -> list[tuple[str, str]]:
    """(sample_id, task) of the snapshot's samples, sorted by id (from its member list)."""
    rows = lake.fetch_arrow(f"SELECT sample_id, task FROM ({members_sql(lake, snap)}) ORDER BY sample_id")
    return list(zip(rows.column("sample_id").to_pylist(), rows.column("task").to_pylist()))  # columns, not a tuple per row from DuckDB


def diff(lake: Lake, a: Snapshot, b: Snapshot) -> dict[str, dict[str, int]]:
    """Per task: samples in b and not in a (added), in a and not in b (removed), in both (unchanged; under
    b's task). Set operations in SQL over the two member lists: nothing per sample reaches Python."""
    left, right = members_sql(lake, a), members_sql(lake, b)
    rows = lake.fetchall(
        f"SELECT coalesce(r.task, l.task) AS task, count(*) FILTER (WHERE l.sample_id IS NULL), "
        f"count(*) FILTER (WHERE r.sample_id IS NULL), count(*) FILTER (WHERE l.sample_id IS NOT NULL AND r.sample_id IS NOT NULL) "
        f"FROM ({left}) l FULL OUTER JOIN ({right}) r ON l.sample_id = r.sample_id GROUP BY 1 ORDER BY 1"
    )
    return dict(sorted((task, {"added": int(added), "removed": int(removed), "unchanged": int(same)}) for task, added, removed, same in rows))


def export_samples(lake: Lake, snap: Snapshot, blob_root, *, resolve: bool = True) -> tuple[list[ExportSample], dict[str, Any]]:
    """The snapshot's samples as the exporter wants them, read at the snapshot's version, and the blob
    file behind each image path (``images/<blob path>``: content-addressed, so stable). ``resolve=False``
    gives the blob paths themselves (an export from S3 fetches them into its own folder)."""
    rows = samples_view.samples_with_images(lake, member_ids(lake, snap), version=snap.lake_version)
    blobs = as_blobs(blob_root)  # with blobs in S3, each is read into this machine's cache
    samples: list[ExportSample] = []
    sources: dict[str, Path] = {}
    for r in rows:
        rels = tuple(f"images/{b}" for b in r["blob_paths"])
        for rel, blob in zip(rels, r["blob_paths"]):
            sources[rel] = blobs.local(blob, missing_ok=True) if resolve else blob  # a missing one is reported by the export with the others
        samples.append(ExportSample(r["sample_id"], r["task"], r["question"], r["answer"], rels, tuple(r["ocr_texts"]), r["category"],
                                    r["answer_format"], r["label"]))
    return samples, sources


def manifest_meta(snap: Snapshot) -> dict[str, Any]:
    """What the export's manifest says about where it came from (no export time: same snapshot, same bytes)."""
    return {
        "snapshot": snap.name,
        "snapshot_created_by": snap.created_by,
        "snapshot_created_at": snap.created_at.astimezone(timezone.utc).isoformat() if snap.created_at.tzinfo else snap.created_at.isoformat() + "+00:00",
        "lake_version": snap.lake_version,
        "filter": {"name": snap.filter_name, "config": snap.filter_config, "thresholds": snap.counts.get("thresholds", {})},
        "filter_counts": {"kept": snap.counts.get("kept"), "dropped": snap.counts.get("dropped")},
        "models": snap.model_ids,
        "prompts": snap.prompt_versions,
        "kept_sha256": snap.counts.get("kept_sha256"),
    }


def snapshot_rows(lake: Lake, engine: Engine, snapshot: str) -> list[dict[str, Any]]:
    """Every sample of a snapshot with its images, OCR text and product, read at the snapshot's version."""
    snap = get(engine, snapshot)
    return samples_view.samples_with_images(lake, member_ids(lake, snap), version=snap.lake_version)


def eval_rows(lake: Lake, engine: Engine, snapshot: str) -> list[dict[str, Any]]:
    """:func:`snapshot_rows` with the product each sample is about, for the evaluation's benchmarks: its
    ``item_id``, ``title``, ``brand`` and ``attributes`` (a complaint's from the catalog product it refers
    to, its own attributes on top), read at the snapshot's version."""
    snap = get(engine, snapshot)
    rows = snapshot_rows(lake, engine, snapshot)
    fields = product_fields(lake, [r["sample_id"] for r in rows], version=snap.lake_version)
    return [{**r, **fields.get(r["sample_id"], {})} for r in rows]
