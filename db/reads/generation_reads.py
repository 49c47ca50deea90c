"""What generation reads: the items still to generate for, what earlier runs did or failed at, the
pairs already stored, the items with their images and products, brands and negatives."""
from __future__ import annotations

import json
from typing import Any

from db.lake.connection import Lake


def items_to_generate(lake: Lake, tasks: list[str], backend: str, model_id: str, prompt_version: str, kinds: list[str] | None = None,
                      limit: int | None = None) -> list[str]:
    """Items with images for which some requested task has not been generated with this backend, model
    and prompt version (a resumed job skips what is done). ``limit``: only among the first N items with images
    (item id order), done or not, so that the same command run twice generates once (and pays once)."""
    kind_clause = f"AND i.kind IN ({', '.join('?' for _ in kinds)})" if kinds else ""
    cap = f"LIMIT {int(limit)}" if limit else ""
    return [
        r[0]
        for r in lake.fetchall(
            f"SELECT i.item_id FROM (SELECT * FROM items i WHERE i.n_images > 0 {kind_clause} ORDER BY i.item_id {cap}) i "
            "WHERE (SELECT count(DISTINCT g.task) FROM generation_requests g WHERE g.item_id = i.item_id "
            f"AND g.backend = ? AND g.model_id = ? AND g.prompt_version = ? AND g.task IN ({', '.join('?' for _ in tasks)})) < ? "
            "ORDER BY i.item_id",
            [*(kinds or []), backend, model_id, prompt_version, *tasks, len(tasks)],
        )
    ]


def generated_tasks(lake: Lake, item_ids: list[str], backend: str, model_id: str, prompt_version: str, exclude_run: str) -> set[tuple[str, str]]:
    """(item, task) already done with this backend, model and prompt, not counting what this unit wrote
    itself before (a retried unit redoes its own work, it does not skip it)."""
    if not item_ids:
        return set()
    rows = lake.fetchall(
        f"SELECT item_id, task FROM generation_requests WHERE backend = ? AND model_id = ? AND prompt_version = ? AND run_id <> ? "
        f"AND item_id IN ({', '.join('?' for _ in item_ids)})",
        [backend, model_id, prompt_version, exclude_run, *item_ids],
    )
    return {(a, b) for a, b in rows}


def backend_failures(lake: Lake, item_ids: list[str], backend: str, model_id: str, prompt_version: str, exclude_run: str) -> dict[tuple[str, str], int]:
    """How often earlier runs got no answer from the backend for each (item, task)."""
    if not item_ids:
        return {}
    rows = lake.fetchall(
        "SELECT item_id, task, count(*) FROM generation_rejects WHERE reason = 'backend_error' AND backend = ? AND model_id = ? "
        f"AND prompt_version = ? AND run_id <> ? AND item_id IN ({', '.join('?' for _ in item_ids)}) GROUP BY ALL",
        [backend, model_id, prompt_version, exclude_run, *item_ids],
    )
    return {(a, b): int(n) for a, b, n in rows}


def stored_pairs(lake: Lake, item_ids: list[str], exclude_run: str) -> list[tuple[str, str, str]]:
    """(item, question, answer) already stored (by other units), for duplicate detection across runs."""
    if not item_ids:
        return []
    return lake.fetchall(
        f"SELECT item_id, question, answer FROM samples WHERE run_id <> ? AND item_id IN ({', '.join('?' for _ in item_ids)})",
        [exclude_run, *item_ids],
    )


def generation_rows(lake: Lake, item_ids: list[str]) -> list[dict[str, Any]]:
    """Items with their images, OCR text, and the catalog item a complaint refers to (product_ref)."""
    if not item_ids:
        return []
    cols = ["item_id", "kind", "title", "description", "brand", "category", "attributes", "feedback_text", "issue_type",
            "product_ref", "image_ids", "ocr_text"]
    with lake.probe("_gen_items", "item_id", item_ids) as con:
        rows = con.execute(
            "SELECT i.item_id, i.kind, i.title, i.description, i.brand, i.category, i.attributes, i.feedback_text, "
            "  i.issue_type, i.product_ref, list(im.image_id ORDER BY im.position), "
            "  string_agg(o.text, ' ' ORDER BY im.position) "
            "FROM items i JOIN _gen_items USING (item_id) JOIN images im USING (item_id) "
            "LEFT JOIN (SELECT sha256, any_value(text) AS text FROM ocr GROUP BY sha256) o ON o.sha256 = im.sha256 "
            "GROUP BY ALL"
        ).fetchall()
        refs = sorted({r[9] for r in rows if r[9]})
        products = {}
        if refs:
            for ref, item_id, title, description, brand, category, attributes, image_ids in con.execute(
                "SELECT i.external_id, any_value(i.item_id), any_value(i.title), any_value(i.description), any_value(i.brand), "
                "  any_value(i.category), any_value(i.attributes), "
                "  list(im.image_id ORDER BY im.position) FILTER (WHERE im.image_id IS NOT NULL) "
                "FROM items i LEFT JOIN images im USING (item_id) "
                f"WHERE i.kind = 'catalog' AND i.external_id IN ({', '.join('?' for _ in refs)}) GROUP BY i.external_id",
                refs,
            ).fetchall():
                products[ref] = {"item_id": item_id, "title": title, "description": description, "brand": brand, "category": category,
                                 "attributes": json.loads(attributes) if attributes else {}, "image_ids": image_ids or []}
    out = []
    for r in rows:
        row = dict(zip(cols, r))
        row["attributes"] = json.loads(row["attributes"]) if row["attributes"] else {}
        row["product"] = products.get(row["product_ref"]) if row["product_ref"] else None
        out.append(row)
    order = {item_id: k for k, item_id in enumerate(item_ids)}
    return sorted(out, key=lambda r: order[r["item_id"]])


def known_brands(lake: Lake, limit: int = 200_000) -> list[str]:
    """The brands the catalog's brand column names (to find them in titles of items that have none)."""
    return [r[0] for r in lake.fetchall(
        "SELECT brand FROM items WHERE kind = 'catalog' AND brand IS NOT NULL AND length(trim(brand)) > 1 "
        "GROUP BY brand ORDER BY count(*) DESC, brand LIMIT ?", [limit])]


def negative_titles(lake: Lake, categories: list[str | None], per_category: int = 20) -> dict[str | None, list[tuple[str, str]]]:
    """A few catalog (item_id, title) per category, in a fixed pseudo-random order: negatives for
    matching questions. Key None: any category (for items that have none)."""
    wanted = sorted({c for c in categories if c})
    out: dict[str | None, list[tuple[str, str]]] = {}
    if wanted:
        rows = lake.fetchall(
            "SELECT category, item_id, title FROM (SELECT category, item_id, title, row_number() OVER "
            "(PARTITION BY category ORDER BY hash(item_id)) AS k FROM items WHERE kind = 'catalog' AND title IS NOT NULL "
            f"AND category IN ({', '.join('?' for _ in wanted)})) WHERE k <= ? ORDER BY category, k",
            [*wanted, per_category],
        )
        for category, item_id, title in rows:
            out.setdefault(category, []).append((item_id, title))
    out[None] = lake.fetchall(
        "SELECT item_id, title FROM items WHERE kind = 'catalog' AND title IS NOT NULL ORDER BY hash(item_id) LIMIT ?", [per_category * 5]
    )
    return out
