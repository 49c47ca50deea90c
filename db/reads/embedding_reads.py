"""What the stages over CLIP image embeddings read: which models embedded the store's images, and the vectors."""
from __future__ import annotations

import numpy as np

from db.lake.connection import Lake


def embedding_models(lake: Lake) -> dict[str, int]:
    """{model id: image contents embedded}, the model with the most first."""
    return {m: int(n) for m, n in lake.fetchall(
        "SELECT model_id, count(DISTINCT sha256) FROM image_embeddings GROUP BY model_id ORDER BY 2 DESC, 1")}


def embeddings(lake: Lake, model_id: str) -> tuple[list[str], np.ndarray]:
    """(sha256s, an n x dim float32 matrix) of the stored image contents' vectors of ``model_id``, one per content, sha256 order."""
    table = lake.fetch_arrow(
        "SELECT sha256, vector FROM image_embeddings WHERE model_id = ? QUALIFY row_number() OVER (PARTITION BY sha256 ORDER BY created_at, run_id) = 1 "
        "ORDER BY sha256", [model_id])
    shas = table.column("sha256").to_pylist()
    if not shas:
        return [], np.zeros((0, 0), dtype=np.float32)
    flat = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
    return shas, flat.reshape(len(shas), -1)


def items_without_embedding(lake: Lake, model_id: str) -> list[str]:
    """Items with an image the model scored (a CLIPScore) but whose content it has no vector of: scored before the
    job stored embeddings. An image it could not read has no score value and is not asked for again."""
    return [i for (i,) in lake.fetchall(
        "SELECT DISTINCT im.item_id FROM images im JOIN scores s ON s.subject_kind = 'image' AND s.subject_id = im.image_id "
        "  AND s.metric = 'clip_score' AND s.model_id = ? AND s.value IS NOT NULL "
        "WHERE NOT EXISTS (SELECT 1 FROM image_embeddings e WHERE e.sha256 = im.sha256 AND e.model_id = ?) ORDER BY 1", [model_id, model_id])]
