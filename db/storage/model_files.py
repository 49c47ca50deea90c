"""Model folders kept in the object store, read into each machine's own cache.

With no disk shared between machines, a checkpoint (a VLM, a CLIP folder, a trained LoRA adapter) can
live under an ``s3://bucket/prefix/`` and be named by that URL in a job: every worker copies it once into
``VITPRO_HOME/cache/models/`` and loads it from there, offline like any local folder. The URL, not the
copy's path, is what the lake records as the model, so the scores of two workers agree on its name.
A model under a prefix is taken as fixed: upload a new version under a new prefix.
"""
from __future__ import annotations

from pathlib import Path

from . import objects
from .locations import Location


def local_model(ref: str, cache_root: Path) -> str:
    """A local folder for ``ref``: ``ref`` itself when it is a path, else its copy in ``cache_root`` (made
    once; a copy cut short is fetched again, never loaded)."""
    return str(Location.of(ref).local_path(cache_root, what="model"))


def fetch_file(ref: str, name: str, folder: Path) -> Path | None:
    """One file of a remote model folder (config.json, say) into ``folder``; None if absent. Lets the
    sending side check a model's family without copying its weights."""
    url = objects.ObjectURL.parse(ref).as_prefix().child(name)
    if objects.head(url) is None:
        return None
    return objects.download(url, Path(folder) / name)


def upload_model(folder: Path, ref: str) -> int:
    """A local model folder to ``ref`` (``vitpro models push``); config.json goes last."""
    return objects.upload_folder(Path(folder), objects.ObjectURL.parse(ref).as_prefix(), last=("config.json",))
