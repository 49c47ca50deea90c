"""Reads behind the generation quality report: per task, how varied the answers are and how much of each
item's own data they carry. SQL aggregates in DuckDB; the report's arithmetic is in
``curation/generation/report.py``."""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake

TOP_ANSWERS = 3
ALL = "*"  # the key of every backend's samples together in the per-backend reads
NO_BACKEND = ""  # the key of samples without a backend


def _keyed(backend: str | None, by_backend: bool, alias: str = "") -> tuple[str, str, list[Any]]:
    """(key column, WHERE clause, parameters): every sample once under ALL, or one backend's under ALL, or
    (``by_backend``) every sample twice, under its backend and under ALL, so one pass serves every backend."""
    if by_backend:
        return f"unnest([coalesce({alias}backend, '{NO_BACKEND}'), '{ALL}']) AS k", "", []
    if backend:
        return f"'{ALL}' AS k", f"WHERE {alias}backend = ?", [backend]
    return f"'{ALL}' AS k", "", []


def _task_rows(lake: Lake, backend: str | None, by_backend: bool) -> dict[str, list[dict[str, Any]]]:
    key, where, args = _keyed(backend, by_backend, "x.")
    rows = lake.fetchall(
        f"WITH s AS (SELECT {key}, x.task, x.answer, x.label, coalesce(i.product_ref, i.external_id, i.item_id) AS product "
        f"  FROM samples x JOIN items i USING (item_id) {where}), "
        # products per answer in two plain aggregates (per answer and product, then per answer): several
        # times faster than count(DISTINCT) per group at a million samples
        "pairs AS (SELECT k, task, answer, label, product, count(*) AS n FROM s GROUP BY ALL), "
        "counts AS (SELECT k, task, answer, label, sum(n) AS n, count(*) AS products FROM pairs GROUP BY ALL), "
        "per_task AS (SELECT k, task, sum(n)::BIGINT AS n, count(*)::BIGINT AS distinct_answers, (sum(n) FILTER (WHERE label IS NOT NULL))::BIGINT AS verdicts, "
        "  (sum(n) FILTER (WHERE answer ILIKE '%unanswerable%'))::BIGINT AS unanswerable, "
        "  (max(products) FILTER (WHERE label IS NULL AND products > 1))::BIGINT AS top_other FROM counts GROUP BY k, task), "
        # only repeated answers can be among the top ones (one sample is one product, ranked below any n > 1),
        # so the ranking sorts those, not every distinct answer
        "ranked AS (SELECT *, row_number() OVER (PARTITION BY k, task ORDER BY products DESC, n DESC, answer) AS r FROM counts WHERE n > 1), "
        f"top AS (SELECT k, task, list([answer, n::VARCHAR, products::VARCHAR, coalesce(label, '')] ORDER BY r) AS top FROM ranked WHERE r <= {TOP_ANSWERS} GROUP BY k, task) "
        "SELECT t.k, t.task, t.n, t.distinct_answers, t.verdicts, t.unanswerable, t.top_other, top.top FROM per_task t LEFT JOIN top USING (k, task) ORDER BY t.k, t.task",
        args,
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for k, task, n, distinct, verdicts, unanswerable, top_other, top in rows:
        out.setdefault(k, []).append({
            "task": task, "samples": int(n), "distinct_answers": int(distinct), "yes_no": int(verdicts or 0),
            "unanswerable": int(unanswerable or 0), "most_repeated_other": int(top_other or 0),
            "top_answers": [{"answer": a, "count": int(c), "products": int(p), "yes_no": bool(lbl)} for a, c, p, lbl in (top or [])],
        })
    return out


def task_rows(lake: Lake, backend: str | None = None) -> list[dict[str, Any]]:
    """Per task: samples, distinct answers, yes/no verdicts, answers holding "Unanswerable", and the answers
    most repeated across products.

    A repetition is one answer for different products: the facts of one product are rightly the same answer
    for each of its photos (its catalog photo and every complaint's), while one sentence for many products
    is a stock answer. The product of a complaint is the catalog item it refers to."""
    return _task_rows(lake, backend, False).get(ALL, [])


def _coverage_rows(lake: Lake, backend: str | None, by_backend: bool) -> dict[str, dict[str, tuple[int, int]]]:
    key, where, args = _keyed(backend, by_backend)
    rows = lake.fetchall(
        "WITH vals AS (SELECT item_id, lower(trim(CAST(e.value AS VARCHAR))) AS value FROM ("
        "    SELECT item_id, unnest(map_entries(TRY_CAST(attributes AS MAP(VARCHAR, VARCHAR)))) AS e FROM items "
        "    WHERE attributes IS NOT NULL AND attributes::VARCHAR NOT IN ('{}', 'null')) "
        "  WHERE length(trim(CAST(e.value AS VARCHAR))) > 0), "
        f"answers AS (SELECT k, item_id, task, lower(string_agg(answer, ' ')) AS text FROM (SELECT {key}, item_id, task, answer FROM samples {where}) "
        "  GROUP BY 1, 2, 3) "
        "SELECT a.k, a.task, count(*)::BIGINT, (count(*) FILTER (WHERE contains(a.text, v.value)))::BIGINT "
        "FROM answers a JOIN vals v USING (item_id) GROUP BY 1, 2",
        args,
    )
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for k, task, n, hit in rows:
        out.setdefault(k, {})[task] = (int(n), int(hit))
    return out


def coverage_rows(lake: Lake, backend: str | None = None) -> dict[str, tuple[int, int]]:
    """Per task: (attribute values of the items that have samples of the task, how many of them appear in
    some answer of that item and task). Values and answers are compared lower-cased."""
    return _coverage_rows(lake, backend, False).get(ALL, {})


def rows_by_backend(lake: Lake) -> dict[str, tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]]:
    """{ALL, each backend (NO_BACKEND for samples without one): (task_rows, coverage_rows)} in one pass over
    the samples per read: switching the backend on a page is then a lookup (a second ~1.4 s of aggregates
    per backend at a million samples, before)."""
    tasks, cover = _task_rows(lake, None, True), _coverage_rows(lake, None, True)
    return {k: (rows, cover.get(k, {})) for k, rows in tasks.items()}


def backends(lake: Lake) -> list[str | None]:
    """The generation backends the samples come from (None for samples without one), sorted: the page asks
    for a backend's report only when it has samples, and "all" of one backend is that backend's report."""
    return [b for (b,) in lake.fetchall("SELECT DISTINCT backend FROM samples ORDER BY 1 NULLS LAST")]
