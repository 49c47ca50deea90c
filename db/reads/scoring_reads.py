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
            "  list(coalesce(o.text, '') ORDER BY im.position) "
            "FROM items i JOIN _probe_items p USING (item_id) JOIN images im USING (item_id) "
            "LEFT JOIN (SELECT sha256, any_value(text) AS text FROM ocr GROUP BY sha256) o ON o.sha256 = im.sha256 "
            "GROUP BY ALL"
        ).fetchall()
    cols = ["item_id", "kind", "title", "description", "feedback_text", "image_ids", "blob_paths", "ocr_texts"]
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
