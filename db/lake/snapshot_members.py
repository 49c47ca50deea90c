"""Each snapshot's member sample ids, in the lake (tables ``snapshot_members`` and ``snapshot_member_lists``,
lake migration 6): written once when the snapshot is made, read by every consumer of the snapshot.

Why a list: without one, each export unit, training plan and run, evaluation unit and diff rebuilt the
filter's stats table at the snapshot's version to learn which samples it holds (seconds at a million
samples, every time). The samples' contents still come from DuckLake's time travel at the snapshot's
version; only the ids (and each sample's task, for diffs) are listed.

A list is the bulk rows plus one row in ``snapshot_member_lists``, both written in one transaction: a
reader trusts a list only when that row is there (so never a half-written one) and names the hash of the
record it was checked against (so never a stale list, e.g. one left under an id that a failed create had
and a later snapshot got). Keyed by the app table's snapshot id: a rename changes the name only.

What decides whether a list is right (the filter, the hash) is curation.snapshots'; this module stores.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .connection import Lake
from .tables import SNAPSHOT_MEMBER_LISTS, SNAPSHOT_MEMBERS, now_utc


@dataclass(frozen=True)
class MemberList:
    """What the list's own row says: the version and record hash it was written for, and its size."""

    snapshot_id: int
    lake_version: int
    kept_sha256: str
    n_samples: int


def listed(lake: Lake, snapshot_id: int) -> MemberList | None:
    """The snapshot's list row, or None where it has no list (made before lists, or its write never ended)."""
    row = lake.fetchone(
        f"SELECT lake_version, kept_sha256, n_samples FROM {SNAPSHOT_MEMBER_LISTS.name} WHERE snapshot_id = ? "
        "ORDER BY written_at DESC LIMIT 1", [int(snapshot_id)])
    return None if row is None else MemberList(int(snapshot_id), int(row[0]), row[1], int(row[2]))


def listed_ids(lake: Lake) -> set[int]:
    """The ids of every snapshot with a list (one small table read, not the lists)."""
    return {int(r[0]) for r in lake.fetchall(f"SELECT DISTINCT snapshot_id FROM {SNAPSHOT_MEMBER_LISTS.name}")}


def members_sql(snapshot_id: int) -> str:
    """SQL of (sample_id, task) of a snapshot's list, one row per sample (the caller checked the list first)."""
    return f"SELECT sample_id, task FROM {SNAPSHOT_MEMBERS.name} WHERE snapshot_id = {int(snapshot_id)}"


def write(lake: Lake, snapshot_id: int, lake_version: int, kept_sha256: str, sample_ids: list[str], tasks: list[str]) -> int:
    """Store a snapshot's list (``sample_ids`` with their ``tasks``, a sample given twice listed once) and its
    row, in one transaction; returns the samples listed.

    Idempotent: what the snapshot id had is deleted first, in the same transaction, so a retried write (or
    two processes backfilling the same snapshot) leaves one list. The rows go in as one Arrow table that
    DuckDB reads in vectors: one INSERT, not one per sample.
    """
    if len(sample_ids) != len(tasks):
        raise ValueError(f"{len(sample_ids)} sample ids but {len(tasks)} tasks")
    rows = pa.table({"sample_id": pa.array(sample_ids, pa.string()), "task": pa.array(tasks, pa.string())})
    sid, version = int(snapshot_id), int(lake_version)

    def body(con) -> int:
        con.execute(f"DELETE FROM {SNAPSHOT_MEMBERS.name} WHERE snapshot_id = ?", [sid])
        con.execute(f"DELETE FROM {SNAPSHOT_MEMBER_LISTS.name} WHERE snapshot_id = ?", [sid])
        con.register("_new_members", rows)
        try:
            # sorted by id: Parquet's min/max per row group then skip whole groups in a join on sample_id
            con.execute(
                f"INSERT INTO {SNAPSHOT_MEMBERS.name} ({SNAPSHOT_MEMBERS.names()}) "
                "SELECT ?, sample_id, min(task), ? FROM _new_members GROUP BY sample_id ORDER BY sample_id", [sid, version])
            n = int(con.execute("SELECT count(DISTINCT sample_id) FROM _new_members").fetchone()[0])
        finally:
            con.unregister("_new_members")
        _mark(con, sid, version, kept_sha256, n)
        return n

    return lake.transaction(body)


def _mark(con, snapshot_id: int, lake_version: int, kept_sha256: str, n: int) -> None:
    """The list's row, last in the write's transaction: with it the list is complete."""
    con.execute(f"INSERT INTO {SNAPSHOT_MEMBER_LISTS.name} ({SNAPSHOT_MEMBER_LISTS.names()}) VALUES (?, ?, ?, ?, ?)",
                [snapshot_id, lake_version, kept_sha256, n, now_utc()])



def data_version(lake: Lake, *, look_back: int = 100) -> int:
    """The newest DuckLake version that changed the data rather than only listed a snapshot's members. Making a
    snapshot at version V writes its list at V+1; a recipe that names its snapshot after the version
    (``demo-v{version}``) then finds it again on a re-run that changed nothing, instead of freezing the same data
    under a new name (and training and evaluating on it again). Looks back ``look_back`` commits at most."""
    from .connection import ALIAS

    try:
        lists = {str(t) for (t,) in lake.fetchall(
            f"SELECT table_id FROM __ducklake_metadata_{ALIAS}.ducklake_table WHERE table_name IN (?, ?)",
            [SNAPSHOT_MEMBERS.name, SNAPSHOT_MEMBER_LISTS.name])}
        rows = lake.fetchall(f"SELECT snapshot_id, changes FROM ducklake_snapshots('{ALIAS}') ORDER BY snapshot_id DESC LIMIT {int(look_back)}")
    except Exception:  # DuckLake's own metadata not readable so: the newest commit, as before
        return lake.current_version()
    for snapshot_id, changes in rows:
        only_lists = bool(changes) and all(
            kind in ("tables_inserted_into", "inlined_insert", "tables_deleted_from", "inlined_delete") and set(map(str, ids)) <= lists
            for kind, ids in dict(changes).items())
        if not only_lists:
            return int(snapshot_id)
    return lake.current_version()
