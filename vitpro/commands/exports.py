"""``vitpro snapshot export`` and ``vitpro snapshot verify``: a snapshot written in trainers' formats (a
job on the cpu queue; curation/exports.py), and an export folder checked against its manifest.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from config.settings import load_settings
from db.storage.locations import Location
from jobs.export import ExportJob
from jobs.registry import choices

from ..spec_options import job_params, spec_option
from .group import fail, run_job
from .snapshots import get_snapshot, snapshot


@snapshot.command("export")
@click.argument("name")
@click.option("--format", "formats", multiple=True, required=True, type=click.Choice([*choices("export", "formats"), "all"]), help="Repeat for several; 'all' for every format.")
@click.option("--out", help="Folder or s3://bucket/prefix; each format goes to OUT/<format>/ (default: $VITPRO_OUT_PATH/exports/NAME, "
                             "$VITPRO_OUT_PATH being $VITPRO_HOME unless set).")
@spec_option(ExportJob, "ocr", "--ocr/--no-ocr", help="Put each image's OCR text in the prompt ('OCR Tokens: ...'), as the paper trains.")
@spec_option(ExportJob, "link", help="Hard-link images instead of copying them (same file system).")
@spec_option(ExportJob, "force", help="Replace a non-empty OUT/<format>/ from another export.")
@spec_option(ExportJob, "dataset_name", help="Name of the LLaMA-Factory dataset_info.json entry (default: the snapshot's name).")
@spec_option(ExportJob, "base_model", envvar="VITPRO_BASE_MODEL", help="The model you will tune on the export, a hub id or a checkpoint folder: "
             "LLaMA-Factory's train_lora.yaml and the ms-swift command are written for it (default: Qwen/Qwen2.5-VL-7B-Instruct).")
@spec_option(ExportJob, "family", help="The base model's family (see `vitpro models families`), when its id does not tell it.")
@spec_option(ExportJob, "absolute_paths", help="Name each image by its absolute path in OUT/<format>/ (for a trainer started elsewhere; "
             "moving the folder breaks them). Default: paths relative to OUT/<format>/.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def snapshot_export(name, formats, out, ocr, link, force, dataset_name, base_model, family, absolute_paths, wait, local) -> None:
    """Export a snapshot (a job on the cpu queue): validated records, images, manifest with sha256 of every
    file and how the image paths resolve; beside the LLaMA-Factory export a ready train_lora.yaml, and in
    the ms-swift manifest the matching `swift sft` command, both with the paper's LoRA settings."""
    from curation.exports import FORMATS, image_paths_note

    get_snapshot(name)
    chosen = list(FORMATS) if "all" in formats else list(dict.fromkeys(formats))
    out = out or load_settings().output("exports", name)
    params = job_params(ExportJob, snapshot=name, formats=chosen, out=str(out), ocr=ocr, link=link, force=force, dataset_name=dataset_name,
                        base_model=base_model, family=family, absolute_paths=absolute_paths)
    run_job("export", params, wait=wait, local=local)
    where = Location.of(params["out"])
    for fmt in chosen:
        click.echo(f"{where.join(fmt)}: image paths {image_paths_note(fmt, absolute_paths)}")
    if wait:
        for fmt in chosen:
            click.echo(f"  {fmt:<13} {where.join(fmt)}")
        if where.is_local:  # commands to run in the folder: for an export on this machine's disk
            _echo_trainer_settings(Path(params["out"]), chosen)


def _echo_trainer_settings(out: Path, formats: list[str]) -> None:
    """Where the LLaMA-Factory config is (or why there is none) and the ms-swift command."""
    for fmt in ("llamafactory", "swift"):
        if fmt not in formats:
            continue
        try:
            trainer = json.loads((out / fmt / "manifest.json").read_text()).get("trainer") or {}
        except (OSError, ValueError):
            continue
        if trainer.get("config_file"):
            click.echo(f"LLaMA-Factory ({trainer['family']}, template {trainer['llamafactory_template']}): cd {out / fmt} && llamafactory-cli train {trainer['config_file']}")
        elif trainer.get("note"):
            click.echo(f"LLaMA-Factory: {trainer['note']}")
        if trainer.get("command"):
            click.echo(f"ms-swift ({trainer['family']}): cd {out / fmt} && {trainer['command']}")


@snapshot.command("verify")
@click.argument("folder")
def snapshot_verify(folder) -> None:
    """Check an export folder (or s3:// prefix, copied here first): records valid for the format, every image present, every
    sha256 as in the manifest."""
    import tempfile

    from curation.exports import MANIFEST, ExportError, verify_export
    from db.storage import objects

    try:
        where = Location.of(folder)
        if where.is_local:
            if not where.path.is_dir():
                fail(f"{folder}: no such folder")
            manifest = verify_export(where.path)
        else:  # a prefix: checked for its manifest (uploaded last) before it is copied
            if not where.join(MANIFEST).is_file():
                fail(f"{folder}: no manifest.json there (no export, or one still uploading)")
            with tempfile.TemporaryDirectory(prefix="vitpro-verify-") as tmp:
                manifest = verify_export(where.local_path(Path(tmp), what="export"))
    except ExportError as exc:
        fail(str(exc))
    except (objects.ObjectStoreError, ValueError) as exc:
        fail(str(exc))
    click.echo(f"{folder}: valid {manifest['format']} export of snapshot {manifest.get('snapshot')!r}: {manifest['records']} record(s), "
               f"{manifest['images']} image(s), {len(manifest['files'])} file(s) match the manifest")
