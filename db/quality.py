"""Reads behind the generation quality report: per task, how varied the answers are and how much of each
item's own data they carry. SQL aggregates in DuckDB; the report's arithmetic is in
``curation/generation/report.py``."""
from __future__ import annotations

from typing import Any

from .lake import Lake

TOP_ANSWERS = 3


def _where(backend: str | None, alias: str = "") -> tuple[str, list[Any]]:
    return (f"WHERE {alias}backend = ?", [backend]) if backend else ("", [])


def task_rows(lake: Lake, backend: str | None = None) -> list[dict[str, Any]]:
    """Per task: samples, distinct answers, yes/no verdicts, answers holding "Unanswerable", and the answers
    most repeated across products.

    A repetition is one answer for different products: the facts of one product are rightly the same answer
    for each of its photos (its catalog photo and every complaint's), while one sentence for many products
    is a stock answer. The product of a complaint is the catalog item it refers to."""
    where, args = _where(backend, "x.")
    rows = lake.fetchall(
        f"WITH s AS (SELECT x.task, x.answer, x.label, coalesce(i.product_ref, i.external_id, i.item_id) AS product "
        f"  FROM samples x JOIN items i USING (item_id) {where}), "
        # products per answer in two plain aggregates (per answer and product, then per answer): several
        # times faster than count(DISTINCT) per group at a million samples
        "pairs AS (SELECT task, answer, label, product, count(*) AS n FROM s GROUP BY ALL), "
        "counts AS (SELECT task, answer, label, sum(n) AS n, count(*) AS products FROM pairs GROUP BY ALL), "
        "per_task AS (SELECT task, sum(n)::BIGINT AS n, count(*)::BIGINT AS distinct_answers, (sum(n) FILTER (WHERE label IS NOT NULL))::BIGINT AS verdicts, "
        "  (sum(n) FILTER (WHERE answer ILIKE '%unanswerable%'))::BIGINT AS unanswerable, "
        "  (max(products) FILTER (WHERE label IS NULL AND products > 1))::BIGINT AS top_other FROM counts GROUP BY task), "
        # only repeated answers can be among the top ones (one sample is one product, ranked below any n > 1),
        # so the ranking sorts those, not every distinct answer
        "ranked AS (SELECT *, row_number() OVER (PARTITION BY task ORDER BY products DESC, n DESC, answer) AS k FROM counts WHERE n > 1), "
        f"top AS (SELECT task, list([answer, n::VARCHAR, products::VARCHAR, coalesce(label, '')] ORDER BY k) AS top FROM ranked WHERE k <= {TOP_ANSWERS} GROUP BY task) "
        "SELECT t.task, t.n, t.distinct_answers, t.verdicts, t.unanswerable, t.top_other, top.top FROM per_task t LEFT JOIN top USING (task) ORDER BY t.task",
        args,
    )
    out = []
    for task, n, distinct, verdicts, unanswerable, top_other, top in rows:
        out.append({
            "task": task, "samples": int(n), "distinct_answers": int(distinct), "yes_no": int(verdicts or 0),
            "unanswerable": int(unanswerable or 0), "most_repeated_other": int(top_other or 0),
            "top_answers": [{"answer": a, "count": int(c), "products": int(p), "yes_no": bool(lbl)} for a, c, p, lbl in (top or [])],
        })
    return out


def coverage_rows(lake: Lake, backend: str | None = None) -> dict[str, tuple[int, int]]:
    """Per task: (attribute values of the items that have samples of the task, how many of them appear in
    some answer of that item and task). Values and answers are compared lower-cased."""
    where, args = _where(backend)
    rows = lake.fetchall(
        "WITH vals AS (SELECT item_id, lower(trim(CAST(e.value AS VARCHAR))) AS value FROM ("
        "    SELECT item_id, unnest(map_entries(TRY_CAST(attributes AS MAP(VARCHAR, VARCHAR)))) AS e FROM items "
        "    WHERE attributes IS NOT NULL AND attributes::VARCHAR NOT IN ('{}', 'null')) "
        "  WHERE length(trim(CAST(e.value AS VARCHAR))) > 0), "
        f"answers AS (SELECT item_id, task, lower(string_agg(answer, ' ')) AS text FROM samples {where} GROUP BY 1, 2) "
        "SELECT a.task, count(*)::BIGINT, (count(*) FILTER (WHERE contains(a.text, v.value)))::BIGINT "
        "FROM answers a JOIN vals v USING (item_id) GROUP BY 1",
        args,
    )
    return {task: (int(n), int(hit)) for task, n, hit in rows}


def backends(lake: Lake) -> list[str | None]:
    """The generation backends the samples come from (None for samples without one), sorted: the page asks
    for a backend's report only when it has samples, and "all" of one backend is that backend's report."""
    return [b for (b,) in lake.fetchall("SELECT DISTINCT backend FROM samples ORDER BY 1 NULLS LAST")]
