"""Which stats the store holds: one row per (subject kind, metric, model, segment) with how many subjects,
how many could not be scored, and the range. A picker needs no more; queries.score_summary's quantiles over
every score cost a few times as much (a page's cold start at a million samples)."""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake

COLUMNS = ("subject_kind", "metric", "model_id", "segment", "n", "missing", "min", "max")


def score_kinds(lake: Lake) -> list[dict[str, Any]]:
    rows = lake.fetchall("SELECT subject_kind, metric, model_id, segment, count(*), count(*) - count(value), min(value), max(value) "
                         "FROM scores GROUP BY ALL ORDER BY 1, 2, 3, 4")
    return [dict(zip(COLUMNS, r)) for r in rows]
