"""A job's files (an evaluation's predictions, an ablation's table) where its ``out`` says: a folder, or
an s3:// prefix. For S3 a unit writes into its own scratch folder and uploads each finished file, so
units on different machines add their files to one prefix."""
from __future__ import annotations

from pathlib import Path

from db.storage.locations import Location, Workspace

from .runtime import UnitContext


def _workspace(ctx: UnitContext) -> Workspace:
    return Location.of(ctx.params["out"]).workspace(ctx.settings.home / "scratch" / "outputs" / ctx.job_id)


def folder(ctx: UnitContext) -> Path:
    """Where this unit writes its files: ``out`` itself, or this worker's scratch folder for the job."""
    path = _workspace(ctx).path
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish(ctx: UnitContext, path: Path) -> str:
    """A finished file of ``folder(ctx)`` to ``out`` (nothing to do on disk); returns where it is."""
    return str(_workspace(ctx).push(path.name))
