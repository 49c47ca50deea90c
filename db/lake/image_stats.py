"""Stats computed per image content and written per image: each image gets the value of its content, and a new
computation replaces the rows of its (metric, model) whole, in one transaction (the clusters and map jobs)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from .connection import Lake
from .tables import SCORES


def replace_image_stats(lake: Lake, *, model_id: str, shas: Sequence[str], values: dict[str, np.ndarray], run_id: str) -> int:
    """For each ``metric: values`` (values[k] is the value of content ``shas[k]``; NaN is stored as NULL), remove the
    stored rows of (metric, ``model_id``) and write one row per image whose content is among ``shas``. Images whose
    content is not there get no row (not computed, e.g. no embedding). Returns the images written per metric."""
    table = pa.table({"sha256": pa.array(list(shas), pa.string()),
                      **{f"v{k}": pa.array(np.asarray(v, dtype=np.float64), pa.float64(), from_pandas=True) for k, v in enumerate(values.values())}})

    def body(con) -> int:
        con.register("_image_values", table)
        try:
            written = 0
            for k, metric in enumerate(values):
                con.execute("DELETE FROM scores WHERE metric = ? AND model_id = ?", [metric, model_id])
                con.execute(
                    f"INSERT INTO scores ({SCORES.names()}) SELECT 'image', i.image_id, ?, ?, '', CASE WHEN isnan(v.v{k}) THEN NULL ELSE v.v{k} END, "
                    "CAST(NULL AS JSON), ?, now() FROM (SELECT image_id, min(sha256) AS sha256 FROM images GROUP BY image_id) i "
                    "JOIN _image_values v USING (sha256)", [metric, model_id, run_id])
                written = con.execute("SELECT count(*) FROM scores WHERE metric = ? AND model_id = ?", [metric, model_id]).fetchone()[0]
            return int(written)
        finally:
            con.unregister("_image_values")

    return lake.transaction(body)
