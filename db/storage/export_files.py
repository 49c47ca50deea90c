"""Finished exports where they lie: a folder on this machine or an s3:// prefix (``VITPRO_OUT_PATH``).

An export is finished when its ``manifest.json`` is there: the exporter writes it last, on disk by a
rename of the whole folder, in S3 by uploading it after every other file (workers/jobs/export.py). The
web app reads manifests from here and, for a zip download, copies a remote export into its own cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .locations import Location

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FoundExport:
    fmt: str
    location: str  # the format's folder or prefix
    manifest: dict
    manifest_bytes: bytes
    size: int  # bytes of every file in it
    stamp: str  # changes when the export is written again (for caches)


def size_of_export(location: str, stamp: str) -> int:
    """Bytes of every file of the export at ``location`` (a stat per file, or its prefix's listing)."""
    return Location.of(location).size()


def _found(where: Location, fmt: str, size_of) -> FoundExport | None:
    manifest = where.join(MANIFEST)
    stamp = manifest.stamp()
    if stamp is None:
        return None  # none, or an upload still running
    data = manifest.read_bytes()
    return FoundExport(fmt, str(where), json.loads(data), data, size_of(str(where), stamp), stamp)


def find(root: str, snapshot: str, formats, *, size_of=size_of_export) -> list[FoundExport]:
    """The finished exports of a snapshot under ``root`` (``<root>/<snapshot>/<format>``), one per format.
    ``size_of(location, stamp)`` measures one (the page passes one cached per export and stamp: a stat per
    file, or a listing)."""
    found = []
    for fmt in formats:
        entry = _found(Location.of(root).join(snapshot, fmt), fmt, size_of)
        if entry is not None:
            found.append(entry)
    return found


def local_copy(entry: FoundExport, cache: Path) -> Path:
    """A folder on this machine holding the export: itself, or a copy of the remote one in ``cache``
    (one per version of the export: its stamp is part of the path)."""
    return Location.of(entry.location).local_path(Path(cache) / entry.stamp, what="export")
