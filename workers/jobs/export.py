"""The export job (cpu queue): one unit per format, each writing ``OUT/<format>/`` from the snapshot's
DuckLake version. A unit builds and validates the whole export before anything appears at the target
(see curation/exports.py), so a retried or failed unit leaves either the old folder or the new one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curation.exports import DATA_FILES, FORMATS, ExportError, image_paths_note, write_export
from curation.model_ids import public_model_id
from trainer.external_configs import DEFAULT_BASE_MODEL
from curation import snapshots
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


def prepare_params(*, snapshot: str, formats: list[str], out: str, ocr: bool = False, link: bool = False, force: bool = False, dataset_name: str | None = None,
                   base_model: str | None = None, family: str | None = None, absolute_paths: bool = False) -> dict[str, Any]:
    """``base_model`` (a hub id or a checkpoint folder) and its ``family`` name the model the LLaMA-Factory
    and ms-swift settings written beside those exports are for (default: Qwen2.5-VL-7B-Instruct).
    ``absolute_paths``: records name images by their absolute path in OUT/<format>/ (default: relative to it)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {', '.join(unknown) or '(none given)'}; formats are {', '.join(FORMATS)}")
    root = Path(out).expanduser().resolve()
    if not force:
        busy = [f for f in formats if (root / f).exists() and any((root / f).iterdir()) and not same_export(root / f, snapshot, f)]
        if busy:
            raise ValueError(f"{root / busy[0]} exists and is not empty; choose another --out or pass --force to replace it")
    base = base_model or DEFAULT_BASE_MODEL
    return {
        "snapshot": snapshot, "formats": list(dict.fromkeys(formats)), "out": str(root), "ocr": bool(ocr), "link": bool(link),
        "force": bool(force), "dataset_name": dataset_name or snapshot, "absolute_paths": bool(absolute_paths),
        # the id as others may read it: a hub id, or the folder's name (never this machine's path)
        "base_model": public_model_id(base), "base_family": base_family(base, family).family,
    }


def base_family(base_model: str, family: str | None = None):
    """The family adapter of the base model: named, read from a checkpoint folder's config.json, or
    recognised in a hub id."""
    from curation.vlm import FAMILIES, adapter_for, family_for_hub_id

    if family:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; families: {', '.join(sorted(FAMILIES))}")
        return FAMILIES[family]
    path = Path(base_model).expanduser()
    if (path / "config.json").exists():
        return adapter_for(path)
    found = family_for_hub_id(base_model)
    if found is None:
        raise ValueError(f"cannot tell the family of {base_model!r}: name it with --family ({', '.join(sorted(FAMILIES))})")
    return found


def trainer_files(fmt: str, params: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The trainer settings that go beside an export ({file: bytes}) and what the manifest says of them."""
    from curation.vlm import FAMILIES
    from trainer.config import TrainConfig
    from trainer.external_configs import llamafactory_yaml, swift_command, swift_command_line

    family = FAMILIES[params.get("base_family") or base_family(DEFAULT_BASE_MODEL).family]
    base = params.get("base_model") or DEFAULT_BASE_MODEL
    about = {"base_model": base, "family": family.family, "lora": TrainConfig().to_dict()["lora"]}
    if fmt == "llamafactory":
        text = llamafactory_yaml(family, base, params["dataset_name"])
        if text is None:
            return {}, {**about, "llamafactory_template": None,
                        "note": f"LLaMA-Factory has no template for {family.title}: no train_lora.yaml (train it with `vitpro train`)"}
        return {"train_lora.yaml": text.encode("utf-8")}, {**about, "llamafactory_template": family.llamafactory_template, "config_file": "train_lora.yaml"}
    if fmt == "swift":
        return {}, {**about, "command": swift_command_line(swift_command(base, DATA_FILES["swift"]))}
    return {}, {}


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
        extra, trainer = trainer_files(fmt, ctx.params)
        meta = {**snapshots.manifest_meta(snap), **({"trainer": trainer} if trainer else {})}
        result = write_export(
            Path(ctx.params["out"]) / fmt, fmt, samples, sources=sources, meta=meta, ocr=ctx.params["ocr"], extra_files=extra,
            link=ctx.params["link"], force=ctx.params["force"] or same_export(Path(ctx.params["out"]) / fmt, snap.name, fmt), dataset_name=ctx.params["dataset_name"],
            absolute_paths=ctx.params.get("absolute_paths", False),
            # progress in samples: images copied stand for their share of the export
            progress=lambda k: (ctx.progress(int(len(samples) * k / n_images)), ctx.check()),
        )
    except (ExportError, snapshots.SnapshotError) as exc:
        raise PermanentError(str(exc)) from exc
    ctx.progress(len(samples))
    ctx.log(f"{fmt}: {result.records} record(s), {result.images} image(s) in {result.folder}; image paths: "
            + image_paths_note(fmt, ctx.params.get("absolute_paths", False)))
    return {"records": result.records, "images": result.images, "formats_written": 1}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}
