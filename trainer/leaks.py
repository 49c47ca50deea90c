"""Leak reports of a snapshot: held-out samples whose photos near-duplicate training photos, and training photos
that near-duplicate the images of an external benchmark folder (``vitpro snapshot leaks``).

The split is the one training makes (trainer.snapshot_set / trainer.benchmarks: a hash of each sample's split
key, with the run's held-out share and seed): by near-duplicate group (the default since groups exist), or by
product alone (``by="product"``, how adapters trained before were split) to see what that split let through.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from curation.dup_keys import method_label
from curation.dup_splits import crossings, split_keys
from curation.near_dups import HashConfig, NearDupError, groups_by_hash, hash_file
from db.lake.connection import Lake

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class LeakError(ValueError):
    """A report that cannot be made as asked (no grouping yet, an unknown grouping, no such folder)."""


@dataclass(frozen=True)
class SplitSettings:
    holdout: float = 0.1  # trainer.config.TrainConfig's defaults: the split a run makes unless told otherwise
    seed: int = 0
    by: str = "dup_group"  # or "product": the split adapters trained before this existed were made with


def _grouping(lake: Lake, grouping: str | None) -> str:
    from db.reads.dup_reads import groupings

    made = groupings(lake)
    if not made:
        raise LeakError("no near-duplicate grouping yet: run `vitpro dedup images` first")
    if grouping is not None and grouping not in made:
        raise LeakError(f"no grouping {grouping!r}; the store has {', '.join(made)}")
    return grouping or made[0]


def _sides(lake: Lake, members: str, version: int, grouping: str, settings: SplitSettings) -> tuple[dict[str, bool], dict[str, list[int]]]:
    """Each member sample's side (True: held out) as training would split it, and its groups of two or more."""
    from db.reads.dup_reads import sample_groups
    from db.reads.training_sets import plan_rows
    from trainer.benchmarks import is_held_out

    cols = plan_rows(lake, members, version)
    products = {str(s): str(p if p is not None else s) for s, p in zip(cols["sample_id"], cols["product"])}
    groups = sample_groups(lake, members, grouping)
    keys = split_keys((s, p, groups.get(s, ())) for s, p in products.items()) if settings.by == "dup_group" else products
    return {s: is_held_out(keys[s], settings.holdout, settings.seed) for s in products}, groups


def _who(lake: Lake, sample_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each sample's item: its id, source name and external id."""
    if not sample_ids:
        return {}
    with lake.probe("_probe_leak_samples", "sample_id", sample_ids) as con:
        rows = con.execute(
            "SELECT DISTINCT s.sample_id, s.item_id, so.name, it.external_id FROM samples s SEMI JOIN _probe_leak_samples USING (sample_id) "
            "JOIN items it USING (item_id) LEFT JOIN sources so USING (source_id)").fetchall()
    return {s: {"item_id": i, "source": src, "external_id": ext} for s, i, src, ext in rows}


def _items(who: dict[str, dict[str, Any]], samples: list[str]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for s in samples:
        item = who.get(s)
        if item is not None:
            entry = seen.setdefault(item["item_id"], {**item, "samples": 0})
            entry["samples"] += 1
    return sorted(seen.values(), key=lambda x: (x["source"] or "", x["external_id"] or "", x["item_id"]))


def split_leaks(lake: Lake, engine, snapshot: str, *, settings: SplitSettings = SplitSettings(), grouping: str | None = None) -> dict[str, Any]:
    """The near-duplicate groups of a snapshot's members with samples on both sides of the split: for each, the
    held-out items and the training items (with how many of their samples). Empty when the split is by group."""
    from curation import snapshots

    grouping = _grouping(lake, grouping)
    snap = snapshots.get(engine, snapshot)
    sides, groups = _sides(lake, snapshots.members_sql(lake, snap), snap.lake_version, grouping, settings)
    crossing = crossings(sides, groups)
    who = _who(lake, sorted({s for parts in crossing.values() for side in parts.values() for s in side}))
    leaks = [{"group": g, "held_out": _items(who, parts["held_out"]), "training": _items(who, parts["training"])} for g, parts in crossing.items()]
    return {"snapshot": snapshot, "grouping": grouping, "split": settings.by, "holdout": settings.holdout, "seed": settings.seed,
            "held_out_samples": sum(sides.values()), "training_samples": len(sides) - sum(sides.values()),
            "held_out_samples_leaking": len({s for parts in crossing.values() for s in parts["held_out"]}), "leaks": leaks,
            "adapters": trained_adapters(engine, snapshot)}


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file under ``folder`` (by suffix), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise LeakError(f"{folder}: no such folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_leaks(lake: Lake, engine, snapshot: str, folder: str | os.PathLike, *, settings: SplitSettings = SplitSettings(),
                 grouping: str | None = None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The snapshot's training-side items whose photos near-duplicate an image of ``folder`` (an external
    benchmark), by the grouping's method and threshold; the folder's images that cannot be hashed are listed."""
    from curation import snapshots
    from db.reads.dup_reads import hashes_for, sample_images

    grouping = _grouping(lake, grouping)
    method, _, threshold = grouping.partition(":")
    snap = snapshots.get(engine, snapshot)
    members = snapshots.members_sql(lake, snap)
    sides, _ = _sides(lake, members, snap.lake_version, grouping, settings)
    training = sorted(s for s, held in sides.items() if not held)
    pairs = sample_images(lake, training)  # (sample_id, sha256) of the training samples' images
    hash_of = hashes_for(lake, sorted({sha for _, sha in pairs}), method_label(method))
    shas = sorted(hash_of)
    files = folder_images(folder)
    theirs, errors = [], []
    config = HashConfig(method=method)
    for k, path in enumerate(files):
        try:
            theirs.append((path, hash_file(path, config)))
        except NearDupError as exc:  # one bad file is listed, the rest are compared
            errors.append({"file": str(path.relative_to(folder)), "code": exc.code, "message": str(exc)})
        if progress is not None:
            progress(k + 1)
    everything = np.array([hash_of[s] for s in shas] + [h for _, h in theirs], dtype=np.uint64)
    by_sha: dict[str, list[str]] = {}
    for sample, sha in pairs:
        by_sha.setdefault(sha, []).append(sample)
    who = _who(lake, sorted({s for sha in shas for s in by_sha.get(sha, ())}))
    leaks = []
    for group in groups_by_hash(everything, int(threshold)):
        ours = [shas[i] for i in group if i < len(shas)]
        found = [str(theirs[i - len(shas)][0].relative_to(folder)) for i in group if i >= len(shas)]
        if ours and found:
            leaks.append({"files": found, "training": _items(who, sorted({s for sha in ours for s in by_sha[sha]}))})
    return {"snapshot": snapshot, "against": str(folder), "grouping": grouping, "split": settings.by, "holdout": settings.holdout,
            "seed": settings.seed, "folder_images": len(files), "folder_errors": errors, "training_samples": len(training),
            "training_images_not_hashed": len({sha for _, sha in pairs} - set(shas)), "leaks": leaks}


def trained_adapters(engine, snapshot: str) -> list[dict[str, Any]]:
    """The training runs of ``snapshot`` with a final adapter, and how each split its held-out products (its
    training_config.json's ``split``). One trained before splits went by near-duplicate group has none recorded, one
    trained before any grouping was made split by product: either may have near-duplicate photos of its held-out
    products in its training data, so its scores may be too high (``possibly_leaking``, with why)."""
    import json

    from db.app import training
    from db.storage.locations import Location

    out = []
    for run in training.list_runs(engine):
        if run.snapshot != snapshot:
            continue
        meta = Location.of(run.out_dir).join("adapter", "training_config.json")
        try:
            found = json.loads(meta.read_text()) if meta.is_file() else None
        except (OSError, ValueError):
            found = None
        if found is None:
            continue  # no final adapter (yet): nothing was trained that could leak
        split = found.get("split") if isinstance(found.get("split"), dict) else None
        by_group = bool(split) and split.get("by") == "dup_group"
        reason = None if by_group else ("trained before held-out products were split by near-duplicate group" if split is None
                                        else "split by product: no near-duplicate grouping existed when it was trained")
        out.append({"run": run.name, "split": split or {"by": "product"}, "possibly_leaking": not by_group, "why": reason})
    return out
