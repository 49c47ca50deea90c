"""The export job (cpu queue): one unit per format, each writing ``OUT/<format>/`` from the snapshot's
DuckLake version. A unit builds and validates the whole export before anything appears at the target
(see curation/exports.py), so a retried or failed unit leaves either the old folder or the new one."""
from __future__ import annotations

import shutil
from typing import Any

from curation import snapshots
from curation.exports import DATA_FILES, MANIFEST, ExportError, image_paths_note, write_export
from db.app.jobs import UnitSpec
from db.storage.locations import Location
from jobs.export import ExportJob, base_family, same_export
from trainer.external_configs import DEFAULT_BASE_MODEL

from ..runtime import PermanentError, UnitContext
from .registry import add_handler


def trainer_files(fmt: str, job: ExportJob) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The trainer settings that go beside an export ({file: bytes}) and what the manifest says of them."""
    from curation.vlm import FAMILIES
    from trainer.config import TrainConfig
    from trainer.external_configs import llamafactory_yaml, swift_command, swift_command_line

    family = FAMILIES[job.base_family or base_family(DEFAULT_BASE_MODEL).family]
    base = job.base_model or DEFAULT_BASE_MODEL
    about = {"base_model": base, "family": family.family, "lora": TrainConfig().to_dict()["lora"]}
    if fmt == "llamafactory":
        text = llamafactory_yaml(family, base, job.dataset_name)
        if text is None:
            return {}, {**about, "llamafactory_template": None,
                        "note": f"LLaMA-Factory has no template for {family.title}: no train_lora.yaml (train it with `vitpro train`)"}
        return {"train_lora.yaml": text.encode("utf-8")}, {**about, "llamafactory_template": family.llamafactory_template, "config_file": "train_lora.yaml"}
    if fmt == "swift":
        return {}, {**about, "command": swift_command_line(swift_command(base, DATA_FILES["swift"]))}
    return {}, {}


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    try:
        snap = snapshots.get(ctx.engine, ctx.spec.snapshot)
    except snapshots.SnapshotError as exc:
        raise PermanentError(str(exc)) from exc
    n = int(snap.counts.get("kept", 0))
    ctx.log(f"exporting snapshot {snap.name!r} ({n} samples, DuckLake version {snap.lake_version}) as {', '.join(ctx.spec.formats)}")
    return [UnitSpec({"format": f}, n) for f in ctx.spec.formats], {"set": {"samples": n}}


def run(ctx: UnitContext) -> dict[str, Any]:
    job: ExportJob = ctx.spec
    fmt = ctx.payload["format"]
    scratch = ctx.settings.home / "scratch" / "exports" / ctx.run_id
    try:
        snap = snapshots.get(ctx.engine, job.snapshot)
        fetched = ctx.blobs.remote
        samples, sources = snapshots.export_samples(ctx.lake, snap, ctx.blobs, resolve=not fetched)
        # OUT/<format> is written in place; an s3:// one is built in this worker's scratch folder, then uploaded
        work = Location.of(job.out).join(fmt).workspace(scratch / fmt)
        shutil.rmtree(scratch, ignore_errors=True)  # this unit's: blobs fetched from S3, an export to upload
        scratch.mkdir(parents=True)
        if fetched:  # blobs in S3: into this unit's scratch folder, then hard-linked into the export
            files = ctx.blobs.fetch_many(sources.values(), scratch / "blobs", progress=lambda k: ctx.check())
            sources = {rel: files.get(blob, scratch / "blobs" / "missing" / blob) for rel, blob in sources.items()}
        ctx.check()
        n_images = max(1, len(sources))
        extra, trainer = trainer_files(fmt, job)
        meta = {**snapshots.manifest_meta(snap), **({"trainer": trainer} if trainer else {})}
        final = work.location
        result = write_export(
            work.path, fmt, samples, sources=sources, meta=meta, ocr=job.ocr, extra_files=extra,
            link=job.link or work.staged or fetched, force=job.force or work.staged or same_export(final, snap.name, fmt),
            dataset_name=job.dataset_name,
            absolute_paths=job.absolute_paths,
            # progress in samples: images copied stand for their share of the export
            progress=lambda k: (ctx.progress(int(len(samples) * k / n_images)), ctx.check()),
        )
        if work.staged:
            ctx.check()  # a cancelled job uploads nothing
        # S3 has no rename of a folder, so the manifest is the commit mark: it is deleted first (with whatever
        # an earlier export or an interrupted upload left there) and uploaded last. A prefix with
        # manifest.json is whole; one without it is unfinished.
        work.push(replace=True, last=(MANIFEST,))
    except (ExportError, snapshots.SnapshotError) as exc:
        raise PermanentError(str(exc)) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ctx.progress(len(samples))
    ctx.log(f"{fmt}: {result.records} record(s), {result.images} image(s) in {final}; image paths: "
            + image_paths_note(fmt, job.absolute_paths))
    return {"records": result.records, "images": result.images, "formats_written": 1}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}


add_handler("export", plan=plan, run=run, finalize=finalize)
