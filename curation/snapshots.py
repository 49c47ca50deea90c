"""Dataset snapshots: a saved filter applied to one DuckLake version, frozen, compared and shaped for export.

The record (db.snapshots) keeps the version, the filter with its models resolved, the counts, the model
and prompt ids and a hash of the kept sample ids. The samples themselves are never copied: DuckLake's
time travel (``AT (VERSION => n)``) gives the same rows forever, so an export made next year is the
export made today, byte for byte. The hash catches the one way that could break (expired history).

Exclusions (db/exclusions.py) live in the lake too, so a snapshot leaves out the samples excluded at its
version, and only those: a sample excluded later is still in it (make a new snapshot to drop it).

The records' own functions (get, list_all, rename, check_name) are db.snapshots', named here too so a
caller needs one module.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from db import samples_view
from db.app_models import Snapshot
from db.blobs import as_blobs
from db.lake import Lake, at_version
from db.snapshots import NAME_MAX, SnapshotError, check_name, get, insert, list_all, refuse_taken, rename  # noqa: F401 (one module for callers)
from db.training import product_fields

from .exports import ExportSample
from .filters import FilterConfig, resolve, stats_for


def _digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass
class Frozen:
    """What a filter keeps at one version: ids (sorted), counts, models and prompts."""

    version: int
    config: FilterConfig
    ids: list[str]
    counts: dict[str, Any]
    model_ids: list[dict[str, str]]
    prompt_versions: list[dict[str, Any]]


def freeze(lake: Lake, config: FilterConfig, version: int | None = None) -> Frozen:
    version = lake.current_version() if version is None else version
    config = resolve(lake, config, version)  # the record says which model each stat came from
    table = stats_for(lake, config, version=version)
    report = table.report(config)
    kept_sql = table.kept_sql(config)
    ids = table.kept_ids(config)
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
    return Frozen(version, config, ids, counts, models, prompt_rows)


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
    return insert(engine, row)




def kept(lake: Lake, snap: Snapshot) -> list[tuple[str, str]]:
    """(sample_id, task) of the snapshot's samples, sorted by id; checked against the recorded hash."""
    config = FilterConfig.from_dict(snap.filter_config)
    table = stats_for(lake, config, version=snap.lake_version)
    rows = lake.fetchall(f"SELECT sample_id, task FROM ({table.kept_sql(config)}) WHERE keep ORDER BY sample_id")
    if _digest([r[0] for r in rows]) != snap.counts.get("kept_sha256"):
        raise SnapshotError(
            f"snapshot {snap.name!r} no longer gives the samples it was made of (was the DuckLake history at version "
            f"{snap.lake_version} expired or compacted away?)"
        )
    return [(r[0], r[1]) for r in rows]


def _kept_sql(lake: Lake, snap: Snapshot) -> str:
    """SQL of (sample_id, task) of the snapshot's samples, one row per sample, after checking in SQL that they
    still hash to the recorded digest (the same check as :func:`kept`, without a million ids in Python)."""
    config = FilterConfig.from_dict(snap.filter_config)
    table = stats_for(lake, config, version=snap.lake_version)
    kept_sql = table.kept_sql(config)
    # the same digest as _digest(): sha256 of the sorted ids joined by newlines ('' for none)
    found = lake.scalar(f"SELECT sha256(coalesce(string_agg(sample_id, chr(10) ORDER BY sample_id), '')) FROM ({kept_sql}) WHERE keep")
    if found != snap.counts.get("kept_sha256"):
        raise SnapshotError(
            f"snapshot {snap.name!r} no longer gives the samples it was made of (was the DuckLake history at version "
            f"{snap.lake_version} expired or compacted away?)"
        )
    return f"SELECT sample_id, any_value(task) AS task FROM ({kept_sql}) WHERE keep GROUP BY sample_id"


def diff(lake: Lake, a: Snapshot, b: Snapshot) -> dict[str, dict[str, int]]:
    """Per task: samples in b and not in a (added), in a and not in b (removed), in both (unchanged; under
    b's task). Set operations in SQL over the kept ids at each snapshot's version: nothing per sample
    reaches Python."""
    left, right = _kept_sql(lake, a), _kept_sql(lake, b)
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
    rows = samples_view.samples_with_images(lake, [sid for sid, _ in kept(lake, snap)], version=snap.lake_version)
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
    ids = [sid for sid, _ in kept(lake, snap)]
    return samples_view.samples_with_images(lake, ids, version=snap.lake_version)


def eval_rows(lake: Lake, engine: Engine, snapshot: str) -> list[dict[str, Any]]:
    """:func:`snapshot_rows` with the product each sample is about, for the evaluation's benchmarks: its
    ``item_id``, ``title``, ``brand`` and ``attributes`` (a complaint's from the catalog product it refers
    to, its own attributes on top), read at the snapshot's version."""
    snap = get(engine, snapshot)
    rows = snapshot_rows(lake, engine, snapshot)
    fields = product_fields(lake, [r["sample_id"] for r in rows], version=snap.lake_version)
    return [{**r, **fields.get(r["sample_id"], {})} for r in rows]
