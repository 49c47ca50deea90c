"""Free tags on samples ("blurry", "needs-review", "wrong-category"), put on and taken off by curators.

Kept as the exclusions are (db/lake/exclusions.py, and for the same reasons): an append-only log in the
lake, one row per change with who and when, a (sample, tag)'s state its latest row. So a filter on tags
(``tag in blurry,needs-review``, curation/filters/) and a snapshot read the tags of their DuckLake version,
and nothing a curator did is lost.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterable

import duckdb
import pyarrow as pa

from .connection import Lake, at_version

TAG = re.compile(r"^[\w.:-]{1,60}$")  # letters (any script), digits, _ - . : ; what a filter's "tag in a,b" can name
SHOWN_UNKNOWN = 5


class TagError(ValueError):
    """Tags that cannot be put on or taken off as asked (a malformed tag, unknown samples)."""


def _has_table(lake: Lake, version: int | None) -> bool:
    try:
        lake.fetchall(f"SELECT 1 FROM {at_version('sample_tags', version)} LIMIT 0")
        return True
    except duckdb.Error:
        return False


def current_sql(lake: Lake, version: int | None = None) -> str:
    """SQL of (sample_id, tag): every tag on a sample at ``version`` (now for None), once each."""
    if not _has_table(lake, version):
        return "SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS VARCHAR) AS tag WHERE FALSE"
    return (f"SELECT sample_id, tag FROM (SELECT sample_id, tag, tagged FROM {at_version('sample_tags', version)} "
            "QUALIFY row_number() OVER (PARTITION BY sample_id, tag ORDER BY seq DESC, changed_at DESC) = 1) WHERE tagged")


def lists_sql(lake: Lake, version: int | None = None) -> str:
    """SQL of (sample_id, tags): each tagged sample's tags as a sorted list (what the filter engine joins)."""
    return f"SELECT sample_id, list(tag ORDER BY tag) AS tags FROM ({current_sql(lake, version)}) GROUP BY sample_id"


def clean_tags(tags: Iterable[str]) -> list[str]:
    out = []
    for raw in tags:
        for t in str(raw).split(","):
            t = t.strip()
            if not t:
                continue
            if not TAG.match(t):
                raise TagError(f"{t!r} is not a tag: up to 60 letters, digits and _ - . : (no spaces or commas)")
            out.append(t)
    if not out:
        raise TagError("name at least one tag")
    return list(dict.fromkeys(out))


def _change(lake: Lake, sample_ids: Iterable[str], tags: Iterable[str], *, on: bool, by: str) -> int:
    ids = list(dict.fromkeys(str(s).strip() for s in sample_ids if s is not None and str(s).strip()))
    tags = clean_tags(tags)
    by = (by or "").strip()
    if not by:
        raise TagError("who is doing this? `by` names the user (it is kept with the change)")
    if not ids:
        return 0
    probe = pa.table({"sample_id": pa.array(ids, pa.string())})

    def body(con) -> int:
        con.register("_tag_ids", probe)
        try:
            unknown = [r[0] for r in con.execute(
                "SELECT sample_id FROM _tag_ids ANTI JOIN (SELECT DISTINCT sample_id FROM samples) USING (sample_id) ORDER BY sample_id").fetchall()]
            if unknown:
                more = len(unknown) - SHOWN_UNKNOWN
                raise TagError(f"no sample with id {', '.join(unknown[:SHOWN_UNKNOWN])}" + (f" (and {more} more)" if more > 0 else "")
                               + "; no tag was changed")
            state = {(r[0], r[1]): (int(r[2]), bool(r[3])) for r in con.execute(
                "SELECT sample_id, tag, seq, tagged FROM sample_tags SEMI JOIN _tag_ids USING (sample_id) "
                "QUALIFY row_number() OVER (PARTITION BY sample_id, tag ORDER BY seq DESC, changed_at DESC) = 1").fetchall()}
        finally:
            con.unregister("_tag_ids")
        todo = [(sid, t) for sid in ids for t in tags if state.get((sid, t), (0, False))[1] != on]  # only real changes
        if not todo:
            return 0
        now = datetime.now(timezone.utc)
        rows = pa.table({
            "sample_id": pa.array([sid for sid, _ in todo], pa.string()),
            "tag": pa.array([t for _, t in todo], pa.string()),
            "seq": pa.array([state.get(key, (0, False))[0] + 1 for key in todo], pa.int32()),
            "tagged": pa.array([on] * len(todo), pa.bool_()),
            "by_user": pa.array([by] * len(todo), pa.string()),
            "changed_at": pa.array([now] * len(todo), pa.timestamp("us", tz="UTC")),
        })
        con.register("_tag_rows", rows)
        try:
            con.execute("INSERT INTO sample_tags (sample_id, tag, seq, tagged, by_user, changed_at) "
                        "SELECT sample_id, tag, seq, tagged, by_user, changed_at FROM _tag_rows")
        finally:
            con.unregister("_tag_rows")
        return len(todo)

    return lake.transaction(body)


def add(lake: Lake, sample_ids: Iterable[str], tags: Iterable[str], *, by: str) -> int:
    """Put ``tags`` on the samples; returns how many (sample, tag) pairs were new. Unknown ids or a
    malformed tag refuse the whole call."""
    return _change(lake, sample_ids, tags, on=True, by=by)


def remove(lake: Lake, sample_ids: Iterable[str], tags: Iterable[str], *, by: str) -> int:
    """Take ``tags`` off the samples; returns how many (sample, tag) pairs were on."""
    return _change(lake, sample_ids, tags, on=False, by=by)


def tags_of(lake: Lake, sample_ids: Iterable[str]) -> dict[str, list[str]]:
    """{sample: its tags, sorted} for those of ``sample_ids`` with any."""
    ids = list(dict.fromkeys(sample_ids))
    if not ids or not _has_table(lake, None):
        return {}
    with lake.probe("_probe_tags", "sample_id", ids) as con:
        rows = con.execute(f"SELECT t.sample_id, t.tags FROM ({lists_sql(lake)}) t SEMI JOIN _probe_tags USING (sample_id)").fetchall()
    return {sid: list(tags) for sid, tags in rows}


def counts(lake: Lake) -> list[tuple[str, int]]:
    """Every tag in use with its number of samples, most used first."""
    return [(t, int(n)) for t, n in lake.fetchall(f"SELECT tag, count(*) FROM ({current_sql(lake)}) GROUP BY tag ORDER BY 2 DESC, 1")]


def history(lake: Lake, sample_id: str) -> list[dict[str, Any]]:
    """Every tag change of one sample, oldest first."""
    if not _has_table(lake, None):
        return []
    rows = lake.fetchall("SELECT tag, tagged, by_user, changed_at FROM sample_tags WHERE sample_id = ? ORDER BY changed_at, tag, seq", [sample_id])
    return [{"tag": r[0], "tagged": bool(r[1]), "by": r[2], "at": r[3]} for r in rows]
