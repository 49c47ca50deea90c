"""The export job's spec (cpu queue): a snapshot, the formats, the target folder and what the records say
of the base model they are for."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.exports import FORMATS
from db import objects

from .locations import holds_files
from .registry import JobSpec, register


def same_export(folder: Path | str, snapshot: str, fmt: str) -> bool:
    """An earlier export of this very snapshot and format (a retried unit, or the same command again):
    replacing it is safe, the bytes are the same. ``folder`` may be an s3:// prefix."""
    try:
        if objects.is_remote(folder):
            url = objects.ObjectURL.parse(str(folder)).child("manifest.json")
            if objects.head(url) is None:
                return False
            manifest = json.loads(objects.get_bytes(url))
        else:
            manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("snapshot") == snapshot and manifest.get("format") == fmt


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


@register("export")
@dataclass(frozen=True)
class ExportJob(JobSpec):
    """``base_model`` (a hub id or a checkpoint folder) and its ``family`` name the model the LLaMA-Factory
    and ms-swift settings written beside those exports are for (default: Qwen2.5-VL-7B-Instruct).
    ``absolute_paths``: records name images by their absolute path in OUT/<format>/ (default: relative to it)."""

    QUEUE = "cpu"
    CHOICES = {"formats": tuple(FORMATS)}

    snapshot: str
    formats: list[str]
    out: str
    ocr: bool = False
    link: bool = False
    force: bool = False
    dataset_name: str | None = None
    base_model: str | None = None
    family: str | None = None
    absolute_paths: bool = False

    def params(self) -> dict[str, Any]:
        from curation.model_ids import public_model_id
        from trainer.external_configs import DEFAULT_BASE_MODEL

        formats, snapshot = self.formats, self.snapshot
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise ValueError(f"unknown format(s) {', '.join(unknown) or '(none given)'}; formats are {', '.join(FORMATS)}")
        remote = objects.is_remote(self.out)
        if remote and self.absolute_paths:
            raise ValueError("--absolute-paths names files on one machine's disk; an s3:// export keeps paths relative to its folder")
        root = str(objects.ObjectURL.parse(self.out)).rstrip("/") if remote else str(Path(self.out).expanduser().resolve())
        if not self.force:
            busy = [f for f in formats if holds_files(objects.join(root, f)) and not same_export(objects.join(root, f), snapshot, f)]
            if busy:
                raise ValueError(f"{objects.join(root, busy[0])} exists and is not empty; choose another --out or pass --force to replace it")
        base = self.base_model or DEFAULT_BASE_MODEL
        return {
            "snapshot": snapshot, "formats": list(dict.fromkeys(formats)), "out": root, "ocr": bool(self.ocr), "link": bool(self.link),
            "force": bool(self.force), "dataset_name": self.dataset_name or snapshot, "absolute_paths": bool(self.absolute_paths),
            # the id as others may read it: a hub id, or the folder's name (never this machine's path)
            "base_model": public_model_id(base), "base_family": base_family(base, self.family).family,
        }
