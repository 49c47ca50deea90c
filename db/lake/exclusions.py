"""Samples a curator took out of the data set (a wrong answer, a blurred photo, personal data left in an
image), with the reason and who did it; restoring puts a sample back.

Stored in the DuckLake lake (table ``exclusions``, lake migration 5), not in the app tables: a snapshot
pinned at DuckLake version V reads the exclusions as they were at V through time travel, so it gives the
same samples forever, whatever is excluded or restored later.

An append-only log rather than a flag updated in place: every exclusion and every restore is a row
(``seq`` 1, 2, 3, ... per sample) and a sample's state is its latest row. So the history (who took a
sample out, why, who put it back) is never lost, a restore cannot erase the reason an exclusion gave,
and writing is an INSERT only, which two processes can do at once without a DuckLake commit conflict on
rows that an UPDATE would rewrite.

Every filter honours the current state (curation/filters/): an excluded sample is never kept.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

import duckdb
import pyarrow as pa

from .connection import Lake, at_version

SHOWN_UNKNOWN = 5  # unknown ids named in an error (the rest are counted)
_EMPTY = "SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS VARCHAR) AS reason, CAST(NULL AS VARCHAR) AS by_user, " \
         "CAST(NULL AS TIMESTAMPTZ) AS changed_at WHERE FALSE"


class ExclusionError(ValueError):
    """An exclusion or restore that cannot be done as asked (no reason, unknown sample ids)."""


def _has_table(lake: Lake, version: int | None) -> bool:
    """Whether the log exists at ``version``: a snapshot made before lake migration 5 reads no exclusions."""
    try:
        lake.fetchall(f"SELECT 1 FROM {at_version('exclusions', version)} LIMIT 0")
        return True
    except duckdb.Error:
        return False


def _latest(version: int | None) -> str:
    return (f"SELECT sample_id, excluded, reason, by_user, changed_at, seq FROM {at_version('exclusions', version)} "
            "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY seq DESC, changed_at DESC) = 1")


def excluded_sql(lake: Lake, version: int | None = None) -> str:
    """SQL of (sample_id, reason, by_user, changed_at): the samples excluded at ``version`` (now for None),
    one row each. What the filter engine anti-joins against."""
    if not _has_table(lake, version):
        return _EMPTY
    return f"SELECT sample_id, reason, by_user, changed_at FROM ({_latest(version)}) WHERE excluded"


def _clean(sample_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(s).strip() for s in sample_ids if s is not None and str(s).strip()))


def _change(lake: Lake, sample_ids: Iterable[str], *, exclude: bool, reason: str | None, by: str) -> int:
    ids = _clean(sample_ids)
    by = (by or "").strip()
    if not by:
        raise ExclusionError("who is doing this? `by` names the user (it is kept with the change)")
    if not ids:
        return 0
    probe = pa.table({"sample_id": pa.array(ids, pa.string())})

    def body(con) -> int:
        con.register("_excl_ids", probe)
        try:
            unknown = [r[0] for r in con.execute(
                "SELECT sample_id FROM _excl_ids ANTI JOIN (SELECT DISTINCT sample_id FROM samples) USING (sample_id) ORDER BY sample_id"
            ).fetchall()]
            if unknown:
                more = len(unknown) - SHOWN_UNKNOWN
                raise ExclusionError(f"no sample with id {', '.join(unknown[:SHOWN_UNKNOWN])}" + (f" (and {more} more)" if more > 0 else "")
                                     + f"; nothing was {'excluded' if exclude else 'restored'}")
            # the latest change of each asked sample, in this transaction: only a real change is logged
            state = {r[0]: (int(r[1]), bool(r[2])) for r in con.execute(
                f"SELECT l.sample_id, l.seq, l.excluded FROM ({_latest(None)}) l SEMI JOIN _excl_ids USING (sample_id)"
            ).fetchall()}
        finally:
            con.unregister("_excl_ids")
        todo = [sid for sid in ids if state.get(sid, (0, False))[1] != exclude]
        if not todo:
            return 0
        now = datetime.now(timezone.utc)
        rows = pa.table({
            "sample_id": pa.array(todo, pa.string()),
            "seq": pa.array([state.get(sid, (0, False))[0] + 1 for sid in todo], pa.int32()),
            "excluded": pa.array([exclude] * len(todo), pa.bool_()),
            "reason": pa.array([reason] * len(todo), pa.string()),
            "by_user": pa.array([by] * len(todo), pa.string()),
            "changed_at": pa.array([now] * len(todo), pa.timestamp("us", tz="UTC")),
        })
        con.register("_excl_rows", rows)
        try:
            con.execute("INSERT INTO exclusions (sample_id, seq, excluded, reason, by_user, changed_at) "
                        "SELECT sample_id, seq, excluded, reason, by_user, changed_at FROM _excl_rows")
        finally:
            con.unregister("_excl_rows")
        return len(todo)

    return lake.transaction(body)


def exclude(lake: Lake, sample_ids: Iterable[str], *, reason: str, by: str) -> int:
    """Take samples out of the data set; returns how many were newly excluded (already excluded ones are
    left as they are, with their first reason). Unknown ids refuse the whole call, naming a few."""
    reason = (reason or "").strip()
    if not reason:
        raise ExclusionError("say why these samples are excluded (a reason is required: it is kept with them)")
    return _change(lake, sample_ids, exclude=True, reason=reason, by=by)


def restore(lake: Lake, sample_ids: Iterable[str], *, by: str) -> int:
    """Put excluded samples back; returns how many were restored (samples not excluded are left alone)."""
    return _change(lake, sample_ids, exclude=False, reason=None, by=by)


def count(lake: Lake, version: int | None = None) -> int:
    return int(lake.scalar(f"SELECT count(*) FROM ({excluded_sql(lake, version)})") or 0)


def list_excluded(lake: Lake, limit: int = 100, offset: int = 0, version: int | None = None) -> list[dict[str, Any]]:
    """The excluded samples, latest exclusion first: sample_id, reason, by, at."""
    rows = lake.fetchall(
        f"SELECT sample_id, reason, by_user, changed_at FROM ({excluded_sql(lake, version)}) ORDER BY changed_at DESC, sample_id LIMIT ? OFFSET ?",
        [int(limit), int(offset)],
    )
    return [{"sample_id": r[0], "reason": r[1], "by": r[2], "at": _utc(r[3])} for r in rows]


def history(lake: Lake, sample_id: str) -> list[dict[str, Any]]:
    """Every change of one sample, oldest first: excluded (True/False), reason, by, at."""
    if not _has_table(lake, None):
        return []
    rows = lake.fetchall("SELECT excluded, reason, by_user, changed_at FROM exclusions WHERE sample_id = ? ORDER BY seq, changed_at", [sample_id])
    return [{"excluded": bool(r[0]), "reason": r[1], "by": r[2], "at": _utc(r[3])} for r in rows]


def current(lake: Lake, sample_id: str) -> dict[str, Any] | None:
    """The exclusion in force on one sample (reason, by, at), or None when it is in the data set."""
    changes = history(lake, sample_id)
    last = changes[-1] if changes else None
    return {k: last[k] for k in ("reason", "by", "at")} if last and last["excluded"] else None


def _utc(value: datetime | None) -> datetime | None:
    """DuckDB hands TIMESTAMPTZ back in the session's time zone: in UTC, as every other time shown."""
    return value.astimezone(timezone.utc) if value is not None and value.tzinfo else value
