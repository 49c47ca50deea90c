"""Stratified sampling in SQL: at most N per stratum of (category, brand, region, issue type, time bucket, k-means
cluster of the item's first image),
deterministic for a seed, written as a named selection. Runs inside DuckDB: millions of rows never go
through Python.

Each subject's rank within its stratum is the md5 of seed and id: a fixed shuffle for a seed, the same
in any DuckDB version.
"""
from __future__ import annotations

from typing import Any

from db.reads.samples_view import product_join

from .connection import Lake

STRATA = ("category", "brand", "region", "issue_type", "time", "cluster")
TIME_BUCKETS = {"month": "%Y-%m", "quarter": None, "year": "%Y"}


def _stratum_columns(by: list[str], time_bucket: str) -> list[str]:
    """SQL for each stratum column over the subject rows ``s`` (a complaint takes its product's
    category and brand when it has none of its own)."""
    exprs = {
        # the k-means cluster of the item's first image (the clusters job), as text like the other strata
        "cluster": "coalesce(CAST(CAST(s.cluster AS BIGINT) AS VARCHAR), '(none)')",
        "category": "coalesce(s.category, s.p_category, '(none)')",
        "brand": "coalesce(s.brand, s.p_brand, '(none)')",
        "region": "coalesce(s.region, '(none)')",
        "issue_type": "coalesce(s.issue_type, '(none)')",
    }
    # buckets in UTC: the session's time zone (the machine's) must not move an item to another month
    utc = "timezone('UTC', s.event_time)"
    if time_bucket == "quarter":
        exprs["time"] = f"coalesce(strftime({utc}, '%Y') || '-Q' || CAST(quarter({utc}) AS VARCHAR), '(none)')"
    else:
        exprs["time"] = f"coalesce(strftime({utc}, '{TIME_BUCKETS[time_bucket]}'), '(none)')"
    return [f"{exprs[b]} AS {b if b != 'time' else 'time_bucket'}" for b in by]


def newest_clustering(lake: Lake) -> str | None:
    """The model id of the clusters stored last (``kmeans:K@MODEL``), None where the clusters job has not run."""
    found = lake.fetchone("SELECT model_id FROM scores WHERE metric = 'cluster' GROUP BY model_id ORDER BY max(created_at) DESC, model_id LIMIT 1")
    return found[0] if found else None


def _subjects(of: str, tasks: list[str] | None, clustering: str | None = None) -> tuple[str, list[Any]]:
    cluster, params = "CAST(NULL AS DOUBLE) AS cluster", []
    if clustering is not None:
        cluster = ("(SELECT min(c.value) FROM images im JOIN scores c ON c.subject_kind = 'image' AND c.subject_id = im.image_id "
                   "AND c.metric = 'cluster' AND c.model_id = ? WHERE im.item_id = i.item_id AND im.position = 0) AS cluster")
        params = [clustering]
    items = (
        f"SELECT i.item_id, i.category, i.brand, i.region, i.issue_type, i.event_time, p.category AS p_category, p.brand AS p_brand, {cluster} "
        f"FROM items i {product_join()}"
    )
    if of == "items":
        return f"SELECT item_id AS subject_id, * EXCLUDE (item_id) FROM ({items})", params
    task_clause = f"WHERE x.task IN ({', '.join('?' for _ in tasks)})" if tasks else ""
    return (f"SELECT x.sample_id AS subject_id, it.* EXCLUDE (item_id) FROM samples x JOIN ({items}) it USING (item_id) {task_clause}",
            [*params, *(tasks or [])])


def stratified(lake: Lake, *, by: list[str], per_stratum: int, seed: int = 0, of: str = "samples", time_bucket: str = "month",
               tasks: list[str] | None = None) -> tuple[str, list[Any], list[str]]:
    """(SQL selecting subject_id + strata + keep flag, its parameters, the stratum column names)."""
    unknown = [b for b in by if b not in STRATA]
    if unknown or not by:
        raise ValueError(f"stratify by one or more of {', '.join(STRATA)} (got {', '.join(by) or 'nothing'})")
    if of not in ("samples", "items"):
        raise ValueError("sample --of samples or items")
    if time_bucket not in TIME_BUCKETS:
        raise ValueError(f"time bucket: {', '.join(TIME_BUCKETS)}")
    if per_stratum < 1:
        raise ValueError("per stratum must be at least 1")
    clustering = None
    if "cluster" in by:
        clustering = newest_clustering(lake)
        if clustering is None:
            raise ValueError("no clusters yet to stratify by: run `vitpro clusters` first (after `vitpro score clip`)")
    subjects, params = _subjects(of, tasks, clustering)
    columns = _stratum_columns(by, time_bucket)
    names = [b if b != "time" else "time_bucket" for b in by]
    sql = (
        f"SELECT subject_id, {', '.join(names)}, row_number() OVER (PARTITION BY {', '.join(names)} "
        f"ORDER BY md5(CAST(? AS VARCHAR) || ':' || subject_id)) <= ? AS keep "
        f"FROM (SELECT s.subject_id, {', '.join(columns)} FROM ({subjects}) s)"
    )
    return sql, [seed, per_stratum, *params], names


def balance(lake: Lake, sql: str, params: list[Any], names: list[str]) -> list[tuple]:
    """(stratum values..., before, after) per stratum, largest first."""
    return lake.fetchall(
        f"SELECT {', '.join(names)}, count(*) AS before, count(*) FILTER (WHERE keep) AS after FROM ({sql}) "
        f"GROUP BY ALL ORDER BY before DESC, {', '.join(names)}",
        params,
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def write_selection(lake: Lake, name: str, sql: str, params: list[Any], names: list[str], seed: int, of: str, run_id: str) -> int:
    kind = "sample" if of == "samples" else "item"
    stratum = "json_object(" + ", ".join(f"'{n}', {n}" for n in names) + ")"

    def body(con) -> int:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _vitpro_new_selection AS SELECT ?::VARCHAR AS subject_kind, subject_id::VARCHAR AS subject_id, "
                    f"{stratum}::VARCHAR AS stratum, ?::BIGINT AS seed FROM ({sql}) WHERE keep", [kind, seed, *params])
        try:
            old = f"SELECT subject_kind, subject_id, stratum::VARCHAR, seed::BIGINT FROM selections WHERE name = {_quote(name)}"
            differ = con.execute(f"SELECT (SELECT count(*) FROM ({old} EXCEPT ALL SELECT * FROM _vitpro_new_selection)) "
                                 f"+ (SELECT count(*) FROM (SELECT * FROM _vitpro_new_selection EXCEPT ALL {old}))").fetchone()[0]
            if differ == 0:  # the same selection again: nothing written, so the store's version (and every cache keyed by it) stays
                return int(con.execute("SELECT count(*) FROM _vitpro_new_selection").fetchone()[0])
            con.execute("DELETE FROM selections WHERE name = ?", [name])
            con.execute("INSERT INTO selections (name, subject_kind, subject_id, stratum, seed, run_id, created_at) "
                        "SELECT ?, subject_kind, subject_id, stratum, seed, ?, now() FROM _vitpro_new_selection", [name, run_id])
            return int(con.execute("SELECT count(*) FROM selections WHERE name = ?", [name]).fetchone()[0])
        finally:
            con.execute("DROP TABLE IF EXISTS _vitpro_new_selection")

    return lake.transaction(body)


def selection_names(lake: Lake) -> list[tuple[str, str, int]]:
    return lake.fetchall("SELECT name, any_value(subject_kind), count(*) FROM selections GROUP BY name ORDER BY name")
