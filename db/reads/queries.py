"""Counts and summaries the command line and the UI share; SQL aggregates only, never whole tables."""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake


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
        "items_clip_scored": lake.scalar(
            "SELECT count(DISTINCT subject_id) FROM scores WHERE subject_kind = 'item' AND metric = 'clip_score' AND value IS NOT NULL"
        ),
        "samples": lake.scalar("SELECT count(*) FROM samples"),
        "sample_tasks": lake.scalar("SELECT count(DISTINCT task) FROM samples"),
        "generation_rejects": lake.scalar("SELECT count(*) FROM generation_rejects"),
        "samples_grounding_scored": lake.scalar(
            "SELECT count(DISTINCT subject_id) FROM scores WHERE subject_kind = 'sample' AND metric = 'vis_attn' AND value IS NOT NULL"
        ),
        "items_grounding_scored": lake.scalar(
            "SELECT count(DISTINCT subject_id) FROM scores WHERE subject_kind = 'item' AND metric = 'vis_attn' AND value IS NOT NULL"
        ),
    }
    # near-duplicates: the newest grouping's groups of two or more (dedup job), and the images with a CLIP vector
    from .dup_reads import groupings

    newest = groupings(lake)[:1]
    out["dup_grouping"] = newest[0] if newest else None
    row = lake.fetchone("SELECT count(DISTINCT g.value), count(*) FROM scores g JOIN scores z ON z.subject_id = g.subject_id "
                        "AND z.metric = 'dup_size' AND z.model_id = g.model_id AND z.subject_kind = 'image' "
                        "WHERE g.metric = 'dup_group' AND g.subject_kind = 'image' AND g.model_id = ? AND z.value >= 2", [out["dup_grouping"]])
    out["dup_groups"], out["dup_images"] = (int(row[0]), int(row[1])) if newest else (0, 0)
    out["images_embedded"] = lake.scalar("SELECT count(DISTINCT sha256) FROM image_embeddings")
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


def score_summary(lake: Lake, metric: str | None = None) -> list[dict[str, Any]]:
    """Per (kind, metric, model, segment): how many subjects, how many could not be scored, quantiles."""
    where, params = ("WHERE metric = ?", [metric]) if metric else ("", [])
    cols = ["subject_kind", "metric", "model_id", "segment", "n", "missing", "min", "p10", "p25", "median", "p75", "p90", "max"]
    rows = lake.fetchall(
        "SELECT subject_kind, metric, model_id, segment, count(*), count(*) - count(value), min(value), "
        "quantile_cont(value, 0.1), quantile_cont(value, 0.25), quantile_cont(value, 0.5), quantile_cont(value, 0.75), "
        f"quantile_cont(value, 0.9), max(value) FROM scores {where} GROUP BY ALL ORDER BY 1, 2, 3, 4",
        params,
    )
    return [dict(zip(cols, r)) for r in rows]


def score_threshold(lake: Lake, metric: str, percentile: float, *, model_id: str | None = None, segment: str = "", subject_kind: str | None = None) -> tuple[float | None, int]:
    """The value at a percentile (0-100) of a score within the data set, and how many values it is over.
    Thresholds set as percentiles carry across models; absolute values do not (each model scores on its own scale)."""
    if not 0 <= percentile <= 100:
        raise ValueError("percentile must be between 0 and 100")
    clauses, params = ["metric = ?", "segment = ?", "value IS NOT NULL"], [metric, segment]
    if model_id:
        clauses.append("model_id = ?")
        params.append(model_id)
    if subject_kind:
        clauses.append("subject_kind = ?")
        params.append(subject_kind)
    models = lake.fetchall(f"SELECT DISTINCT model_id FROM scores WHERE {' AND '.join(clauses)}", params)
    if len(models) > 1:
        raise ValueError(f"{metric} comes from {len(models)} models; pick one with --model: {', '.join(m for (m,) in models)}")
    kinds = lake.fetchall(f"SELECT DISTINCT subject_kind FROM scores WHERE {' AND '.join(clauses)}", params)
    if len(kinds) > 1:
        raise ValueError(f"{metric} is stored for {', '.join(sorted(k for (k,) in kinds))}; pick one with --of")
    row = lake.fetchone(f"SELECT quantile_cont(value, ?), count(*) FROM scores WHERE {' AND '.join(clauses)}", [percentile / 100.0, *params])
    return (row[0], int(row[1])) if row else (None, 0)
