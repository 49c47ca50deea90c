"""What the OCR stage reads: the image contents an engine has not read yet, and what redaction removed
from the text it read."""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake


def images_without_ocr(
    lake: Lake,
    engine: str,
    *,
    source: str | None = None,
    where: list[tuple[str, Any]] | None = None,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """(sha256, blob path) of the stored image contents the engine (its label) has not read yet, in
    sha256 order: only images of items of the source named ``source``; only images where every
    ``where`` test holds (SQL over ``images i`` with one ``?`` each, built from curation.ocr's field
    whitelist, never from user text); at most ``limit`` of them."""
    clauses, params = ["NOT EXISTS (SELECT 1 FROM ocr o WHERE o.sha256 = i.sha256 AND o.engine = ?)"], [engine]
    if source is not None:
        clauses.append("i.item_id IN (SELECT it.item_id FROM items it JOIN sources s USING (source_id) WHERE s.name = ?)")
        params.append(source)
    for test, value in where or ():
        clauses.append(test)
        params.append(value)
    cap = f" LIMIT {int(limit)}" if limit is not None else ""
    return lake.fetchall(
        f"SELECT i.sha256, min(i.blob_path) FROM images i WHERE {' AND '.join(clauses)} GROUP BY i.sha256 ORDER BY i.sha256{cap}",
        params,
    )


def ocr_redaction_totals(lake: Lake) -> dict[str, int]:
    """Personal data removed from OCR text (a shipping label's name, phone, address), per kind."""
    rows = lake.fetchall(
        "SELECT e.key, sum(CAST(e.value AS BIGINT)) FROM ocr, json_each(ocr.redaction_counts) AS e "
        "WHERE ocr.redaction_counts IS NOT NULL GROUP BY e.key ORDER BY 2 DESC, 1"
    )
    return {k: int(v) for k, v in rows}
