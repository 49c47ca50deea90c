"""The generation context of stored items: each item with its product, OCR text, the catalog's brands
and a fixed negative title from its category (for the tasks that compare with another product)."""
from __future__ import annotations

import hashlib

from curation.generation import ItemContext
from curation.generation.facts import known_brand_index
from db.reads import generation_reads


def contexts_for(lake, item_ids: list[str], brands: dict[str, str] | None = None) -> list[ItemContext]:
    rows = generation_reads.generation_rows(lake, item_ids)
    if brands is None:
        brands = known_brand_index(generation_reads.known_brands(lake))
    negatives = generation_reads.negative_titles(lake, [r["category"] or (r["product"] or {}).get("category") for r in rows])
    out = []
    for r in rows:
        item = ItemContext(
            item_id=r["item_id"], kind=r["kind"], title=r["title"], description=r["description"], brand=r["brand"],
            category=r["category"], attributes=r["attributes"], feedback_text=r["feedback_text"], issue_type=r["issue_type"],
            image_ids=r["image_ids"], ocr_text=r["ocr_text"], product=r["product"], known_brands=brands,
        )
        own = {item.product_title, item.item_id, (item.product or {}).get("item_id")}
        category = item.product_field("category")
        candidates = negatives.get(category) or negatives.get(None) or []
        pick = [c for c in candidates if c[1] not in own and c[0] not in own]
        if pick:
            # a fixed choice per item: the same negative on every run
            choice = pick[int(hashlib.sha256(item.item_id.encode()).hexdigest(), 16) % len(pick)]
            item.negative_item_id, item.negative_title = choice
        out.append(item)
    return out
