"""The one way every read sees samples: each sample once (its first copy), and an item's category and
brand as its own or else its catalog product's. Pages, filters, sampling and exports count per category
through these, so their counts agree.

A product can have several catalog copies (a re-ingested source, two sources naming the same product)
whose category differs; min() picks among them, so one store version always gives one category.
"""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake, at_version

CATEGORY = "coalesce(i.category, p.category, '(none)')"  # over items ``i`` joined with products_sql() as ``p``
BRAND = "coalesce(i.brand, p.brand, '(none)')"


def products_sql(version: int | None = None, only: str = "") -> str:
    """(external_id, category, brand) of each catalog product, one row each: a subquery to alias. ``only``:
    SQL of the external ids wanted (a point read groups those products, not the whole catalog)."""
    wanted = f"AND external_id IN ({only}) " if only else ""
    return (f"(SELECT external_id, min(category) AS category, min(brand) AS brand FROM {at_version('items', version)} "
            f"WHERE kind = 'catalog' {wanted}GROUP BY external_id)")


def product_join(version: int | None = None, items: str = "i", alias: str = "p") -> str:
    """The join that gives items ``items`` their product as ``alias`` (CATEGORY, BRAND read it)."""
    return f"LEFT JOIN {products_sql(version)} {alias} ON {alias}.external_id = {items}.product_ref"


def first_samples(version: int | None = None, columns: str = "*", where: str = "") -> str:
    """Each sample's first copy (two units that raced can both have written it): a subquery to alias."""
    return (f"(SELECT {columns} FROM {at_version('samples', version)} {where} "
            "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1)")


def samples_with_images(lake: Lake, sample_ids: list[str], *, version: int | None = None) -> list[dict[str, Any]]:
    """Samples with their item's text and category, their images' blob paths and OCR text in the sample's
    image order, in the order asked; at a DuckLake version if given. Every choice among copies is by
    min(), so the same version gives the same rows (snapshot exports rely on it)."""
    if not sample_ids:
        return []
    v = version
    refs = f"SELECT product_ref FROM {at_version('items', v)} WHERE item_id IN (SELECT item_id FROM x)"
    with lake.probe("_probe_samples", "sample_id", sample_ids) as con:
        rows = con.execute(
            f"WITH x AS (SELECT s.* FROM {at_version('samples', v)} s SEMI JOIN _probe_samples USING (sample_id) "
            "  QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1), "
            # only the asked samples' products, images and OCR readings are grouped (the whole tables were:
            # seconds per call at a million samples, for one sample on Inspect); the same min() choices
            f"products AS {products_sql(v, only=refs)}, "
            "pos AS (SELECT x.sample_id, u.image_id, u.k FROM x, "
            "  LATERAL (SELECT unnest(CAST(x.image_ids AS VARCHAR[])) AS image_id, generate_subscripts(CAST(x.image_ids AS VARCHAR[]), 1) AS k) u), "
            f"imgs AS (SELECT image_id, min(blob_path) AS blob_path, min(sha256) AS sha256 FROM {at_version('images', v)} "
            "  WHERE image_id IN (SELECT image_id FROM pos) GROUP BY image_id), "
            f"texts AS (SELECT sha256, min(text) AS text FROM {at_version('ocr', v)} WHERE text IS NOT NULL "
            "  AND sha256 IN (SELECT sha256 FROM imgs) GROUP BY sha256) "
            "SELECT x.sample_id, any_value(x.task), any_value(x.question), any_value(x.answer), any_value(x.answer_format), any_value(x.label), "
            "  any_value(coalesce(i.category, p.category)), any_value(coalesce(i.title, i.feedback_text)), "
            "  list(im.blob_path ORDER BY pos.k) FILTER (WHERE im.blob_path IS NOT NULL), "
            "  list(coalesce(t.text, '') ORDER BY pos.k) FILTER (WHERE im.blob_path IS NOT NULL), "
            "  any_value(coalesce(i.product_ref, i.external_id, i.item_id)) "
            f"FROM x JOIN {at_version('items', v)} i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref "
            "LEFT JOIN pos USING (sample_id) LEFT JOIN imgs im ON im.image_id = pos.image_id LEFT JOIN texts t ON t.sha256 = im.sha256 "
            "GROUP BY x.sample_id"
        ).fetchall()
    # product: the catalog product a sample is about (a complaint's product_ref, else the item's own id),
    # what evaluation sets are split by so that evaluated products were never trained on
    cols = ["sample_id", "task", "question", "answer", "answer_format", "label", "category", "item_text", "blob_paths", "ocr_texts", "product"]
    order = {sid: k for k, sid in enumerate(sample_ids)}
    return sorted(({**dict(zip(cols, r)), "blob_paths": r[8] or [], "ocr_texts": r[9] or []} for r in rows), key=lambda r: order[r["sample_id"]])
