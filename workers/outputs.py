"""A job's files (an evaluation's predictions, an ablation's table) where its ``out`` says: a folder, or
an s3:// prefix. For S3 a unit writes into its own scratch folder and uploads each finished file, so
units on different machines add their files to one prefix."""
from __future__ import annotations

from pathlib import Path

from db.storage import objects

from .runtime import UnitContext


def folder(ctx: UnitContext) -> Path:
    """Where this unit writes its files: ``out`` itself, or this worker's scratch folder for the job."""
    out = ctx.params["out"]
    path = ctx.settings.home / "scratch" / "outputs" / ctx.job_id if objects.is_remote(out) else Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish(ctx: UnitContext, path: Path) -> str:
    """A finished file of ``folder(ctx)`` to ``out`` (nothing to do on disk); returns where it is."""
    out = ctx.params["out"]
    if not objects.is_remote(out):
        return str(path)
    url = objects.ObjectURL.parse(out).child(path.name)
    objects.put_file(url, path)
    return str(url)
