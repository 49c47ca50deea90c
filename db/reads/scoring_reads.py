"""What scoring reads: the items and samples a metric still misses for a model, and an item's images
with their OCR text."""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake


def items_without_score(lake: Lake, metrics: str | list[str], model_id: str, segment: str = "") -> list[tuple[str, int]]:
    """(item_id, a length estimate) of items with images that miss any of ``metrics`` for this model and
    segment, shortest first (batches of similar length pad little). A second run that asks for more
    (an option score) scores the items again; the rows already stored stay as they are."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    have = (
        "(SELECT count(DISTINCT s.metric) FROM scores s WHERE s.subject_kind = 'item' AND s.subject_id = i.item_id "
        f"AND s.model_id = ? AND s.segment = ? AND s.metric IN ({', '.join('?' for _ in metrics)}))"
    )
    return lake.fetchall(
        "SELECT i.item_id, length(coalesce(i.title, '') || coalesce(i.description, '') || coalesce(i.feedback_text, '')) AS n "
        f"FROM items i WHERE i.n_images > 0 AND {have} < ? ORDER BY n, i.item_id",
        [model_id, segment, *metrics, len(metrics)],
    )


def items_with_images(lake: Lake, item_ids: list[str]) -> list[dict[str, Any]]:
    """Items with their images (in order) and each image's OCR text, for a scoring unit."""
    if not item_ids:
        return []
    with lake.probe("_probe_items", "item_id", item_ids) as con:
        rows = con.execute(
            "SELECT i.item_id, i.kind, i.title, i.description, i.feedback_text, "
            "  list(im.image_id ORDER BY im.position), list(im.blob_path ORDER BY im.position), "
            "  list(coalesce(o.text, '') ORDER BY im.position), list(im.sha256 ORDER BY im.position) "
            "FROM items i JOIN _probe_items p USING (item_id) JOIN images im USING (item_id) "
            "LEFT JOIN (SELECT sha256, any_value(text) AS text FROM ocr GROUP BY sha256) o ON o.sha256 = im.sha256 "
            "GROUP BY ALL"
        ).fetchall()
    cols = ["item_id", "kind", "title", "description", "feedback_text", "image_ids", "blob_paths", "ocr_texts", "sha256s"]
    order = {item_id: k for k, item_id in enumerate(item_ids)}
    return sorted((dict(zip(cols, r)) for r in rows), key=lambda r: order[r["item_id"]])


def samples_without_score(lake: Lake, metrics: list[str], model_id: str, segment: str = "", selection: str | None = None) -> list[tuple[str, int]]:
    """(sample_id, length) of samples missing any of ``metrics`` for this model and segment (only those
    in a named selection, if given), shortest first."""
    have = (
        "(SELECT count(DISTINCT s.metric) FROM scores s WHERE s.subject_kind = 'sample' AND s.subject_id = x.sample_id "
        f"AND s.model_id = ? AND s.segment = ? AND s.metric IN ({', '.join('?' for _ in metrics)}))"
    )
    chosen = "AND x.sample_id IN (SELECT subject_id FROM selections WHERE name = ? AND subject_kind = 'sample')" if selection else ""
    return lake.fetchall(
        f"SELECT x.sample_id, length(x.question) + length(x.answer) AS n FROM samples x WHERE {have} < ? {chosen} ORDER BY n, x.sample_id",
        [model_id, segment, *metrics, len(metrics), *([selection] if selection else [])],
    )


def sample_signals(lake: Lake, *, vis_model: str, clip_model: str | None, segment: str, signals: list[str],
                   sample_ids: list[str] | None = None) -> dict[str, dict[str, float | None]]:
    """Per sample (those given, or every sample), the stored value of each grounding signal: the per-sample
    stats of ``vis_model`` at ``segment`` (vis_attn, vis_gain, blind_logp, ...) and CLIPScore, an item's
    score, by ``clip_model`` on the sample's item. What curation/calibration.py fits and predicts on."""
    if sample_ids is not None and not sample_ids:
        return {}
    own = [s for s in signals if s != "clip_score"] or ["vis_attn"]
    with_clip = "clip_score" in signals and bool(clip_model)
    cols = ", ".join("any_value(v.value) FILTER (WHERE v.metric = ?)" for _ in own)
    clip_cte = ("WITH c AS (SELECT subject_id AS item_id, any_value(value) AS clip FROM scores WHERE subject_kind = 'item' "
                "AND metric = 'clip_score' AND model_id = ? GROUP BY subject_id) ") if with_clip else ""
    only = f"AND x.sample_id IN ({', '.join('?' for _ in sample_ids)})" if sample_ids is not None else ""
    rows = lake.fetchall(
        f"{clip_cte}SELECT x.sample_id, {cols}, {'any_value(c.clip)' if with_clip else 'NULL'} FROM samples x "
        f"LEFT JOIN scores v ON v.subject_kind = 'sample' AND v.subject_id = x.sample_id AND v.model_id = ? AND v.segment = ? "
        f"AND v.metric IN ({', '.join('?' for _ in own)}) {'LEFT JOIN c ON c.item_id = x.item_id' if with_clip else ''} "
        f"WHERE true {only} GROUP BY x.sample_id",
        [*([clip_model] if with_clip else []), *own, vis_model, segment, *own, *(sample_ids or [])])
    out = {}
    for row in rows:
        values = {name: row[1 + k] for k, name in enumerate(own) if name in signals}
        if "clip_score" in signals:
            values["clip_score"] = row[-1]
        out[row[0]] = {k: (None if v is None else float(v)) for k, v in values.items()}
    return out
