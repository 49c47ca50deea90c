"""The export job (cpu queue): one unit per format, each writing ``OUT/<format>/`` from the snapshot's
DuckLake version. A unit builds and validates the whole export before anything appears at the target
(see curation/exports.py), so a retried or failed unit leaves either the old folder or the new one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curation.exports import FORMATS, ExportError, write_export
from db import snapshots
from db.jobs import UnitSpec

from ..runtime import PermanentError, UnitContext

KIND = "export"
QUEUE = "cpu"


def same_export(folder: Path, snapshot: str, fmt: str) -> bool:
    """An earlier export of this very snapshot and format (a retried unit, or the same command again):
    replacing it is safe, the bytes are the same."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("snapshot") == snapshot and manifest.get("format") == fmt


def prepare_params(*, snapshot: str, formats: list[str], out: str, ocr: bool = False, link: bool = False, force: bool = False, dataset_name: str | None = None) -> dict[str, Any]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {', '.join(unknown) or '(none given)'}; formats are {', '.join(FORMATS)}")
    root = Path(out).expanduser().resolve()
    if not force:
        busy = [f for f in formats if (root / f).exists() and any((root / f).iterdir()) and not same_export(root / f, snapshot, f)]
        if busy:
            raise ValueError(f"{root / busy[0]} exists and is not empty; choose another --out or pass --force to replace it")
    return {
        "snapshot": snapshot, "formats": list(dict.fromkeys(formats)), "out": str(root), "ocr": bool(ocr), "link": bool(link),
        "force": bool(force), "dataset_name": dataset_name or snapshot,
    }


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    try:
        snap = snapshots.get(ctx.engine, ctx.params["snapshot"])
    except snapshots.SnapshotError as exc:
        raise PermanentError(str(exc)) from exc
    n = int(snap.counts.get("kept", 0))
    ctx.log(f"exporting snapshot {snap.name!r} ({n} samples, DuckLake version {snap.lake_version}) as {', '.join(ctx.params['formats'])}")
    return [UnitSpec({"format": f}, n) for f in ctx.params["formats"]], {"set": {"samples": n}}


def run(ctx: UnitContext) -> dict[str, Any]:
    fmt = ctx.payload["format"]
    try:
        snap = snapshots.get(ctx.engine, ctx.params["snapshot"])
        samples, sources = snapshots.export_samples(ctx.lake, snap, ctx.settings.blob_path)
        ctx.check()
        n_images = max(1, len(sources))
        result = write_export(
            Path(ctx.params["out"]) / fmt, fmt, samples, sources=sources, meta=snapshots.manifest_meta(snap), ocr=ctx.params["ocr"],
            link=ctx.params["link"], force=ctx.params["force"] or same_export(Path(ctx.params["out"]) / fmt, snap.name, fmt), dataset_name=ctx.params["dataset_name"],
            # progress in samples: images copied stand for their share of the export
            progress=lambda k: (ctx.progress(int(len(samples) * k / n_images)), ctx.check()),
        )
    except (ExportError, snapshots.SnapshotError) as exc:
        raise PermanentError(str(exc)) from exc
    ctx.progress(len(samples))
    ctx.log(f"{fmt}: {result.records} record(s), {result.images} image(s) in {result.folder}")
    return {"records": result.records, "images": result.images, "formats_written": 1}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}
