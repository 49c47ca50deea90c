"""A few samples in brief (task, question, first image), for a strip of examples such as the samples on
either side of a threshold: point reads of the asked samples and their first images only, where
samples_view.samples_with_images (everything an export needs) groups every image and OCR reading of the store
first (seconds at a million samples)."""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake


def briefs(lake: Lake, sample_ids: list[str]) -> dict[str, dict[str, Any]]:
    """{sample id: {task, question, blob_path (of its first image; None without one)}}; unknown ids are left out.
    Where a sample or an image has copies, min() chooses (the same rows every time)."""
    if not sample_ids:
        return {}
    with lake.probe("_probe_briefs", "sample_id", list(sample_ids)) as con:
        rows = con.execute(
            "WITH x AS (SELECT sample_id, min(task) AS task, min(question) AS question, "
            "    min(CAST(image_ids AS VARCHAR[])[1]) AS image_id FROM samples SEMI JOIN _probe_briefs USING (sample_id) GROUP BY sample_id), "
            "im AS (SELECT image_id, min(blob_path) AS blob_path FROM images WHERE image_id IN (SELECT image_id FROM x) GROUP BY image_id) "
            "SELECT x.sample_id, x.task, x.question, im.blob_path FROM x LEFT JOIN im USING (image_id)"
        ).fetchall()
    return {sid: {"task": task, "question": question, "blob_path": blob} for sid, task, question, blob in rows}
