"""Where a job's model and output are, as the job carries them: an absolute folder of the machine that
sends it, or an s3:// URL that every worker reads (and writes) the same way. No credential is ever part
of one: an s3:// URL with a user or password in it is refused (db/storage/objects.py)."""
from __future__ import annotations

from pathlib import Path

from db.storage import objects


def location(ref: str) -> str:
    """An s3:// URL as written (without a trailing '/'), or the folder made absolute."""
    if objects.is_remote(ref):
        return str(objects.ObjectURL.parse(ref)).rstrip("/")
    return str(Path(ref).expanduser().resolve())


def is_tiny_model(ref: str) -> bool:
    """A model `vitpro models make-tiny` built (random weights: its scores are flagged as a demo's)."""
    from curation.tiny_models import is_tiny
    from curation.tiny_models.common import MARKER

    if objects.is_remote(ref):
        return objects.head(objects.ObjectURL.parse(ref).as_prefix().child(MARKER)) is not None
    return is_tiny(Path(ref))


def holds_files(where: str | Path) -> bool:
    """A folder with anything in it, or an s3:// prefix with an object under it."""
    if objects.is_remote(where):
        return next(iter(objects.listing(objects.ObjectURL.parse(str(where)))), None) is not None
    folder = Path(where)
    return folder.is_dir() and any(folder.iterdir())


def check_fresh(out: str, what: str) -> str:
    """The output location, refused when it already holds files: an earlier job's results would be
    overwritten (or mixed with these)."""
    where = location(out)
    if holds_files(where):
        remedy = "remove them" if objects.is_remote(where) else "remove the folder"
        raise ValueError(f"{where} already holds an earlier {what}'s files; pick another name (or {remedy})")
    return where
