"""Reads behind the web app's Overview and Inspect pages: SQL aggregates in DuckDB, a page of rows at a
time (never the whole table into pandas), one sample's full record with its scores, percentiles and
per-token grounding."""
from __future__ import annotations

import json
from typing import Any

from . import batches
from .lake import Lake

ORDERS = {
    "newest": "x.created_at DESC, x.sample_id",
    "VisAttnScore, lowest first": "v.value ASC NULLS LAST, x.sample_id",
    "VisAttnScore, highest first": "v.value DESC NULLS LAST, x.sample_id",
    "CLIPScore, lowest first": "c.value ASC NULLS LAST, x.sample_id",
    "CLIPScore, highest first": "c.value DESC NULLS LAST, x.sample_id",
}


def demo_scores(lake: Lake) -> int:
    """Scores written by demo (tiny, random) models: the app shows a banner while any are on screen."""
    return int(lake.scalar("SELECT count(*) FROM scores WHERE coalesce(TRY_CAST(flags->>'demo_model' AS BOOLEAN), FALSE)") or 0)


def funnel(lake: Lake) -> list[tuple[str, int]]:
    """Raw pairs to scored samples, one count per stage (kept and snapshotted are added by the caller,
    which knows the filter and snapshot)."""
    row = lake.fetchone(
        "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM items WHERE n_images > 0), "
        "(SELECT count(DISTINCT item_id) FROM samples), (SELECT count(*) FROM samples), "
        "(SELECT count(DISTINCT subject_id) FROM selections WHERE subject_kind = 'sample'), "
        "(SELECT count(DISTINCT subject_id) FROM scores WHERE subject_kind = 'sample' AND metric = 'vis_attn' AND value IS NOT NULL)"
    )
    names = ("image-text pairs ingested", "with a usable image", "items with generated samples", "samples generated",
             "samples in a stratified selection", "samples with VisAttnScore")
    return list(zip(names, (int(v or 0) for v in row)))


def per_task_category(lake: Lake) -> list[dict[str, Any]]:
    """Samples and scored samples per (task, category)."""
    rows = lake.fetchall(
        "WITH products AS (SELECT external_id, min(category) AS category FROM items WHERE kind = 'catalog' GROUP BY external_id) "
        "SELECT x.task, coalesce(i.category, p.category, '(none)') AS category, count(*) AS samples, "
        "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM scores v WHERE v.subject_kind = 'sample' AND v.subject_id = x.sample_id "
        "  AND v.metric = 'vis_attn' AND v.value IS NOT NULL)) AS scored "
        "FROM samples x JOIN items i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref "
        "GROUP BY ALL ORDER BY 1, 2"
    )
    return [dict(zip(("task", "category", "samples", "scored"), r)) for r in rows]


def facets(lake: Lake) -> dict[str, list[str]]:
    tasks = [t for (t,) in lake.fetchall("SELECT DISTINCT task FROM samples ORDER BY 1")]
    cats = [c for (c,) in lake.fetchall(
        "WITH products AS (SELECT external_id, min(category) AS category FROM items WHERE kind = 'catalog' GROUP BY external_id) "
        "SELECT DISTINCT coalesce(i.category, p.category, '(none)') FROM samples x JOIN items i USING (item_id) "
        "LEFT JOIN products p ON p.external_id = i.product_ref ORDER BY 1")]
    return {"task": tasks, "category": cats}


def _score_join(alias: str, kind: str, metric: str, model: str | None, segment: str, key: str) -> tuple[str, list[Any]]:
    if not model:
        return f"LEFT JOIN (SELECT NULL AS subject_id, CAST(NULL AS DOUBLE) AS value) {alias} ON FALSE", []
    return (f"LEFT JOIN (SELECT subject_id, any_value(value) AS value FROM scores WHERE subject_kind = ? AND metric = ? AND model_id = ? "
            f"AND segment = ? GROUP BY subject_id) {alias} ON {alias}.subject_id = {key}", [kind, metric, model, segment])


def browse(lake: Lake, *, vis_model: str | None, clip_model: str | None, tasks: list[str] = (), categories: list[str] = (),
           text: str = "", order: str = "newest", limit: int = 50, offset: int = 0, segment: str = "answer") -> tuple[int, list[dict[str, Any]]]:
    """(matching samples, one page of them) with their two scores."""
    vjoin, vparams = _score_join("v", "sample", "vis_attn", vis_model, segment, "x.sample_id")
    cjoin, cparams = _score_join("c", "item", "clip_score", clip_model, "", "x.item_id")
    where, wparams = ["TRUE"], []
    if tasks:
        where.append(f"x.task IN ({', '.join('?' for _ in tasks)})")
        wparams += list(tasks)
    if categories:
        where.append(f"coalesce(i.category, p.category, '(none)') IN ({', '.join('?' for _ in categories)})")
        wparams += list(categories)
    if text.strip():
        where.append("(x.question ILIKE ? OR x.answer ILIKE ? OR i.title ILIKE ?)")
        like = f"%{text.strip()}%"
        wparams += [like, like, like]
    base = (
        "WITH products AS (SELECT external_id, min(category) AS category FROM items WHERE kind = 'catalog' GROUP BY external_id), "
        "x AS (SELECT * FROM samples QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1) "
        "SELECT x.sample_id, x.task, coalesce(i.category, p.category, '(none)') AS category, x.question, x.answer, v.value AS vis, c.value AS clip "
        f"FROM x JOIN items i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref {vjoin} {cjoin} "
        f"WHERE {' AND '.join(where)}"
    )
    params = vparams + cparams + wparams
    total = int(lake.scalar(f"SELECT count(*) FROM ({base})", params) or 0)
    rows = lake.fetchall(f"{base} ORDER BY {ORDERS.get(order, ORDERS['newest'])} LIMIT ? OFFSET ?", params + [limit, offset])
    cols = ("sample_id", "task", "category", "question", "answer", "vis_attn", "clip_score")
    return total, [dict(zip(cols, r)) for r in rows]


def percentile(lake: Lake, *, kind: str, metric: str, model: str, segment: str, value: float | None) -> float | None:
    """Share (0-100) of the scored subjects below ``value``: where it stands in the data set."""
    if value is None:
        return None
    below, n = lake.fetchone(
        "SELECT count(*) FILTER (WHERE value < ?), count(*) FROM (SELECT subject_id, any_value(value) AS value FROM scores "
        "WHERE subject_kind = ? AND metric = ? AND model_id = ? AND segment = ? AND value IS NOT NULL GROUP BY subject_id)",
        [value, kind, metric, model, segment],
    )
    return 100.0 * below / n if n else None


def _loads(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None


def sample_record(lake: Lake, sample_id: str, *, vis_model: str | None, clip_model: str | None, blob_root) -> dict[str, Any] | None:
    """Everything Inspect shows of one sample: text, images, OCR, lineage, scores with percentiles, and
    the per-token grounding of each scored segment."""
    found = batches.samples_with_images(lake, [sample_id])
    if not found:
        return None
    r = found[0]
    meta = lake.fetchone(
        "SELECT x.backend, x.model_id, x.prompt_version, x.lineage, x.item_id, i.kind, i.title, s.name, s.uri, x.created_at, x.evidence "
        "FROM samples x JOIN items i USING (item_id) LEFT JOIN sources s ON s.source_id = i.source_id WHERE x.sample_id = ? "
        "ORDER BY x.created_at LIMIT 1", [sample_id])
    out: dict[str, Any] = {
        **{k: r[k] for k in ("sample_id", "task", "question", "answer", "answer_format", "label", "category", "item_text", "product")},
        "images": [str(blob_root / b) for b in r["blob_paths"]], "ocr": r["ocr_texts"],
        "lineage": {"backend": meta[0], "generator": meta[1], "prompt_version": meta[2], "item_id": meta[4], "item_kind": meta[5],
                    "source": meta[7], "source_uri": meta[8], "created_at": str(meta[9]), **(_loads(meta[3]) or {})},
        "evidence": _loads(meta[10]), "scores": {}, "tokens": {},
    }
    if vis_model:
        for segment, value, mass in lake.fetchall(
            "SELECT segment, any_value(value) FILTER (WHERE metric = 'vis_attn'), any_value(value) FILTER (WHERE metric = 'vis_attn_mass') "
            "FROM scores WHERE subject_kind = 'sample' AND subject_id = ? AND model_id = ? AND metric IN ('vis_attn', 'vis_attn_mass') GROUP BY segment",
            [sample_id, vis_model]):
            out["scores"][f"vis_attn/{segment}"] = {
                "value": value, "mass": mass, "model": vis_model,
                "percentile": percentile(lake, kind="sample", metric="vis_attn", model=vis_model, segment=segment, value=value)}
        for segment, tokens, scores, words, word_scores in lake.fetchall(
            "SELECT segment, any_value(tokens), any_value(scores), any_value(words), any_value(word_scores) FROM token_scores "
            "WHERE subject_kind = 'sample' AND subject_id = ? AND model_id = ? GROUP BY segment", [sample_id, vis_model]):
            out["tokens"][segment] = {"tokens": _loads(tokens) or [], "scores": _loads(scores) or [],
                                      "words": _loads(words) or [], "word_scores": _loads(word_scores) or []}
    if clip_model:
        value = lake.scalar("SELECT any_value(value) FROM scores WHERE subject_kind = 'item' AND subject_id = ? AND metric = 'clip_score' AND model_id = ?",
                            [meta[4], clip_model])
        out["scores"]["clip_score"] = {"value": value, "model": clip_model,
                                       "percentile": percentile(lake, kind="item", metric="clip_score", model=clip_model, segment="", value=value)}
    return out
