"""Dataset snapshots: a saved filter applied to one DuckLake version.

The record (app tables) keeps the version, the filter with its models resolved, the counts, the model
and prompt ids and a hash of the kept sample ids. The samples themselves are never copied: DuckLake's
time travel (``AT (VERSION => n)``) gives the same rows forever, so an export made next year is the
export made today, byte for byte. The hash catches the one way that could break (expired history).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from curation.exports import ExportSample
from curation.filters import FilterConfig, stats_for

from .app_models import Snapshot
from .lake import Lake


class SnapshotError(ValueError):
    pass


def _digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _at(table: str, version: int) -> str:
    return f"(SELECT * FROM {table} AT (VERSION => {int(version)}))"  # aliasable (see curation/filters.py)


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
    table = stats_for(lake, config, version=version)  # resolves each metric's model into config
    report = table.report(config)
    kept_sql = table.kept_sql(config)
    ids = table.kept_ids(config)
    prompts = lake.fetchall(
        f"SELECT s.backend, s.model_id, s.prompt_version, count(*) FROM {_at('samples', version)} s "
        f"JOIN ({kept_sql}) k USING (sample_id) WHERE k.keep GROUP BY ALL ORDER BY ALL"
    )
    counts = {
        "kept": report.kept,
        "dropped": report.dropped,
        "per_task": {t: {"kept": k, "dropped": d} for t, k, d in report.per_task},
        "per_category": {c: {"kept": k, "dropped": d} for c, k, d in report.per_category},
        "thresholds": report.thresholds,
        "kept_sha256": _digest(ids),
    }
    models = [{"metric": c.metric, "model_id": c.model_id, "segment": c.segment} for c in config.metrics()]
    prompt_rows = [{"backend": b, "model_id": m, "prompt_version": p, "samples": int(n)} for b, m, p, n in prompts]
    return Frozen(version, config, ids, counts, models, prompt_rows)


def create(lake: Lake, engine: Engine, *, name: str, filter_name: str | None, config: FilterConfig, created_by: str) -> Snapshot:
    with Session(engine) as s:
        if s.scalar(select(Snapshot.id).where(Snapshot.name == name)) is not None:
            raise SnapshotError(f"a snapshot named {name!r} exists already (snapshots are never changed; pick a new name)")
    frozen = freeze(lake, config)
    if not frozen.ids:
        raise SnapshotError("the filter keeps no samples: nothing to snapshot (see `vitpro filter show`)")
    row = Snapshot(
        name=name, filter_name=filter_name, filter_config=frozen.config.to_dict(), lake_version=frozen.version, counts=frozen.counts,
        model_ids=frozen.model_ids, prompt_versions=frozen.prompt_versions, created_by=created_by, created_at=datetime.now(timezone.utc),
    )
    with Session(engine) as s, s.begin():
        s.add(row)
        s.flush()
        s.expunge(row)
    return row


def get(engine: Engine, name: str) -> Snapshot:
    with Session(engine) as s:
        row = s.scalar(select(Snapshot).where(Snapshot.name == name))
        if row is None:
            known = ", ".join(s.scalars(select(Snapshot.name).order_by(Snapshot.created_at))) or "none yet"
            raise SnapshotError(f"no snapshot {name!r} (snapshots: {known})")
        s.expunge(row)
        return row


def list_all(engine: Engine) -> list[Snapshot]:
    with Session(engine) as s:
        rows = list(s.scalars(select(Snapshot).order_by(Snapshot.created_at)))
        s.expunge_all()
        return rows


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


def diff(lake: Lake, a: Snapshot, b: Snapshot) -> dict[str, dict[str, int]]:
    """Per task: samples in b and not in a (added), in a and not in b (removed), in both (kept)."""
    left, right = dict(kept(lake, a)), dict(kept(lake, b))
    out: dict[str, dict[str, int]] = {}
    for sid, task in right.items():
        bucket = out.setdefault(task, {"added": 0, "removed": 0, "unchanged": 0})
        bucket["unchanged" if sid in left else "added"] += 1
    for sid, task in left.items():
        if sid not in right:
            out.setdefault(task, {"added": 0, "removed": 0, "unchanged": 0})["removed"] += 1
    return dict(sorted(out.items()))


def export_samples(lake: Lake, snap: Snapshot, blob_root: Path) -> tuple[list[ExportSample], dict[str, Path]]:
    """The snapshot's samples as the exporter wants them, read at the snapshot's version, and the blob
    file behind each image path (``images/<blob path>``: content-addressed, so stable)."""
    ids = [sid for sid, _ in kept(lake, snap)]
    v = snap.lake_version
    probe = pa.table({"sample_id": pa.array(ids, pa.string())})
    with lake._lock:
        lake.con.register("_export_ids", probe)
        try:
            rows = lake.con.execute(
                f"WITH x AS (SELECT s.* FROM {_at('samples', v)} s SEMI JOIN _export_ids USING (sample_id) "
                "  QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1), "
                f"products AS (SELECT external_id, min(category) AS category FROM {_at('items', v)} WHERE kind = 'catalog' GROUP BY external_id), "
                "pos AS (SELECT x.sample_id, u.image_id, u.k FROM x, "
                "  LATERAL (SELECT unnest(CAST(x.image_ids AS VARCHAR[])) AS image_id, generate_subscripts(CAST(x.image_ids AS VARCHAR[]), 1) AS k) u), "
                f"imgs AS (SELECT image_id, min(blob_path) AS blob_path, min(sha256) AS sha256 FROM {_at('images', v)} GROUP BY image_id), "
                f"texts AS (SELECT sha256, min(text) AS text FROM {_at('ocr', v)} WHERE text IS NOT NULL GROUP BY sha256) "
                "SELECT x.sample_id, any_value(x.task), any_value(x.question), any_value(x.answer), any_value(x.answer_format), any_value(x.label), "
                "  any_value(coalesce(i.category, p.category)), "
                "  list(im.blob_path ORDER BY pos.k) FILTER (WHERE im.blob_path IS NOT NULL), "
                "  list(coalesce(t.text, '') ORDER BY pos.k) FILTER (WHERE im.blob_path IS NOT NULL) "
                f"FROM x JOIN {_at('items', v)} i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref "
                "LEFT JOIN pos USING (sample_id) LEFT JOIN imgs im ON im.image_id = pos.image_id LEFT JOIN texts t ON t.sha256 = im.sha256 "
                "GROUP BY x.sample_id ORDER BY x.sample_id"
            ).fetchall()
        finally:
            lake.con.unregister("_export_ids")
    samples: list[ExportSample] = []
    sources: dict[str, Path] = {}
    for sid, task, question, answer, answer_format, label, category, blobs, texts in rows:
        rels = tuple(f"images/{b}" for b in (blobs or []))
        for rel, blob in zip(rels, blobs or []):
            sources[rel] = blob_root / blob
        samples.append(ExportSample(sid, task, question, answer, rels, tuple(texts or []), category, answer_format, label))
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
