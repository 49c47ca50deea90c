"""Dataset snapshots: a saved filter applied to one DuckLake version.

The record (app tables) keeps the version, the filter with its models resolved, the counts, the model
and prompt ids and a hash of the kept sample ids. The samples themselves are never copied: DuckLake's
time travel (``AT (VERSION => n)``) gives the same rows forever, so an export made next year is the
export made today, byte for byte. The hash catches the one way that could break (expired history).

Exclusions (db/exclusions.py) live in the lake too, so a snapshot leaves out the samples excluded at its
version, and only those: a sample excluded later is still in it (make a new snapshot to drop it).

A snapshot's name can be changed (:func:`rename`); its version, filter and counts never are.
"""
from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from curation.exports import ExportSample
from curation.filters import FilterConfig, stats_for

from . import batches
from .app_models import EvalRun, Snapshot, TrainRun
from .lake import Lake, at_version
from .named_rows import get_named, insert_named, list_named, name_taken


class SnapshotError(ValueError):
    pass


NAME_MAX = 120  # the column's width
# A name is also a folder ($VITPRO_HOME/exports/<name>) and a LLaMA-Factory dataset name: no path
# separators, no leading dot, no control characters.
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    """The name stripped, or a SnapshotError saying what is wrong with it (create and rename alike)."""
    name = (name or "").strip()
    if not name:
        raise SnapshotError("give the snapshot a name")
    if len(name) > NAME_MAX:
        raise SnapshotError(f"a snapshot name has at most {NAME_MAX} characters ({len(name)} given)")
    if name.startswith(".") or _BAD_NAME.search(name):
        raise SnapshotError(f"{name!r} cannot name a snapshot: no slashes, no leading dot, no control characters (it also names its export folder)")
    return name


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
    table = stats_for(lake, config, version=version)  # resolves each metric's model into config
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

    def exists() -> SnapshotError:
        return SnapshotError(f"a snapshot named {name!r} exists already (snapshots are never changed; pick a new name)")

    if name_taken(engine, Snapshot, name):  # before freezing, which reads the whole filter's stats
        raise exists()
    frozen = freeze(lake, config)
    if not frozen.ids:
        raise SnapshotError("the filter keeps no samples: nothing to snapshot (see `vitpro filter show`)")
    row = Snapshot(
        name=name, filter_name=filter_name, filter_config=frozen.config.to_dict(), lake_version=frozen.version, counts=frozen.counts,
        model_ids=frozen.model_ids, prompt_versions=frozen.prompt_versions, created_by=created_by, created_at=datetime.now(timezone.utc),
    )
    return insert_named(engine, row, exists)


def rename(engine: Engine, old: str, new: str, *, exports_root: Path | None = None) -> Snapshot:
    """Give snapshot ``old`` the name ``new`` (same rules as :func:`create`; a taken name is refused).

    The training and evaluation runs that name the snapshot follow it (same transaction). With
    ``exports_root`` ($VITPRO_HOME/exports), the export folder ``exports_root/old`` becomes
    ``exports_root/new``, so the page and `vitpro snapshot export` find it under the new name. The
    manifests inside keep the name the snapshot had when they were written: they record that export
    byte for byte, and its lake version and kept_sha256 still identify the data. A folder already at
    the new name is refused before anything changes.
    """
    new = check_name(new)
    snap = get(engine, old)
    if new == snap.name:
        return snap
    taken = SnapshotError(f"a snapshot named {new!r} exists already; pick another name")
    if name_taken(engine, Snapshot, new):
        raise taken
    src = dst = None
    if exports_root is not None:
        src, dst = Path(exports_root) / snap.name, Path(exports_root) / new
        if dst.exists():
            raise SnapshotError(f"{dst} exists already (an export of another snapshot?): move it away first")
    with Session(engine) as s, s.begin():
        if s.scalar(select(Snapshot.id).where(Snapshot.name == new)) is not None:  # taken meanwhile
            raise taken
        s.execute(update(Snapshot).where(Snapshot.id == snap.id).values(name=new))
        s.execute(update(TrainRun).where(TrainRun.snapshot == snap.name).values(snapshot=new))
        s.execute(update(EvalRun).where(EvalRun.snapshot == snap.name).values(snapshot=new))
        # the folder last, still inside the transaction: if it cannot be moved, the rename is rolled back
        if src is not None and src.exists():
            shutil.move(str(src), str(dst))
    return get(engine, new)


def get(engine: Engine, name: str) -> Snapshot:
    return get_named(engine, Snapshot, name, Snapshot.created_at, lambda known: SnapshotError(f"no snapshot {name!r} (snapshots: {known})"))


def list_all(engine: Engine) -> list[Snapshot]:
    return list_named(engine, Snapshot, Snapshot.created_at)


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


def export_samples(lake: Lake, snap: Snapshot, blob_root: Path) -> tuple[list[ExportSample], dict[str, Path]]:
    """The snapshot's samples as the exporter wants them, read at the snapshot's version, and the blob
    file behind each image path (``images/<blob path>``: content-addressed, so stable)."""
    rows = batches.samples_with_images(lake, [sid for sid, _ in kept(lake, snap)], version=snap.lake_version)
    samples: list[ExportSample] = []
    sources: dict[str, Path] = {}
    for r in rows:
        rels = tuple(f"images/{b}" for b in r["blob_paths"])
        for rel, blob in zip(rels, r["blob_paths"]):
            sources[rel] = blob_root / blob
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
