"""What the demo's summary reads from the store besides the stage counts: the OCR check on the catalog
photos, a sample complaint, the least grounded text and the samples and rejects per task."""
from __future__ import annotations

import json
from typing import Any

from db.lake.connection import Lake


def catalog_brands_and_ocr(lake: Lake) -> list[tuple[str | None, str | None]]:
    """(brand, OCR text) of every catalog photo that was read."""
    return lake.fetchall(
        "SELECT it.brand, o.text FROM items it JOIN images im USING (item_id) JOIN ocr o ON o.sha256 = im.sha256 "
        "WHERE it.kind = 'catalog'"
    )


def first_feedback_text(lake: Lake, source_name: str) -> str | None:
    row = lake.fetchone(
        "SELECT feedback_text FROM items WHERE kind = 'feedback' AND source_id IN (SELECT source_id FROM sources WHERE name = ?) "
        "ORDER BY row_number LIMIT 1", [source_name]
    )
    return row[0] if row else None


def least_grounded_words(lake: Lake) -> list[tuple[str, float]] | None:
    """The words and word scores of the scored subject with the lowest VisAttnScore (any model)."""
    row = lake.fetchone(
        "SELECT t.words, t.word_scores FROM token_scores t JOIN scores s ON s.subject_id = t.subject_id AND s.metric = 'vis_attn' AND s.value IS NOT NULL "
        "AND s.model_id = t.model_id ORDER BY s.value LIMIT 1"
    )
    return list(zip(json.loads(row[0]), json.loads(row[1]))) if row else None


def samples_per_task(lake: Lake) -> list[tuple[str, int]]:
    return lake.fetchall("SELECT task, count(*) FROM samples GROUP BY task ORDER BY task")


def rejects_per_reason(lake: Lake) -> list[tuple[Any, ...]]:
    """(backend, reason, count), most frequent first."""
    return lake.fetchall("SELECT backend, reason, count(*) FROM generation_rejects GROUP BY ALL ORDER BY 3 DESC")
