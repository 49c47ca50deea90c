"""The export job's spec (cpu queue): a snapshot, the formats, the target folder and what the records say
of the base model they are for."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from config.fields import FieldError, about, check, param
from curation.exports import FORMATS, MANIFEST
from db.storage.locations import Location

from .registry import JobSpec, job_kind


def same_export(folder: Location | str, snapshot: str, fmt: str) -> bool:
    """An earlier export of this very snapshot and format (a retried unit, or the same command again):
    replacing it is safe, the bytes are the same. ``folder`` may be an s3:// prefix."""
    manifest_file = Location.of(folder).join(MANIFEST)
    try:
        if not manifest_file.is_file():
            return False
        manifest = json.loads(manifest_file.read_text())
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
        raise ValueError(f"cannot tell the family of {base_model!r}: name it ({', '.join(sorted(FAMILIES))})")
    return found


@job_kind("export")
@dataclass(frozen=True)
class ExportJob(JobSpec):
    """``base_model`` (a hub id or a checkpoint folder) and its ``family`` name the model the LLaMA-Factory
    and ms-swift settings written beside those exports are for (default: Qwen2.5-VL-7B-Instruct)."""

    QUEUE = "cpu"

    snapshot: str = param(help="The snapshot to export (vitpro snapshot list).")
    out: str = param(help="The folder (or s3:// prefix) the formats are written in.")
    formats: list[str] = param(factory=lambda: list(FORMATS), choices=FORMATS, flag="--format", help="The formats to write, each in OUT/<format>/.")
    ocr: bool = param(True, label="OCR text in the prompt", help="Put each image's OCR text in the prompt (\"OCR Tokens: ...\"), as the paper trains.")
    link: bool = param(False, help="Hard-link (or symlink) images instead of copying them.")
    force: bool = param(False, help="Replace what OUT/<format>/ holds.")
    dataset_name: str | None = param(None, help="The dataset's name in the trainers' settings (default: the snapshot's).")
    base_model: str | None = param(None, help="The model the trainer settings are for: a hub id or a checkpoint folder (default: Qwen2.5-VL-7B-Instruct).")
    family: str | None = param(None, help="The base model's VLM family, when its name does not tell it.")
    absolute_paths: bool = param(False, help="Records name images by their absolute path (default: relative to OUT/<format>/).")
    base_family: str = param("", derived=True, help="The base model's family, as the trainer settings name it.")

    def resolve(self) -> "ExportJob":
        from curation.model_ids import public_model_id
        from trainer.external_configs import DEFAULT_BASE_MODEL

        check(self)
        formats, snapshot = list(dict.fromkeys(self.formats)), self.snapshot
        if not formats:
            raise FieldError("formats", f"no format given; formats are {', '.join(FORMATS)}")
        root = Location.of(self.out).absolute()
        if self.absolute_paths and not root.is_local:
            raise FieldError("absolute_paths", "absolute paths name files on one machine's disk; an s3:// export keeps paths relative to its folder")
        if not self.force:
            busy = [f for f in formats if root.join(f).holds_files() and not same_export(root.join(f), snapshot, f)]
            if busy:
                raise FieldError("out", f"{root.join(busy[0])} exists and is not empty; choose another folder or replace it (force)")
        base = self.base_model or DEFAULT_BASE_MODEL
        try:
            family = base_family(base, self.family).family
        except ValueError as exc:
            raise about("family", exc) from None
        # the id as others may read it: a hub id, or the folder's name (never this machine's path)
        return replace(self, formats=formats, out=str(root), dataset_name=self.dataset_name or snapshot, base_model=public_model_id(base), base_family=family)
