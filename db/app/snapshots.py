"""Dataset snapshots' records in the app tables: the DuckLake version, the filter with its models
resolved, the counts, the model and prompt ids and a hash of the kept sample ids (what freezes them,
diffs and exports them is curation.snapshots).

A snapshot's name can be changed (:func:`rename`); its version, filter and counts never are.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from .models import EvalRun, Snapshot, TrainRun
from .named_rows import get_named, insert_named, list_named, name_taken


class SnapshotError(ValueError):
    pass


NAME_MAX = 120  # the column's width
# A name is also a folder ($VITPRO_HOME/exports/<name>) and a LLaMA-Factory dataset name: no path
# separators, no leading dot, no control characters.
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    """The name stripped, or a SnapshotError saying what is wrong with it (create and rename alike)."""
    name = (name or "").strip()
    if not name:
        raise SnapshotError("give the snapshot a name")
    if len(name) > NAME_MAX:
        raise SnapshotError(f"a snapshot name has at most {NAME_MAX} characters ({len(name)} given)")
    if name.startswith(".") or _BAD_NAME.search(name):
        raise SnapshotError(f"{name!r} cannot name a snapshot: no slashes, no leading dot, no control characters (it also names its export folder)")
    return name


def _exists(name: str) -> SnapshotError:
    return SnapshotError(f"a snapshot named {name!r} exists already (snapshots are never changed; pick a new name)")


def refuse_taken(engine: Engine, name: str) -> None:
    """A SnapshotError where a snapshot has the name already."""
    if name_taken(engine, Snapshot, name):
        raise _exists(name)


def insert(engine: Engine, row: Snapshot) -> Snapshot:
    """Store a new snapshot record (a SnapshotError where its name was taken meanwhile)."""
    return insert_named(engine, row, lambda: _exists(row.name))


def discard(engine: Engine, snapshot_id: int) -> None:
    """Delete a snapshot record that was just inserted: only to undo a create whose member list could not
    be written (curation.snapshots.create). A finished snapshot is never deleted: runs and exports name it."""
    with Session(engine) as s, s.begin():
        s.execute(delete(Snapshot).where(Snapshot.id == int(snapshot_id)))


def rename(engine: Engine, old: str, new: str, *, exports_root: Path | None = None) -> Snapshot:
    """Give snapshot ``old`` the name ``new`` (the rules of :func:`check_name`; a taken name is refused).

    The training and evaluation runs that name the snapshot follow it (same transaction). With
    ``exports_root`` ($VITPRO_HOME/exports), the export folder ``exports_root/old`` becomes
    ``exports_root/new``, so the page and `vitpro snapshot export` find it under the new name. The
    manifests inside keep the name the snapshot had when they were written: they record that export
    byte for byte, and its lake version and kept_sha256 still identify the data. A folder already at
    the new name is refused before anything changes.
    """
    new = check_name(new)
    snap = get(engine, old)
    if new == snap.name:
        return snap
    taken = SnapshotError(f"a snapshot named {new!r} exists already; pick another name")
    if name_taken(engine, Snapshot, new):
        raise taken
    src = dst = None
    if exports_root is not None:
        src, dst = Path(exports_root) / snap.name, Path(exports_root) / new
        if dst.exists():
            raise SnapshotError(f"{dst} exists already (an export of another snapshot?): move it away first")
    with Session(engine) as s, s.begin():
        if s.scalar(select(Snapshot.id).where(Snapshot.name == new)) is not None:  # taken meanwhile
            raise taken
        s.execute(update(Snapshot).where(Snapshot.id == snap.id).values(name=new))
        s.execute(update(TrainRun).where(TrainRun.snapshot == snap.name).values(snapshot=new))
        s.execute(update(EvalRun).where(EvalRun.snapshot == snap.name).values(snapshot=new))
        # the folder last, still inside the transaction: if it cannot be moved, the rename is rolled back
        if src is not None and src.exists():
            shutil.move(str(src), str(dst))
    return get(engine, new)


def get(engine: Engine, name: str) -> Snapshot:
    return get_named(engine, Snapshot, name, Snapshot.created_at, lambda known: SnapshotError(f"no snapshot {name!r} (snapshots: {known})"))


def list_all(engine: Engine) -> list[Snapshot]:
    return list_named(engine, Snapshot, Snapshot.created_at)
