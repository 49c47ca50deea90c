"""Idempotent batch writes to the lake: what a unit wrote is replaced, never doubled.

Each ``write_*`` runs one transaction that (1) deletes every row the unit's ``run_id`` wrote before (a
retried unit), (2) inserts only keys the store does not hold yet (a re-ingested source, a unit that
overlaps another), and (3) returns how many rows went in. Rows travel as Arrow tables of the columns
db/lake/tables.py declares: one INSERT per batch, not one per row. What each stage reads back is in its own
module (ingest_reads, ocr_reads, scoring_reads, generation_reads, samples_view).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from .connection import Lake
from .tables import (
    ERRORS,
    GENERATION_REJECTS,
    GENERATION_REQUESTS,
    IMAGES,
    ITEMS,
    LLM_BATCHES,
    LLM_CACHE,
    LLM_CALLS,
    OCR,
    SAMPLES,
    SCORES,
    TOKEN_GAINS,
    TOKEN_SCORES,
    Table,
    to_json,
)

_SCORE_KEY = ("subject_kind", "subject_id", "metric", "model_id", "segment")
_TOKEN_KEY = ("subject_kind", "subject_id", "model_id", "segment")
_REQUEST_KEY = ("item_id", "task", "backend", "model_id", "prompt_version")


def now_utc() -> datetime:
    """The time a unit stamps on the rows it writes."""
    return datetime.now(timezone.utc)


def write_ingest_batch(
    lake: Lake,
    run_id: str,
    items: list[dict[str, Any]],
    images: list[dict[str, Any]],
    errors: list[dict[str, Any]],
) -> dict[str, int]:
    """Replace this unit's rows; items already in the store are skipped, with their images."""
    items_t = ITEMS.arrow(items)
    images_t = IMAGES.arrow(images)
    errors_t = ERRORS.arrow(errors)

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
                f"INSERT INTO items ({ITEMS.names()}) SELECT {ITEMS.select_list('n')} "
                "FROM _new_items n WHERE n.item_id IN (SELECT item_id FROM temp._fresh)"
            )
            con.execute(
                f"INSERT INTO images ({IMAGES.names()}) SELECT {IMAGES.select_list('n')} "
                "FROM _new_images n WHERE n.item_id IN (SELECT item_id FROM temp._fresh)"
            )
            n_images = con.execute(
                "SELECT count(*) FROM _new_images WHERE item_id IN (SELECT item_id FROM temp._fresh)"
            ).fetchone()[0]
            con.execute(f"INSERT INTO errors ({ERRORS.names()}) SELECT {ERRORS.select_list('n')} FROM _new_errors n")
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


def write_source(lake: Lake, row: dict[str, Any]) -> None:
    """Record a source as planned for ingest. The same file ingested again the same way (same name, place,
    format, bytes, mapping and redaction) writes nothing: the row keeps the job that first ingested it, and
    the store's version, and every cache keyed by it, stays."""
    def body(con) -> None:
        same = con.execute(
            "SELECT count(*) FROM sources WHERE source_id = ? AND name IS NOT DISTINCT FROM ? AND uri IS NOT DISTINCT FROM ? "
            "AND format IS NOT DISTINCT FROM ? AND item_kind IS NOT DISTINCT FROM ? AND file_sha256 IS NOT DISTINCT FROM ? "
            "AND file_bytes IS NOT DISTINCT FROM ? AND mapping::VARCHAR = (?::JSON)::VARCHAR AND redacted IS NOT DISTINCT FROM ?",
            [row["source_id"], row["name"], row["uri"], row["format"], row["item_kind"], row["file_sha256"], row["file_bytes"],
             to_json(row["mapping"]), row["redacted"]]).fetchone()[0]
        if same:
            return
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


def write_ocr_batch(lake: Lake, run_id: str, rows: list[dict[str, Any]], errors: list[dict[str, Any]]) -> int:
    """A unit's readings and errors; in the same transaction the readings of the same images under other
    labels (another engine, other settings, an older recipe) are removed: prompts, exports and OCR stats
    take "the" text of an image, so the store keeps one reading per image content, the newest (older
    ones stay in the lake's history). Returns how many readings went in."""
    ocr_t = OCR.arrow(rows)
    errors_t = ERRORS.arrow(errors)

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
                f"INSERT INTO ocr ({OCR.names()}) SELECT {OCR.select_list('n')} FROM _new_ocr n "
                "WHERE NOT EXISTS (SELECT 1 FROM ocr o WHERE o.sha256 = n.sha256 AND o.engine = n.engine)"
            )
            con.execute(f"INSERT INTO errors ({ERRORS.names()}) SELECT {ERRORS.select_list('n')} FROM _new_errors n")
            return int(n)
        finally:
            con.unregister("_new_ocr")
            con.unregister("_new_errors")

    return lake.transaction(body)


def dedupe_contents(lake: Lake, table: str, column: str, value: str) -> int:
    """One row per image content (sha256) of ``table`` where ``column`` = ``value`` (an OCR engine's readings, a
    hash method's hashes, a model's vectors): two units that raced may both have inserted one; the first written
    stays. ``table`` and ``column`` are this package's own names, never user text."""

    def body(con) -> int:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _cdups AS SELECT sha256, run_id FROM ("
            f" SELECT sha256, run_id, row_number() OVER (PARTITION BY sha256 ORDER BY created_at, run_id) AS k FROM {table} WHERE {column} = ?"
            ") WHERE k > 1",
            [value],
        )
        n = con.execute("SELECT count(*) FROM temp._cdups").fetchone()[0]
        if n:
            con.execute(
                f"DELETE FROM {table} WHERE {column} = ? AND EXISTS (SELECT 1 FROM temp._cdups d WHERE d.sha256 = {table}.sha256 "
                f"AND d.run_id = {table}.run_id)",
                [value],
            )
        return int(n)

    return lake.transaction(body)


def dedupe_ocr(lake: Lake, engine: str) -> int:
    return dedupe_contents(lake, "ocr", "engine", engine)


def _not_stored(table: str, key: tuple[str, ...], alias: str = "n") -> str:
    cond = " AND ".join(f"t.{k} = {alias}.{k}" for k in key)
    return f"NOT EXISTS (SELECT 1 FROM {table} t WHERE {cond})"


def write_scores(
    lake: Lake,
    run_id: str,
    scores: list[dict[str, Any]],
    token_scores: list[dict[str, Any]] = (),
    errors: list[dict[str, Any]] = (),
    token_gains: list[dict[str, Any]] = (),
) -> int:
    """Replace this unit's score rows; a (subject, metric, model, segment) already stored is kept."""
    scores_t = SCORES.arrow(scores)
    tokens_t = TOKEN_SCORES.arrow(token_scores)
    errors_t = ERRORS.arrow(errors)
    gains_t = TOKEN_GAINS.arrow(token_gains)

    def body(con) -> int:
        for table in ("scores", "token_scores", "errors", "token_gains"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        con.register("_new_scores", scores_t)
        con.register("_new_tokens", tokens_t)
        con.register("_new_errors", errors_t)
        con.register("_new_gains", gains_t)
        try:
            n = con.execute(f"SELECT count(*) FROM _new_scores n WHERE {_not_stored('scores', _SCORE_KEY)}").fetchone()[0]
            con.execute(
                f"INSERT INTO scores ({SCORES.names()}) SELECT {SCORES.select_list('n')} "
                f"FROM _new_scores n WHERE {_not_stored('scores', _SCORE_KEY)}"
            )
            con.execute(
                f"INSERT INTO token_scores ({TOKEN_SCORES.names()}) SELECT {TOKEN_SCORES.select_list('n')} "
                f"FROM _new_tokens n WHERE {_not_stored('token_scores', _TOKEN_KEY)}"
            )
            con.execute(
                f"INSERT INTO token_gains ({TOKEN_GAINS.names()}) SELECT {TOKEN_GAINS.select_list('n')} "
                f"FROM _new_gains n WHERE {_not_stored('token_gains', _TOKEN_KEY)}"
            )
            con.execute(f"INSERT INTO errors ({ERRORS.names()}) SELECT {ERRORS.select_list('n')} FROM _new_errors n")
            return int(n)
        finally:
            for name in ("_new_scores", "_new_tokens", "_new_errors", "_new_gains"):
                con.unregister(name)

    return lake.transaction(body)


def replace_metric(lake: Lake, metric: str, model_id: str, rows: list[dict[str, Any]], *, first: bool) -> int:
    """A derived stat rewritten whole (a calibration fitted again): the first batch removes every stored row
    of (metric, model) in the same transaction as it inserts; later batches only insert."""
    table = SCORES.arrow(rows)

    def body(con) -> int:
        if first:
            con.execute("DELETE FROM scores WHERE metric = ? AND model_id = ?", [metric, model_id])
        con.register("_new_scores", table)
        try:
            con.execute(f"INSERT INTO scores ({SCORES.names()}) SELECT {SCORES.select_list('n')} FROM _new_scores n")
        finally:
            con.unregister("_new_scores")
        return len(rows)

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
                f"INSERT INTO scores ({SCORES.names()}) SELECT n.subject_kind, n.subject_id, n.metric, n.model_id, "
                f"n.segment, n.value, NULL, ?, now() FROM ({source}) n WHERE {missing}",
                [run_id],
            )
        return int(written)

    return lake.transaction(body)


def write_generation(lake: Lake, run_id: str, samples: list[dict], rejects: list[dict], requests: list[dict], calls: list[dict] | None = None) -> int:
    """A unit's samples, rejects, done markers and LLM calls (tokens, latency, outcome), in one transaction."""
    samples_t = SAMPLES.arrow(samples)
    rejects_t = GENERATION_REJECTS.arrow(rejects)
    requests_t = GENERATION_REQUESTS.arrow(requests)
    calls_t = LLM_CALLS.arrow(calls or [])

    def body(con) -> int:
        for table in ("samples", "generation_rejects", "generation_requests", "llm_calls"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        con.register("_new_samples", samples_t)
        con.register("_new_rejects", rejects_t)
        con.register("_new_requests", requests_t)
        if calls:
            con.register("_new_calls", calls_t)
            con.execute(f"INSERT INTO llm_calls ({LLM_CALLS.names()}) SELECT {LLM_CALLS.select_list('n')} FROM _new_calls n")
            con.unregister("_new_calls")
        try:
            missing = "NOT EXISTS (SELECT 1 FROM samples t WHERE t.sample_id = n.sample_id)"
            n = con.execute(f"SELECT count(*) FROM _new_samples n WHERE {missing}").fetchone()[0]
            con.execute(f"INSERT INTO samples ({SAMPLES.names()}) SELECT {SAMPLES.select_list('n')} FROM _new_samples n WHERE {missing}")
            con.execute(f"INSERT INTO generation_rejects ({GENERATION_REJECTS.names()}) SELECT {GENERATION_REJECTS.select_list('n')} FROM _new_rejects n")
            con.execute(
                f"INSERT INTO generation_requests ({GENERATION_REQUESTS.names()}) SELECT {GENERATION_REQUESTS.select_list('n')} "
                f"FROM _new_requests n WHERE {_not_stored('generation_requests', _REQUEST_KEY)}"
            )
            return int(n)
        finally:
            for name in ("_new_samples", "_new_rejects", "_new_requests"):
                con.unregister(name)

    return lake.transaction(body)


def insert_new(con, table: Table, rows: pa.Table, key: tuple[str, ...], name: str = "_new_rows") -> int:
    """Insert ``rows`` (an Arrow table of ``table``'s columns) whose ``key`` the table does not hold yet, one row
    per key (the first); returns how many keys were new. Inside a transaction's body (``con``)."""
    con.register(name, rows)
    try:
        missing = _not_stored(table.name, key)
        keys = ", ".join(key)
        n = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {name} n WHERE {missing})").fetchone()[0]
        con.execute(f"INSERT INTO {table.name} ({table.names()}) SELECT {table.select_list('n')} FROM "
                    f"(SELECT * FROM {name} QUALIFY row_number() OVER (PARTITION BY {keys}) = 1) n WHERE {missing}")
        return int(n)
    finally:
        con.unregister(name)


def write_llm_cache(lake: Lake, run_id: str, rows: list[dict]) -> int:
    """Responses under their request fingerprints (db/lake/tables.py LLM_CACHE); a fingerprint stored already
    keeps its first answer. Its own transaction, made as soon as the answers arrive."""
    if not rows:
        return 0
    table = LLM_CACHE.arrow(rows)
    return lake.transaction(lambda con: insert_new(con, LLM_CACHE, table, ("fingerprint",), "_new_cache"))


def record_llm_batch(lake: Lake, row: dict) -> None:
    """A unit's batch, or a new state of it (an append-only log: the newest row of a batch id is its state)."""
    table = LLM_BATCHES.arrow([row])

    def body(con) -> None:
        con.register("_new_batch", table)
        try:
            con.execute(f"INSERT INTO llm_batches ({LLM_BATCHES.names()}) SELECT {LLM_BATCHES.select_list('n')} FROM _new_batch n")
        finally:
            con.unregister("_new_batch")

    lake.transaction(body)


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
