"""Counts and summaries the command line and the UI share; SQL aggregates only, never whole tables."""
from __future__ import annotations

from typing import Any

from .lake import Lake


def stage_counts(lake: Lake) -> dict[str, Any]:
    """How far the data has come: one number per pipeline stage that exists so far."""
    items = dict(lake.fetchall("SELECT kind, count(*) FROM items GROUP BY kind"))
    out: dict[str, Any] = {
        "sources": lake.scalar("SELECT count(*) FROM sources"),
        "items": sum(items.values()),
        "items_catalog": items.get("catalog", 0),
        "items_feedback": items.get("feedback", 0),
        "items_with_images": lake.scalar("SELECT count(*) FROM items WHERE n_images > 0"),
        "images": lake.scalar("SELECT count(*) FROM images"),
        "image_contents": lake.scalar("SELECT count(DISTINCT sha256) FROM images"),
        "images_ocr": lake.scalar(
            "SELECT count(DISTINCT i.sha256) FROM images i WHERE EXISTS (SELECT 1 FROM ocr o WHERE o.sha256 = i.sha256)"
        ),
        "images_with_text": lake.scalar(
            "SELECT count(DISTINCT i.sha256) FROM images i WHERE EXISTS (SELECT 1 FROM ocr o WHERE o.sha256 = i.sha256 AND o.n_boxes > 0)"
        ),
        "errors": lake.scalar("SELECT count(*) FROM errors"),
    }
    return out


def redaction_totals(lake: Lake) -> dict[str, int]:
    rows = lake.fetchall(
        "SELECT e.key, sum(CAST(e.value AS BIGINT)) FROM items, json_each(items.redaction_counts) AS e GROUP BY e.key ORDER BY 2 DESC"
    )
    return {k: int(v) for k, v in rows}


def error_summary(lake: Lake, job_id: str | None = None) -> list[tuple[str, str, int]]:
    where, params = ("WHERE job_id = ?", [job_id]) if job_id else ("", [])
    return lake.fetchall(f"SELECT stage, code, count(*) FROM errors {where} GROUP BY stage, code ORDER BY 3 DESC, 1, 2", params)


def error_rows(lake: Lake, *, job_id: str | None = None, stage: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    clauses, params = [], []
    if job_id:
        clauses.append("job_id = ?")
        params.append(job_id)
    if stage:
        clauses.append("stage = ?")
        params.append(stage)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    cols = ["job_id", "stage", "code", "message", "row_number", "item_id", "subject", "source_row"]
    rows = lake.fetchall(
        f"SELECT {', '.join(cols)} FROM errors {where} ORDER BY created_at, row_number LIMIT {int(limit)}", params
    )
    return [dict(zip(cols, r)) for r in rows]
