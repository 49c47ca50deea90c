"""Finished exports where they lie: a folder on this machine or an s3:// prefix (``VITPRO_OUT_PATH``).

An export is finished when its ``manifest.json`` is there: the exporter writes it last, on disk by a
rename of the whole folder, in S3 by uploading it after every other file (workers/jobs/export.py). The
web app reads manifests from here and, for a zip download, copies a remote export into its own cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import objects

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FoundExport:
    fmt: str
    location: str  # the format's folder or prefix
    manifest: dict
    manifest_bytes: bytes
    size: int  # bytes of every file in it
    stamp: str  # changes when the export is written again (for caches)


def _local(folder: Path, fmt: str, size_of) -> FoundExport | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    data = path.read_bytes()
    stamp = str(path.stat().st_mtime_ns)
    return FoundExport(fmt, str(folder), json.loads(data), data, size_of(str(folder), stamp), stamp)


def _remote(prefix: str, fmt: str) -> FoundExport | None:
    url = objects.ObjectURL.parse(prefix).as_prefix()
    meta = objects.head(url.child(MANIFEST))
    if meta is None:
        return None  # none, or an upload still running
    data = objects.get_bytes(url.child(MANIFEST))
    size = sum(n for _, n in objects.listing(url))
    return FoundExport(fmt, str(url).rstrip("/"), json.loads(data), data, size, meta["etag"])


def find(root: str, snapshot: str, formats, *, size_of) -> list[FoundExport]:
    """The finished exports of a snapshot under ``root`` (``<root>/<snapshot>/<format>``), one per format.
    ``size_of(folder, stamp)`` measures a local one (the page passes one cached per export: a stat per
    file); a remote one is measured by its listing."""
    found = []
    for fmt in formats:
        location = objects.join(root, snapshot, fmt)
        entry = _remote(location, fmt) if objects.is_remote(location) else _local(Path(location), fmt, size_of)
        if entry is not None:
            found.append(entry)
    return found


def local_copy(entry: FoundExport, cache: Path) -> Path:
    """A folder on this machine holding the export: itself, or a copy of the remote one in ``cache``."""
    if not objects.is_remote(entry.location):
        return Path(entry.location)
    url = objects.ObjectURL.parse(entry.location)
    target = cache / url.bucket / url.key / entry.stamp
    if not (target / MANIFEST).is_file():
        objects.download_folder(url, target)
    return target
