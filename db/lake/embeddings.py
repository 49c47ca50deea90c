"""Writes of image embeddings (the CLIPScore job stores each image content's CLIP vector beside its scores)."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np
import pyarrow as pa

from .batches import insert_new
from .connection import Lake
from .tables import IMAGE_EMBEDDINGS


def embeddings_table(shas: Sequence[str], model_id: str, vectors: np.ndarray, run_id: str, created_at: datetime) -> pa.Table:
    """Rows of the image_embeddings table as Arrow, the vectors passed as one flat float32 buffer (no per-row lists)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32) if n else np.zeros(1, dtype=np.int32))
    return pa.table({
        "sha256": pa.array(list(shas), pa.string()), "model_id": pa.array([model_id] * n, pa.string()),
        "dim": pa.array(np.full(n, dim, dtype=np.int32)), "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
        "run_id": pa.array([run_id] * n, pa.string()), "created_at": pa.array([created_at] * n, pa.timestamp("us", tz="UTC")),
    })


def write_embeddings(lake: Lake, run_id: str, table: pa.Table) -> int:
    """One unit's embeddings (a retried unit replaces what its run wrote); a content already embedded by the model is kept."""

    def body(con) -> int:
        con.execute("DELETE FROM image_embeddings WHERE run_id = ?", [run_id])
        return insert_new(con, IMAGE_EMBEDDINGS, table, ("sha256", "model_id"), "_new_embeddings")

    return lake.transaction(body)
