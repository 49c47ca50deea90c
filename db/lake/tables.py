"""Every lake table's columns, declared once: the migrations' CREATE TABLE statements and the Arrow
schemas the batch writers send rows in both come from here, so a column cannot differ between them.

Keys are content-derived strings (``item_id``, ``image_id``, the image ``sha256``), never positions, so
re-ingesting a source finds what it already holds. Every row written by a job carries ``run_id`` (the work
unit that wrote it): a retried unit deletes what its run id wrote and inserts again in one transaction.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import pyarrow as pa

from config.registry import Registry

_ARROW = {
    "VARCHAR": pa.string(), "JSON": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(), "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "FLOAT[]": pa.list_(pa.float32()),
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # a key of _ARROW; JSON travels as text and is cast on insert
    note: str = ""  # what the column holds, written beside it in the DDL

    @property
    def is_json(self) -> bool:
        return self.sql_type == "JSON"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def ddl(self) -> str:
        lines = [f"    {c.name} {c.sql_type}{',' if k < len(self.columns) - 1 else ''}" + (f"  -- {c.note}" if c.note else "")
                 for k, c in enumerate(self.columns)]
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n" + "\n".join(lines) + "\n)"

    def arrow(self, rows: Iterable[dict[str, Any]]) -> pa.Table:
        """``rows`` (dicts; a missing key is NULL) as an Arrow table of exactly this table's columns; JSON
        values that are not text yet are serialised."""
        rows = list(rows)
        data = {}
        for c in self.columns:
            values = [row.get(c.name) for row in rows]
            if c.is_json:
                values = [v if v is None or isinstance(v, str) else to_json(v) for v in values]
            data[c.name] = pa.array(values, type=_ARROW[c.sql_type])
        return pa.table(data)

    def names(self) -> str:
        """The column list of an INSERT."""
        return ", ".join(c.name for c in self.columns)

    def select_list(self, alias: str) -> str:
        """The columns of a registered Arrow table ``alias`` as the INSERT wants them (JSON text cast)."""
        return ", ".join(f"{alias}.{c.name}::JSON" if c.is_json else f"{alias}.{c.name}" for c in self.columns)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


TABLES: Registry[Table] = Registry("table", key=lambda t: t.name, verb="declared")


def declare(name: str, *columns: Column) -> Table:
    return TABLES.add(Table(name, columns))


SOURCES = declare(
    "sources",
    Column("source_id", "VARCHAR", 'stable id derived from the source name'),
    Column("name", "VARCHAR"),
    Column("uri", "VARCHAR", 'where it was read from (path or URL)'),
    Column("format", "VARCHAR", 'csv | jsonl | parquet | abo'),
    Column("item_kind", "VARCHAR", 'catalog | feedback'),
    Column("file_sha256", "VARCHAR"),
    Column("file_bytes", "BIGINT"),
    Column("mapping", "JSON", 'the column mapping used'),
    Column("redacted", "BOOLEAN"),
    Column("job_id", "VARCHAR"),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

ITEMS = declare(
    "items",
    Column("item_id", "VARCHAR", 'sha256(source, kind, external id or row content), 24 hex chars'),
    Column("source_id", "VARCHAR"),
    Column("external_id", "VARCHAR"),
    Column("row_number", "BIGINT", '1-based data row in the source'),
    Column("kind", "VARCHAR", 'catalog | feedback'),
    Column("feedback_type", "VARCHAR", 'transcript | review | NULL for catalog rows'),
    Column("product_ref", "VARCHAR", 'the product a feedback item is about, when the source says'),
    Column("title", "VARCHAR"),
    Column("description", "VARCHAR"),
    Column("brand", "VARCHAR"),
    Column("category", "VARCHAR"),
    Column("attributes", "JSON", '{name: value}'),
    Column("feedback_text", "VARCHAR"),
    Column("region", "VARCHAR"),
    Column("event_time", "TIMESTAMPTZ"),
    Column("issue_type", "VARCHAR"),
    Column("language", "VARCHAR"),
    Column("redaction_counts", "JSON", '{"NAME": 2, "EMAIL": 1, ...}'),
    Column("text_notes", "JSON", 'cleaning done to the text, e.g. {"html_tags_removed": 3}'),
    Column("n_images", "INTEGER"),
    Column("run_id", "VARCHAR"),
    Column("ingested_at", "TIMESTAMPTZ"),
)

IMAGES = declare(
    "images",
    Column("image_id", "VARCHAR", 'sha256(item_id, position)'),
    Column("item_id", "VARCHAR"),
    Column("position", "INTEGER", 'order of the image within its item, from 0'),
    Column("source_ref", "VARCHAR", 'path relative to the image root, or the URL'),
    Column("sha256", "VARCHAR", "of the file's bytes; also the blob's name"),
    Column("width", "INTEGER"),
    Column("height", "INTEGER"),
    Column("format", "VARCHAR", 'JPEG, PNG, WEBP, ...'),
    Column("n_bytes", "BIGINT"),
    Column("blob_path", "VARCHAR", 'relative to the blob root'),
    Column("run_id", "VARCHAR"),
    Column("ingested_at", "TIMESTAMPTZ"),
)

ERRORS = declare(
    "errors",
    Column("job_id", "VARCHAR"),
    Column("run_id", "VARCHAR"),
    Column("stage", "VARCHAR", 'row | image | ocr | dedup'),
    Column("code", "VARCHAR", 'machine-readable reason, e.g. path_outside_root'),
    Column("message", "VARCHAR", 'what a person reads'),
    Column("source_id", "VARCHAR"),
    Column("row_number", "BIGINT"),
    Column("item_id", "VARCHAR"),
    Column("subject", "VARCHAR", 'the image reference or sha256 the error is about'),
    Column("source_row", "JSON", 'the offending row, redacted and cut to a few KB'),
    Column("created_at", "TIMESTAMPTZ"),
)

OCR = declare(
    "ocr",
    Column("sha256", "VARCHAR", 'the image content it was read from'),
    Column("engine", "VARCHAR", 'e.g. rapidocr-3.4.2'),
    Column("text", "VARCHAR", 'lines joined by newlines, redacted'),
    Column("n_boxes", "INTEGER"),
    Column("mean_confidence", "DOUBLE"),
    Column("boxes", "JSON", '[{"box": [[x,y]x4], "text": ..., "score": ...}]'),
    Column("redaction_counts", "JSON"),
    Column("seconds", "DOUBLE"),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

# Perceptual hashes per image content (curation/near_dups.py), written by the dedup job: an image stored under
# several items is hashed once. The 64-bit hash is kept as a signed BIGINT (the same bits; DuckLake has no
# unsigned type in every catalog); ``method`` names the function and its version, so a changed recipe hashes again.
IMAGE_HASHES = declare(
    "image_hashes",
    Column("sha256", "VARCHAR", 'the image content hashed'),
    Column("method", "VARCHAR", 'e.g. phash-v1, dhash-v1'),
    Column("hash", "BIGINT", 'the 64 bits as a signed integer'),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

# The CLIP image embedding of each image content, per model (written by the CLIPScore job beside its scores): what
# near-duplicates by meaning, clusters, uniqueness and the map are computed from, without loading a model again.
# L2-normalised float32, so a dot product is the cosine.
IMAGE_EMBEDDINGS = declare(
    "image_embeddings",
    Column("sha256", "VARCHAR", 'the image content embedded'),
    Column("model_id", "VARCHAR", "the CLIP model's id, as its scores'"),
    Column("dim", "INTEGER"),
    Column("vector", "FLOAT[]", 'L2-normalised'),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

SCORES = declare(
    "scores",
    Column("subject_kind", "VARCHAR", 'image | item | sample'),
    Column("subject_id", "VARCHAR"),
    Column("metric", "VARCHAR", 'clip_score, clip_cosine, vis_attn(_mass, _nosink, _dist), vis_gain, blind_logp, with_logp, text_tokens, ocr_chars, ocr_boxes'),
    Column("model_id", "VARCHAR", "'' for stats that need no model"),
    Column("segment", "VARCHAR", "answer | question | text for VisAttnScore, '' otherwise"),
    Column("value", "DOUBLE"),
    Column("flags", "JSON", '{"truncated": true}, {"error": "no_image"}, {"demo_model": true}'),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

TOKEN_SCORES = declare(
    "token_scores",
    Column("subject_kind", "VARCHAR"),
    Column("subject_id", "VARCHAR"),
    Column("model_id", "VARCHAR"),
    Column("segment", "VARCHAR"),
    Column("tokens", "JSON", "the segment's tokens as text"),
    Column("token_ids", "JSON"),
    Column("scores", "JSON", 'A(t) per token (eq. 2)'),
    Column("mass", "JSON", 'attention mass on the image per token'),
    Column("words", "JSON", 'sub-word pieces joined'),
    Column("word_scores", "JSON"),
    Column("positions", "JSON", 'segment, image, question and answer positions in input_ids'),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

# Visual information gain per token (curation/visual_gain.py), beside token_scores' A(t): the same segment's
# tokens in the same order, with the log-probability given the image and without it.
TOKEN_GAINS = declare(
    "token_gains",
    Column("subject_kind", "VARCHAR"),
    Column("subject_id", "VARCHAR"),
    Column("model_id", "VARCHAR"),
    Column("segment", "VARCHAR"),
    Column("with_logp", "JSON", 'log p(token | image, context) per token of the segment'),
    Column("blind_logp", "JSON", 'log p(token | context without the image) per token'),
    Column("gain", "JSON", 'with_logp - blind_logp per token'),
    Column("words", "JSON", 'sub-word pieces joined, as in token_scores'),
    Column("word_gain", "JSON", 'mean gain of each word\'s pieces'),
    Column("blind_input_ids", "JSON", 'the prompt without the images, as token ids'),
    Column("blind_positions", "JSON", 'the segment\'s positions in blind_input_ids'),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

SAMPLES = declare(
    "samples",
    Column("sample_id", "VARCHAR", 'sha256(item, task, question, answer, backend, model, prompt version)'),
    Column("item_id", "VARCHAR", 'the item it was generated from (lineage)'),
    Column("task", "VARCHAR", 'recognition | damage_detection | matching | attribute_extraction | counting | condition_packaging | comparison | refusal'),
    Column("question", "VARCHAR"),
    Column("answer", "VARCHAR"),
    Column("answer_format", "VARCHAR", 'short | detailed | list | json | yes_no'),
    Column("image_ids", "JSON", 'the images the question is about, in order ([1], [2], ...)'),
    Column("label", "VARCHAR", 'yes | no for the objective (yes/no) forms, else NULL'),
    Column("backend", "VARCHAR", 'template | openai | hf'),
    Column("model_id", "VARCHAR"),
    Column("prompt_version", "VARCHAR", 'content hash of the template and its few-shot examples'),
    Column("lineage", "JSON", 'source, the catalog item a complaint refers to, negatives used, ...'),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
    # added by migration 4: which of the item's fields the answer rests on (the template backend knows)
    Column("evidence", "JSON", '[{"field": "title", "text": "Pack of 12"}, ...]'),
)

GENERATION_REJECTS = declare(
    "generation_rejects",
    Column("item_id", "VARCHAR"),
    Column("task", "VARCHAR"),
    Column("backend", "VARCHAR"),
    Column("model_id", "VARCHAR"),
    Column("prompt_version", "VARCHAR"),
    Column("reason", "VARCHAR", 'bad_json | unknown_keys | empty | duplicate | too_long | no_pairs | http_error ...'),
    Column("detail", "VARCHAR"),
    Column("question", "VARCHAR"),
    Column("answer", "VARCHAR"),
    Column("raw_response", "VARCHAR", 'kept for inspection (the prompt was redacted, so is this)'),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

GENERATION_REQUESTS = declare(
    "generation_requests",
    Column("item_id", "VARCHAR", 'one row per (item, task, backend, model, prompt version) done:'),
    Column("task", "VARCHAR", 'what makes generation resumable without regenerating'),
    Column("backend", "VARCHAR"),
    Column("model_id", "VARCHAR"),
    Column("prompt_version", "VARCHAR"),
    Column("n_samples", "INTEGER"),
    Column("n_rejects", "INTEGER"),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

# One row per LLM request a generation unit made or answered from the cache: what it cost and how long it
# took (curation/generation/usage.py). Beside generation_requests (the "done" markers) and not in it: a failed
# request is recorded here too, while its (item, task) is left to be asked again.
LLM_CALLS = declare(
    "llm_calls",
    Column("item_id", "VARCHAR"),
    Column("task", "VARCHAR"),
    Column("backend", "VARCHAR"),
    Column("model_id", "VARCHAR"),
    Column("fingerprint", "VARCHAR", 'the request\'s cache key'),
    Column("outcome", "VARCHAR", 'ok | cached | timeout | rate_limited | server_error | refused | malformed | filtered | connection | other'),
    Column("prompt_tokens", "INTEGER"),
    Column("completion_tokens", "INTEGER"),
    Column("counted_by", "VARCHAR", 'server | tokenizer | estimate | none'),
    Column("seconds", "DOUBLE", 'latency, retries included'),
    Column("attempts", "INTEGER"),
    Column("job_id", "VARCHAR"),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

# LLM responses by the fingerprint of their request (messages, model, sampling settings): a rerun or another
# job asking the same thing reads the answer here instead of paying for it again. Written as soon as the
# answers arrive, before they are parsed, so a unit that dies afterwards does not pay twice either.
LLM_CACHE = declare(
    "llm_cache",
    Column("fingerprint", "VARCHAR"),
    Column("model_id", "VARCHAR", 'the backend model id that answered'),
    Column("text", "VARCHAR"),
    Column("finish_reason", "VARCHAR"),
    Column("prompt_tokens", "INTEGER"),
    Column("completion_tokens", "INTEGER"),
    Column("counted_by", "VARCHAR"),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

# The Batch API batches a generation unit submitted (curation/generation/batch_api.py), one row per change of
# state: a unit that runs again (its worker died while the server worked) finds its batch here and polls it
# instead of submitting, and paying for, the same requests again.
LLM_BATCHES = declare(
    "llm_batches",
    Column("run_id", "VARCHAR", 'the unit that submitted it'),
    Column("batch_id", "VARCHAR", "the server's id"),
    Column("input_file_id", "VARCHAR"),
    Column("requests", "INTEGER"),
    Column("status", "VARCHAR", 'submitted | completed | failed | expired | cancelled (as the server last said)'),
    Column("job_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

SELECTIONS = declare(
    "selections",
    Column("name", "VARCHAR", 'a named stratified sample'),
    Column("subject_kind", "VARCHAR", 'sample | item'),
    Column("subject_id", "VARCHAR"),
    Column("stratum", "JSON", '{"category": ..., "brand": ...}'),
    Column("seed", "INTEGER"),
    Column("run_id", "VARCHAR"),
    Column("created_at", "TIMESTAMPTZ"),
)

EXCLUSIONS = declare(
    "exclusions",
    Column("sample_id", "VARCHAR"),
    Column("seq", "INTEGER", '1, 2, 3, ... per sample: the order of its changes'),
    Column("excluded", "BOOLEAN", 'true: taken out from here on; false: restored'),
    Column("reason", "VARCHAR", 'why it was taken out (required) or restored (optional)'),
    Column("by_user", "VARCHAR", 'who did it (web user or the OS / VITPRO_USER of the CLI)'),
    Column("changed_at", "TIMESTAMPTZ"),
)

# Free tags on samples, kept as the exclusions are: one row per change, a (sample, tag)'s state its latest row.
SAMPLE_TAGS = declare(
    "sample_tags",
    Column("sample_id", "VARCHAR"),
    Column("tag", "VARCHAR", 'a curator\'s free label: letters, digits, - _ . : (at most 60 characters)'),
    Column("seq", "INTEGER", '1, 2, 3, ... per (sample, tag): the order of its changes'),
    Column("tagged", "BOOLEAN", 'true: the tag was put on; false: taken off'),
    Column("by_user", "VARCHAR"),
    Column("changed_at", "TIMESTAMPTZ"),
)

# A snapshot's samples, listed once when it is made (curation/snapshots.py), so that an export, a training
# run or a diff joins this list instead of rebuilding the filter's stats at the snapshot's version.
SNAPSHOT_MEMBERS = declare(
    "snapshot_members",
    Column("snapshot_id", "INTEGER", "the app table's snapshots.id (a name can change, the id never does)"),
    Column("sample_id", "VARCHAR", 'once per snapshot'),
    Column("task", "VARCHAR"),
    Column("lake_version", "BIGINT", "the snapshot's DuckLake version: where its samples are read"),
)

# One row per complete list, written in the same transaction as the list: a reader trusts a list only
# with its row, and only when the row's hash is its record's (see db/lake/snapshot_members.py).
SNAPSHOT_MEMBER_LISTS = declare(
    "snapshot_member_lists",
    Column("snapshot_id", "INTEGER"),
    Column("lake_version", "BIGINT"),
    Column("kept_sha256", "VARCHAR", "the record's hash of the kept ids, checked against the list before it was written"),
    Column("n_samples", "BIGINT"),
    Column("written_at", "TIMESTAMPTZ"),
)
