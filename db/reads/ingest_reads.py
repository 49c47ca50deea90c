"""What ingestion reads back from the lake: items it holds already, the catalog's brands (redaction keeps
them), the rows a job wrote, the sources' names."""
from __future__ import annotations

from db.lake.connection import Lake


def existing_item_ids(lake: Lake, item_ids: list[str], exclude_run: str) -> set[str]:
    if not item_ids:
        return set()
    with lake.probe("_probe_ids", "item_id", item_ids) as con:
        rows = con.execute(
            "SELECT DISTINCT i.item_id FROM items i JOIN _probe_ids p USING (item_id) WHERE i.run_id <> ?",
            [exclude_run],
        ).fetchall()
    return {r[0] for r in rows}


def catalog_brands(lake: Lake, limit: int = 5000) -> tuple[str, ...]:
    """The most common brand names of catalog items: redaction never takes them for a person's name."""
    rows = lake.fetchall(
        "SELECT brand FROM items WHERE kind = 'catalog' AND brand IS NOT NULL AND length(brand) >= 2 "
        f"GROUP BY brand ORDER BY count(*) DESC, brand LIMIT {int(limit)}"
    )
    return tuple(b for (b,) in rows)


def rows_written_by_job(lake: Lake, table: str, job_id: str) -> int:
    """How many rows of ``table`` the units of a job wrote (their run ids start with the job id)."""
    if table not in ("items", "images", "ocr", "errors"):
        raise ValueError(table)
    return int(lake.scalar(f"SELECT count(*) FROM {table} WHERE starts_with(run_id, ?)", [job_id + "."]))


def source_names(lake: Lake) -> list[str]:
    return [n for (n,) in lake.fetchall("SELECT DISTINCT name FROM sources WHERE name IS NOT NULL ORDER BY name")]
