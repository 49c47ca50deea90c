"""Idempotent batch writes to the lake: what a unit wrote is replaced, never doubled.

Each ``write_*`` runs one transaction that (1) deletes every row the unit's ``run_id`` wrote before (a
retried unit), (2) inserts only keys the store does not hold yet (a re-ingested source, a unit that
overlaps another), and (3) returns how many rows went in. Rows travel as Arrow tables: one INSERT per
batch, not one per row.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable

import pyarrow as pa

from .lake import Lake, at_version

ITEM_COLUMNS = [
    ("item_id", pa.string()),
    ("source_id", pa.string()),
    ("external_id", pa.string()),
    ("row_number", pa.int64()),
    ("kind", pa.string()),
    ("feedback_type", pa.string()),
    ("product_ref", pa.string()),
    ("title", pa.string()),
    ("description", pa.string()),
    ("brand", pa.string()),
    ("category", pa.string()),
    ("attributes", pa.string()),  # JSON
    ("feedback_text", pa.string()),
    ("region", pa.string()),
    ("event_time", pa.timestamp("us", tz="UTC")),
    ("issue_type", pa.string()),
    ("language", pa.string()),
    ("redaction_counts", pa.string()),  # JSON
    ("text_notes", pa.string()),  # JSON
    ("n_images", pa.int32()),
    ("run_id", pa.string()),
    ("ingested_at", pa.timestamp("us", tz="UTC")),
]
IMAGE_COLUMNS = [
    ("image_id", pa.string()),
    ("item_id", pa.string()),
    ("position", pa.int32()),
    ("source_ref", pa.string()),
    ("sha256", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("format", pa.string()),
    ("n_bytes", pa.int64()),
    ("blob_path", pa.string()),
    ("run_id", pa.string()),
    ("ingested_at", pa.timestamp("us", tz="UTC")),
]
ERROR_COLUMNS = [
    ("job_id", pa.string()),
    ("run_id", pa.string()),
    ("stage", pa.string()),
    ("code", pa.string()),
    ("message", pa.string()),
    ("source_id", pa.string()),
    ("row_number", pa.int64()),
    ("item_id", pa.string()),
    ("subject", pa.string()),
    ("source_row", pa.string()),  # JSON
    ("created_at", pa.timestamp("us", tz="UTC")),
]
OCR_COLUMNS = [
    ("sha256", pa.string()),
    ("engine", pa.string()),
    ("text", pa.string()),
    ("n_boxes", pa.int32()),
    ("mean_confidence", pa.float64()),
    ("boxes", pa.string()),  # JSON
    ("redaction_counts", pa.string()),  # JSON
    ("seconds", pa.float64()),
    ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]
JSON_COLUMNS = {"attributes", "redaction_counts", "text_notes", "source_row", "boxes", "mapping"}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def arrow_table(columns: list[tuple[str, pa.DataType]], rows: Iterable[dict[str, Any]]) -> pa.Table:
    rows = list(rows)
    data = {}
    for name, dtype in columns:
        values = [row.get(name) for row in rows]
        if name in JSON_COLUMNS:
            values = [v if v is None or isinstance(v, str) else to_json(v) for v in values]
        data[name] = pa.array(values, type=dtype)
    return pa.table(data)


def _select_list(columns: list[tuple[str, pa.DataType]], alias: str) -> str:
    return ", ".join(f"{alias}.{name}::JSON" if name in JSON_COLUMNS else f"{alias}.{name}" for name, _ in columns)


def _names(columns) -> str:
    return ", ".join(name for name, _ in columns)


def existing_item_ids(lake: Lake, item_ids: list[str], exclude_run: str) -> set[str]:
    if not item_ids:
        return set()
    table = pa.table({"item_id": pa.array(item_ids, pa.string())})
    with lake._lock:
        lake.con.register("_probe_ids", table)
        try:
            rows = lake.con.execute(
                "SELECT DISTINCT i.item_id FROM items i JOIN _probe_ids p USING (item_id) WHERE i.run_id <> ?",
                [exclude_run],
            ).fetchall()
        finally:
            lake.con.unregister("_probe_ids")
    return {r[0] for r in rows}


def write_ingest_batch(
    lake: Lake,
    run_id: str,
    items: list[dict[str, Any]],
    images: list[dict[str, Any]],
    errors: list[dict[str, Any]],
) -> dict[str, int]:
    """Replace this unit's rows; items already in the store are skipped, with their images."""
    items_t = arrow_table(ITEM_COLUMNS, items)
    images_t = arrow_table(IMAGE_COLUMNS, images)
    errors_t = arrow_table(ERROR_COLUMNS, errors)

    def body(con) -> dict[str, int]:
        for table in ("items", "images", "errors"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        con.register("_new_items", items_t)
        con.register("_new_images", images_t)
        con.register("_new_errors", errors_t)
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _fresh AS SELECT n.item_id FROM _new_items n "
                "WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.item_id = n.item_id)"
            )
            fresh = con.execute("SELECT count(*) FROM _fresh").fetchone()[0]
            con.execute(
                f"INSERT INTO items ({_names(ITEM_COLUMNS)}) SELECT {_select_list(ITEM_COLUMNS, 'n')} "
                "FROM _new_items n WHERE n.item_id IN (SELECT item_id FROM temp._fresh)"
            )
            con.execute(
                f"INSERT INTO images ({_names(IMAGE_COLUMNS)}) SELECT {_select_list(IMAGE_COLUMNS, 'n')} "
                "FROM _new_images n WHERE n.item_id IN (SELECT item_id FROM temp._fresh)"
            )
            n_images = con.execute(
                "SELECT count(*) FROM _new_images WHERE item_id IN (SELECT item_id FROM temp._fresh)"
            ).fetchone()[0]
            con.execute(f"INSERT INTO errors ({_names(ERROR_COLUMNS)}) SELECT {_select_list(ERROR_COLUMNS, 'n')} FROM _new_errors n")
            return {"inserted": int(fresh), "images_inserted": int(n_images)}
        finally:
            for name in ("_new_items", "_new_images", "_new_errors"):
                con.unregister(name)

    return lake.transaction(body)


def dedupe_items(lake: Lake, source_id: str) -> int:
    """Keep the first copy of each item of a source (two units that raced on a duplicate row can both
    insert it; DuckLake has no unique constraint to stop them). Returns how many copies went."""

    def body(con) -> int:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _dups AS SELECT item_id, run_id FROM ("
            "  SELECT item_id, run_id, row_number() OVER (PARTITION BY item_id ORDER BY ingested_at, run_id, row_number) AS k"
            "  FROM items WHERE source_id = ?) WHERE k > 1",
            [source_id],
        )
        n = con.execute("SELECT count(*) FROM temp._dups").fetchone()[0]
        if n:
            con.execute(
                "DELETE FROM items WHERE source_id = ? AND EXISTS (SELECT 1 FROM temp._dups d WHERE d.item_id = items.item_id AND d.run_id = items.run_id)",
                [source_id],
            )
            con.execute(
                "DELETE FROM images WHERE EXISTS (SELECT 1 FROM temp._dups d WHERE d.item_id = images.item_id AND d.run_id = images.run_id)"
            )
        return int(n)

    return lake.transaction(body)


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


def write_source(lake: Lake, row: dict[str, Any]) -> None:
    def body(con) -> None:
        con.execute("DELETE FROM sources WHERE source_id = ?", [row["source_id"]])
        con.execute(
            "INSERT INTO sources (source_id, name, uri, format, item_kind, file_sha256, file_bytes, mapping, redacted, job_id, run_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?::JSON, ?, ?, ?, ?)",
            [
                row["source_id"], row["name"], row["uri"], row["format"], row["item_kind"], row["file_sha256"],
                row["file_bytes"], to_json(row["mapping"]), row["redacted"], row["job_id"], row["run_id"], row["created_at"],
            ],
        )

    lake.transaction(body)


# ---- OCR ---------------------------------------------------------------------------------------------
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


def write_ocr_batch(lake: Lake, run_id: str, rows: list[dict[str, Any]], errors: list[dict[str, Any]]) -> int:
    """A unit's readings and errors; in the same transaction the readings of the same images under other
    labels (another engine, other settings, an older recipe) are removed: prompts, exports and OCR stats
    take "the" text of an image, so the store keeps one reading per image content, the newest (older
    ones stay in the lake's history). Returns how many readings went in."""
    ocr_t = arrow_table(OCR_COLUMNS, rows)
    errors_t = arrow_table(ERROR_COLUMNS, errors)

    def body(con) -> int:
        con.execute("DELETE FROM ocr WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM errors WHERE run_id = ?", [run_id])
        con.register("_new_ocr", ocr_t)
        con.register("_new_errors", errors_t)
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE _ocr_superseded AS SELECT DISTINCT sha256, engine FROM _new_ocr")
            con.execute(
                "DELETE FROM ocr WHERE EXISTS (SELECT 1 FROM temp._ocr_superseded n WHERE n.sha256 = ocr.sha256 AND n.engine <> ocr.engine)"
            )
            n = con.execute(
                "SELECT count(*) FROM _new_ocr n WHERE NOT EXISTS (SELECT 1 FROM ocr o WHERE o.sha256 = n.sha256 AND o.engine = n.engine)"
            ).fetchone()[0]
            con.execute(
                f"INSERT INTO ocr ({_names(OCR_COLUMNS)}) SELECT {_select_list(OCR_COLUMNS, 'n')} FROM _new_ocr n "
                "WHERE NOT EXISTS (SELECT 1 FROM ocr o WHERE o.sha256 = n.sha256 AND o.engine = n.engine)"
            )
            con.execute(f"INSERT INTO errors ({_names(ERROR_COLUMNS)}) SELECT {_select_list(ERROR_COLUMNS, 'n')} FROM _new_errors n")
            return int(n)
        finally:
            con.unregister("_new_ocr")
            con.unregister("_new_errors")

    return lake.transaction(body)


def dedupe_ocr(lake: Lake, engine: str) -> int:
    def body(con) -> int:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _odups AS SELECT sha256, run_id FROM ("
            " SELECT sha256, run_id, row_number() OVER (PARTITION BY sha256 ORDER BY created_at, run_id) AS k FROM ocr WHERE engine = ?"
            ") WHERE k > 1",
            [engine],
        )
        n = con.execute("SELECT count(*) FROM temp._odups").fetchone()[0]
        if n:
            con.execute(
                "DELETE FROM ocr WHERE engine = ? AND EXISTS (SELECT 1 FROM temp._odups d WHERE d.sha256 = ocr.sha256 AND d.run_id = ocr.run_id)",
                [engine],
            )
        return int(n)

    return lake.transaction(body)


# ---- scores ------------------------------------------------------------------------------------------
SCORE_COLUMNS = [
    ("subject_kind", pa.string()),
    ("subject_id", pa.string()),
    ("metric", pa.string()),
    ("model_id", pa.string()),
    ("segment", pa.string()),
    ("value", pa.float64()),
    ("flags", pa.string()),  # JSON
    ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]
TOKEN_SCORE_COLUMNS = [
    ("subject_kind", pa.string()),
    ("subject_id", pa.string()),
    ("model_id", pa.string()),
    ("segment", pa.string()),
    ("tokens", pa.string()),
    ("token_ids", pa.string()),
    ("scores", pa.string()),
    ("mass", pa.string()),
    ("words", pa.string()),
    ("word_scores", pa.string()),
    ("positions", pa.string()),
    ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]
JSON_COLUMNS |= {"flags", "tokens", "token_ids", "scores", "mass", "words", "word_scores", "positions"}
_SCORE_KEY = ("subject_kind", "subject_id", "metric", "model_id", "segment")
_TOKEN_KEY = ("subject_kind", "subject_id", "model_id", "segment")


def _not_stored(table: str, key: tuple[str, ...], alias: str = "n") -> str:
    cond = " AND ".join(f"t.{k} = {alias}.{k}" for k in key)
    return f"NOT EXISTS (SELECT 1 FROM {table} t WHERE {cond})"


def write_scores(
    lake: Lake,
    run_id: str,
    scores: list[dict[str, Any]],
    token_scores: list[dict[str, Any]] = (),
    errors: list[dict[str, Any]] = (),
) -> int:
    """Replace this unit's score rows; a (subject, metric, model, segment) already stored is kept."""
    scores_t = arrow_table(SCORE_COLUMNS, scores)
    tokens_t = arrow_table(TOKEN_SCORE_COLUMNS, token_scores)
    errors_t = arrow_table(ERROR_COLUMNS, errors)

    def body(con) -> int:
        for table in ("scores", "token_scores", "errors"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        con.register("_new_scores", scores_t)
        con.register("_new_tokens", tokens_t)
        con.register("_new_errors", errors_t)
        try:
            n = con.execute(f"SELECT count(*) FROM _new_scores n WHERE {_not_stored('scores', _SCORE_KEY)}").fetchone()[0]
            con.execute(
                f"INSERT INTO scores ({_names(SCORE_COLUMNS)}) SELECT {_select_list(SCORE_COLUMNS, 'n')} "
                f"FROM _new_scores n WHERE {_not_stored('scores', _SCORE_KEY)}"
            )
            con.execute(
                f"INSERT INTO token_scores ({_names(TOKEN_SCORE_COLUMNS)}) SELECT {_select_list(TOKEN_SCORE_COLUMNS, 'n')} "
                f"FROM _new_tokens n WHERE {_not_stored('token_scores', _TOKEN_KEY)}"
            )
            con.execute(f"INSERT INTO errors ({_names(ERROR_COLUMNS)}) SELECT {_select_list(ERROR_COLUMNS, 'n')} FROM _new_errors n")
            return int(n)
        finally:
            for name in ("_new_scores", "_new_tokens", "_new_errors"):
                con.unregister(name)

    return lake.transaction(body)


def dedupe_scores(lake: Lake, model_id: str) -> int:
    """Keep one row per (subject, metric, model, segment): two units that raced may both have inserted."""

    def body(con) -> int:
        keys = ", ".join(_SCORE_KEY)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _sdups AS SELECT {keys}, run_id FROM ("
            f" SELECT {keys}, run_id, row_number() OVER (PARTITION BY {keys} ORDER BY created_at, run_id) AS k"
            " FROM scores WHERE model_id = ?) WHERE k > 1",
            [model_id],
        )
        n = con.execute("SELECT count(*) FROM temp._sdups").fetchone()[0]
        if n:
            cond = " AND ".join(f"d.{k} = scores.{k}" for k in _SCORE_KEY)
            con.execute(f"DELETE FROM scores WHERE EXISTS (SELECT 1 FROM temp._sdups d WHERE {cond} AND d.run_id = scores.run_id)")
        return int(n)

    return lake.transaction(body)


def items_without_score(lake: Lake, metrics: str | list[str], model_id: str, segment: str = "") -> list[tuple[str, int]]:
    """(item_id, a length estimate) of items with images that miss any of ``metrics`` for this model and
    segment, shortest first (batches of similar length pad little). A second run that asks for more
    (an option score) scores the items again; the rows already stored stay as they are."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    have = (
        "(SELECT count(DISTINCT s.metric) FROM scores s WHERE s.subject_kind = 'item' AND s.subject_id = i.item_id "
        f"AND s.model_id = ? AND s.segment = ? AND s.metric IN ({', '.join('?' for _ in metrics)}))"
    )
    return lake.fetchall(
        "SELECT i.item_id, length(coalesce(i.title, '') || coalesce(i.description, '') || coalesce(i.feedback_text, '')) AS n "
        f"FROM items i WHERE i.n_images > 0 AND {have} < ? ORDER BY n, i.item_id",
        [model_id, segment, *metrics, len(metrics)],
    )


def items_with_images(lake: Lake, item_ids: list[str]) -> list[dict[str, Any]]:
    """Items with their images (in order) and each image's OCR text, for a scoring unit."""
    if not item_ids:
        return []
    probe = pa.table({"item_id": pa.array(item_ids, pa.string())})
    with lake._lock:
        lake.con.register("_probe_items", probe)
        try:
            rows = lake.con.execute(
                "SELECT i.item_id, i.kind, i.title, i.description, i.feedback_text, "
                "  list(im.image_id ORDER BY im.position), list(im.blob_path ORDER BY im.position), "
                "  list(coalesce(o.text, '') ORDER BY im.position) "
                "FROM items i JOIN _probe_items p USING (item_id) JOIN images im USING (item_id) "
                "LEFT JOIN (SELECT sha256, any_value(text) AS text FROM ocr GROUP BY sha256) o ON o.sha256 = im.sha256 "
                "GROUP BY ALL"
            ).fetchall()
        finally:
            lake.con.unregister("_probe_items")
    cols = ["item_id", "kind", "title", "description", "feedback_text", "image_ids", "blob_paths", "ocr_texts"]
    order = {item_id: k for k, item_id in enumerate(item_ids)}
    return sorted((dict(zip(cols, r)) for r in rows), key=lambda r: order[r["item_id"]])


def write_ocr_stats(lake: Lake, run_id: str) -> int:
    """ocr_chars and ocr_boxes per image (model_id: the OCR engine) for images that have none yet."""

    def body(con) -> int:
        con.execute("DELETE FROM scores WHERE run_id = ?", [run_id])
        # a reading with other settings or engine replaced the image's older one: its stats go with it
        con.execute(
            "DELETE FROM scores WHERE subject_kind = 'image' AND metric IN ('ocr_chars', 'ocr_boxes') AND NOT EXISTS "
            "(SELECT 1 FROM images im JOIN ocr o ON o.sha256 = im.sha256 WHERE im.image_id = scores.subject_id AND o.engine = scores.model_id)"
        )
        written = 0
        for metric, expr in (("ocr_chars", "length(o.text)"), ("ocr_boxes", "o.n_boxes")):
            source = (
                f"SELECT DISTINCT 'image' AS subject_kind, im.image_id AS subject_id, '{metric}' AS metric, o.engine AS model_id, "
                f"'' AS segment, CAST({expr} AS DOUBLE) AS value FROM images im JOIN ocr o ON o.sha256 = im.sha256"
            )
            missing = (
                "NOT EXISTS (SELECT 1 FROM scores s WHERE s.subject_kind = n.subject_kind AND s.subject_id = n.subject_id "
                "AND s.metric = n.metric AND s.model_id = n.model_id AND s.segment = n.segment)"
            )
            written += con.execute(f"SELECT count(*) FROM ({source}) n WHERE {missing}").fetchone()[0]
            con.execute(
                f"INSERT INTO scores ({_names(SCORE_COLUMNS)}) SELECT n.subject_kind, n.subject_id, n.metric, n.model_id, "
                f"n.segment, n.value, NULL, ?, now() FROM ({source}) n WHERE {missing}",
                [run_id],
            )
        return int(written)

    return lake.transaction(body)


# ---- generation ----------------------------------------------------------------------------------------
SAMPLE_COLUMNS = [
    ("sample_id", pa.string()),
    ("item_id", pa.string()),
    ("task", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("answer_format", pa.string()),
    ("image_ids", pa.string()),  # JSON
    ("label", pa.string()),
    ("backend", pa.string()),
    ("model_id", pa.string()),
    ("prompt_version", pa.string()),
    ("lineage", pa.string()),  # JSON
    ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("evidence", pa.string()),  # JSON
]
REJECT_COLUMNS = [
    ("item_id", pa.string()),
    ("task", pa.string()),
    ("backend", pa.string()),
    ("model_id", pa.string()),
    ("prompt_version", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("raw_response", pa.string()),
    ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]
REQUEST_COLUMNS = [
    ("item_id", pa.string()),
    ("task", pa.string()),
    ("backend", pa.string()),
    ("model_id", pa.string()),
    ("prompt_version", pa.string()),
    ("n_samples", pa.int32()),
    ("n_rejects", pa.int32()),
    ("run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]
JSON_COLUMNS |= {"image_ids", "lineage", "evidence"}
_REQUEST_KEY = ("item_id", "task", "backend", "model_id", "prompt_version")


def items_to_generate(lake: Lake, tasks: list[str], backend: str, model_id: str, prompt_version: str, kinds: list[str] | None = None) -> list[str]:
    """Items with images for which some requested task has not been generated with this backend, model
    and prompt version (a resumed job skips what is done)."""
    kind_clause = f"AND i.kind IN ({', '.join('?' for _ in kinds)})" if kinds else ""
    return [
        r[0]
        for r in lake.fetchall(
            "SELECT i.item_id FROM items i WHERE i.n_images > 0 "
            f"{kind_clause} AND (SELECT count(DISTINCT g.task) FROM generation_requests g WHERE g.item_id = i.item_id "
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
    probe = pa.table({"item_id": pa.array(item_ids, pa.string())})
    cols = ["item_id", "kind", "title", "description", "brand", "category", "attributes", "feedback_text", "issue_type",
            "product_ref", "image_ids", "ocr_text"]
    with lake._lock:
        lake.con.register("_gen_items", probe)
        try:
            rows = lake.con.execute(
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
                for ref, item_id, title, description, brand, category, attributes, image_ids in lake.con.execute(
                    "SELECT i.external_id, any_value(i.item_id), any_value(i.title), any_value(i.description), any_value(i.brand), "
                    "  any_value(i.category), any_value(i.attributes), "
                    "  list(im.image_id ORDER BY im.position) FILTER (WHERE im.image_id IS NOT NULL) "
                    "FROM items i LEFT JOIN images im USING (item_id) "
                    f"WHERE i.kind = 'catalog' AND i.external_id IN ({', '.join('?' for _ in refs)}) GROUP BY i.external_id",
                    refs,
                ).fetchall():
                    products[ref] = {"item_id": item_id, "title": title, "description": description, "brand": brand, "category": category,
                                     "attributes": json.loads(attributes) if attributes else {}, "image_ids": image_ids or []}
        finally:
            lake.con.unregister("_gen_items")
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


def write_generation(lake: Lake, run_id: str, samples: list[dict], rejects: list[dict], requests: list[dict]) -> int:
    samples_t = arrow_table(SAMPLE_COLUMNS, samples)
    rejects_t = arrow_table(REJECT_COLUMNS, rejects)
    requests_t = arrow_table(REQUEST_COLUMNS, requests)

    def body(con) -> int:
        for table in ("samples", "generation_rejects", "generation_requests"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        con.register("_new_samples", samples_t)
        con.register("_new_rejects", rejects_t)
        con.register("_new_requests", requests_t)
        try:
            missing = "NOT EXISTS (SELECT 1 FROM samples t WHERE t.sample_id = n.sample_id)"
            n = con.execute(f"SELECT count(*) FROM _new_samples n WHERE {missing}").fetchone()[0]
            con.execute(f"INSERT INTO samples ({_names(SAMPLE_COLUMNS)}) SELECT {_select_list(SAMPLE_COLUMNS, 'n')} FROM _new_samples n WHERE {missing}")
            con.execute(f"INSERT INTO generation_rejects ({_names(REJECT_COLUMNS)}) SELECT {_select_list(REJECT_COLUMNS, 'n')} FROM _new_rejects n")
            con.execute(
                f"INSERT INTO generation_requests ({_names(REQUEST_COLUMNS)}) SELECT {_select_list(REQUEST_COLUMNS, 'n')} "
                f"FROM _new_requests n WHERE {_not_stored('generation_requests', _REQUEST_KEY)}"
            )
            return int(n)
        finally:
            for name in ("_new_samples", "_new_rejects", "_new_requests"):
                con.unregister(name)

    return lake.transaction(body)


def dedupe_samples(lake: Lake) -> int:
    def body(con) -> int:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _sample_dups AS SELECT sample_id, run_id FROM (SELECT sample_id, run_id, "
            "row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) AS k FROM samples) WHERE k > 1"
        )
        n = con.execute("SELECT count(*) FROM temp._sample_dups").fetchone()[0]
        if n:
            con.execute("DELETE FROM samples WHERE EXISTS (SELECT 1 FROM temp._sample_dups d WHERE d.sample_id = samples.sample_id AND d.run_id = samples.run_id)")
        return int(n)

    return lake.transaction(body)


def samples_without_score(lake: Lake, metrics: list[str], model_id: str, segment: str = "", selection: str | None = None) -> list[tuple[str, int]]:
    """(sample_id, length) of samples missing any of ``metrics`` for this model and segment (only those
    in a named selection, if given), shortest first."""
    have = (
        "(SELECT count(DISTINCT s.metric) FROM scores s WHERE s.subject_kind = 'sample' AND s.subject_id = x.sample_id "
        f"AND s.model_id = ? AND s.segment = ? AND s.metric IN ({', '.join('?' for _ in metrics)}))"
    )
    chosen = "AND x.sample_id IN (SELECT subject_id FROM selections WHERE name = ? AND subject_kind = 'sample')" if selection else ""
    return lake.fetchall(
        f"SELECT x.sample_id, length(x.question) + length(x.answer) AS n FROM samples x WHERE {have} < ? {chosen} ORDER BY n, x.sample_id",
        [model_id, segment, *metrics, len(metrics), *([selection] if selection else [])],
    )


def samples_with_images(lake: Lake, sample_ids: list[str], *, version: int | None = None) -> list[dict[str, Any]]:
    """Samples with their item's text and category, their images' blob paths and OCR text in the sample's
    image order, in the order asked; at a DuckLake version if given. Every choice among copies is by
    min(), so the same version gives the same rows (snapshot exports rely on it)."""
    if not sample_ids:
        return []
    v = version
    with lake.probe("_probe_samples", "sample_id", sample_ids) as con:
        rows = con.execute(
            f"WITH x AS (SELECT s.* FROM {at_version('samples', v)} s SEMI JOIN _probe_samples USING (sample_id) "
            "  QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1), "
            # only the asked samples' products, images and OCR readings are grouped (the whole tables were:
            # seconds per call at a million samples, for one sample on Inspect); the same min() choices
            f"products AS (SELECT external_id, min(category) AS category FROM {at_version('items', v)} WHERE kind = 'catalog' "
            f"  AND external_id IN (SELECT product_ref FROM {at_version('items', v)} WHERE item_id IN (SELECT item_id FROM x)) GROUP BY external_id), "
            "pos AS (SELECT x.sample_id, u.image_id, u.k FROM x, "
            "  LATERAL (SELECT unnest(CAST(x.image_ids AS VARCHAR[])) AS image_id, generate_subscripts(CAST(x.image_ids AS VARCHAR[]), 1) AS k) u), "
            f"imgs AS (SELECT image_id, min(blob_path) AS blob_path, min(sha256) AS sha256 FROM {at_version('images', v)} "
            "  WHERE image_id IN (SELECT image_id FROM pos) GROUP BY image_id), "
            f"texts AS (SELECT sha256, min(text) AS text FROM {at_version('ocr', v)} WHERE text IS NOT NULL "
            "  AND sha256 IN (SELECT sha256 FROM imgs) GROUP BY sha256) "
            "SELECT x.sample_id, any_value(x.task), any_value(x.question), any_value(x.answer), any_value(x.answer_format), any_value(x.label), "
            "  any_value(coalesce(i.category, p.category)), any_value(coalesce(i.title, i.feedback_text)), "
            "  list(im.blob_path ORDER BY pos.k) FILTER (WHERE im.blob_path IS NOT NULL), "
            "  list(coalesce(t.text, '') ORDER BY pos.k) FILTER (WHERE im.blob_path IS NOT NULL), "
            "  any_value(coalesce(i.product_ref, i.external_id, i.item_id)) "
            f"FROM x JOIN {at_version('items', v)} i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref "
            "LEFT JOIN pos USING (sample_id) LEFT JOIN imgs im ON im.image_id = pos.image_id LEFT JOIN texts t ON t.sha256 = im.sha256 "
            "GROUP BY x.sample_id"
        ).fetchall()
    # product: the catalog product a sample is about (a complaint's product_ref, else the item's own id),
    # what evaluation sets are split by so that evaluated products were never trained on
    cols = ["sample_id", "task", "question", "answer", "answer_format", "label", "category", "item_text", "blob_paths", "ocr_texts", "product"]
    order = {sid: k for k, sid in enumerate(sample_ids)}
    return sorted(({**dict(zip(cols, r)), "blob_paths": r[8] or [], "ocr_texts": r[9] or []} for r in rows), key=lambda r: order[r["sample_id"]])


# ---- OCR: one reading per image content ----------------------------------------------------------------
def source_names(lake: Lake) -> list[str]:
    return [n for (n,) in lake.fetchall("SELECT DISTINCT name FROM sources WHERE name IS NOT NULL ORDER BY name")]


def ocr_redaction_totals(lake: Lake) -> dict[str, int]:
    """Personal data removed from OCR text (a shipping label's name, phone, address), per kind."""
    rows = lake.fetchall(
        "SELECT e.key, sum(CAST(e.value AS BIGINT)) FROM ocr, json_each(ocr.redaction_counts) AS e "
        "WHERE ocr.redaction_counts IS NOT NULL GROUP BY e.key ORDER BY 2 DESC, 1"
    )
    return {k: int(v) for k, v in rows}
