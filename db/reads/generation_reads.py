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


# A sample's product, as the quality report counts products (db/reads/quality.py): the catalog item a complaint
# refers to, else the item itself.
_PRODUCT = "coalesce(i.product_ref, i.external_id, i.item_id)"


def answer_products(lake: Lake, backend: str, item_ids: list[str], answers: list[tuple[str, str]], exclude_run: str
                    ) -> tuple[dict[str, str], dict[tuple[str, str], tuple[int, frozenset[str]]], dict[str, int]]:
    """What the repetition rule needs before a unit writes (curation/generation/repeats.py), not counting the
    unit's own earlier writes:

    * each of ``item_ids`` -> its product;
    * each (task, answer) of ``answers`` already stored as an answer that is not a yes/no verdict -> (the
      products it is given for, over every backend; those of ``item_ids``' products among them);
    * per task of ``answers``: this backend's samples.
    """
    if not item_ids or not answers:  # nothing that could repeat
        return {}, {}, {}
    with lake.probe("_rep_items", "item_id", list(dict.fromkeys(item_ids))) as con:
        product_of = dict(con.execute(f"SELECT i.item_id, {_PRODUCT} FROM items i JOIN _rep_items USING (item_id)").fetchall())
    tasks = sorted({t for t, _ in answers})
    in_tasks = f"task IN ({', '.join('?' for _ in tasks)})"
    mine = sorted(set(product_of.values())) or [""]  # an IN list may not be empty
    with lake.probe("_rep_answers", "answer", sorted({a for _, a in answers})) as con:
        rows = con.execute(
            f"WITH p AS (SELECT s.task, s.answer, {_PRODUCT} AS product FROM samples s JOIN _rep_answers USING (answer) "
            f"  JOIN items i USING (item_id) WHERE s.run_id <> ? AND s.label IS NULL AND s.{in_tasks} GROUP BY ALL) "
            f"SELECT task, answer, count(*), list(product) FILTER (WHERE product IN ({', '.join('?' for _ in mine)})) FROM p GROUP BY ALL",
            [exclude_run, *tasks, *mine],
        ).fetchall()
    stored = {(task, answer): (int(n), frozenset(known or ())) for task, answer, n, known in rows}
    samples = dict(lake.fetchall(f"SELECT task, count(*) FROM samples WHERE backend = ? AND run_id <> ? AND {in_tasks} GROUP BY task",
                                 [backend, exclude_run, *tasks]))
    return product_of, stored, {t: int(n) for t, n in samples.items()}


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


# ---- LLM usage and the response cache (curation/generation/usage.py) ----------------------------------------
def cached_responses(lake: Lake, fingerprints: list[str]) -> dict[str, dict[str, Any]]:
    """The cached response of each of these request fingerprints that has one (its first stored answer)."""
    if not fingerprints:
        return {}
    with lake.probe("_probe_cache", "fingerprint", list(dict.fromkeys(fingerprints))) as con:
        rows = con.execute(
            "SELECT c.fingerprint, any_value(c.text ORDER BY c.created_at), any_value(c.finish_reason ORDER BY c.created_at), "
            "any_value(c.prompt_tokens ORDER BY c.created_at), any_value(c.completion_tokens ORDER BY c.created_at), "
            "any_value(c.counted_by ORDER BY c.created_at) FROM llm_cache c JOIN _probe_cache p USING (fingerprint) GROUP BY 1").fetchall()
    return {fp: {"text": text, "finish_reason": finish, "prompt_tokens": pt, "completion_tokens": ct, "counted_by": by}
            for fp, text, finish, pt, ct, by in rows}


def completion_lengths(lake: Lake, model_id: str, tasks: list[str], limit: int = 5000) -> list[int]:
    """Completion tokens of this model's latest answered requests for these tasks (what the estimate expects)."""
    if not tasks:
        return []
    return [int(r[0]) for r in lake.fetchall(
        f"SELECT completion_tokens FROM llm_calls WHERE model_id = ? AND outcome = 'ok' AND completion_tokens IS NOT NULL "
        f"AND task IN ({', '.join('?' for _ in tasks)}) ORDER BY created_at DESC LIMIT {int(limit)}", [model_id, *tasks])]


def usage_by_job(lake: Lake, job_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Per generation job and model: requests sent, answered from the cache, failed, tokens in and out, latency
    (what `vitpro generate report` shows beside the samples' quality), newest job first."""
    where = f"WHERE job_id IN ({', '.join('?' for _ in job_ids)})" if job_ids else ""
    rows = lake.fetchall(
        "SELECT job_id, model_id, count(*) FILTER (WHERE outcome <> 'cached'), count(*) FILTER (WHERE outcome = 'cached'), "
        "count(*) FILTER (WHERE outcome NOT IN ('ok', 'cached')), coalesce(sum(prompt_tokens) FILTER (WHERE outcome <> 'cached'), 0), "
        "coalesce(sum(completion_tokens) FILTER (WHERE outcome <> 'cached'), 0), coalesce(sum(seconds), 0), "
        "count(*) FILTER (WHERE counted_by = 'estimate' AND outcome <> 'cached'), max(created_at) "
        f"FROM llm_calls {where} GROUP BY 1, 2 ORDER BY max(created_at) DESC", job_ids or [])
    keys = ("job_id", "model_id", "requests", "cached", "failed", "prompt_tokens", "completion_tokens", "seconds", "estimated", "last")
    return [dict(zip(keys, r)) for r in rows]


def unit_batch(lake: Lake, run_id: str) -> dict[str, Any] | None:
    """The newest Batch API batch this unit submitted, with its last known status (None: it submitted none)."""
    row = lake.fetchone(
        "SELECT batch_id, input_file_id, requests, arg_max(status, created_at), min(created_at) FROM llm_batches WHERE run_id = ? "
        "GROUP BY batch_id, input_file_id, requests ORDER BY min(created_at) DESC LIMIT 1", [run_id])
    return None if row is None else {"batch_id": row[0], "input_file_id": row[1], "requests": row[2], "status": row[3]}
