"""Tables of bulk rows in DuckLake, as numbered migrations.

Every row written by a job carries ``run_id`` (the work unit that wrote it): a retried unit deletes what its
run id wrote and inserts again in one transaction, so a redelivered unit never doubles rows.

Keys are content-derived strings (``item_id``, ``image_id``, the image ``sha256``), never positions, so
re-ingesting a source finds what it already holds. Later stages hang off the same keys: scores are long
rows ``(subject, metric, model_id, value)`` keyed by item, image or sample id, samples reference
``item_id``, per-token scores reference ``sample_id``; they arrive as further migrations below.

DuckLake has no primary keys or unique constraints; uniqueness is kept by the writers (anti-joins in the
same transaction as the insert) and checked by the tests.
"""
from __future__ import annotations

from .lake import Lake

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "sources, items, images, errors, ocr",
        [
            """CREATE TABLE IF NOT EXISTS sources (
                source_id VARCHAR,      -- stable id derived from the source name
                name VARCHAR,
                uri VARCHAR,            -- where it was read from (path or URL)
                format VARCHAR,         -- csv | jsonl | parquet | abo
                item_kind VARCHAR,      -- catalog | feedback
                file_sha256 VARCHAR,
                file_bytes BIGINT,
                mapping JSON,           -- the column mapping used
                redacted BOOLEAN,
                job_id VARCHAR,
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS items (
                item_id VARCHAR,        -- sha256(source, kind, external id or row content), 24 hex chars
                source_id VARCHAR,
                external_id VARCHAR,
                row_number BIGINT,      -- 1-based data row in the source
                kind VARCHAR,           -- catalog | feedback
                feedback_type VARCHAR,  -- transcript | review | NULL for catalog rows
                product_ref VARCHAR,    -- the product a feedback item is about, when the source says
                title VARCHAR,
                description VARCHAR,
                brand VARCHAR,
                category VARCHAR,
                attributes JSON,        -- {name: value}
                feedback_text VARCHAR,
                region VARCHAR,
                event_time TIMESTAMPTZ,
                issue_type VARCHAR,
                language VARCHAR,
                redaction_counts JSON,  -- {"NAME": 2, "EMAIL": 1, ...}
                text_notes JSON,        -- cleaning done to the text, e.g. {"html_tags_removed": 3}
                n_images INTEGER,
                run_id VARCHAR,
                ingested_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS images (
                image_id VARCHAR,       -- sha256(item_id, position)
                item_id VARCHAR,
                position INTEGER,       -- order of the image within its item, from 0
                source_ref VARCHAR,     -- path relative to the image root, or the URL
                sha256 VARCHAR,         -- of the file's bytes; also the blob's name
                width INTEGER,
                height INTEGER,
                format VARCHAR,         -- JPEG, PNG, WEBP, ...
                n_bytes BIGINT,
                blob_path VARCHAR,      -- relative to the blob root
                run_id VARCHAR,
                ingested_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS errors (
                job_id VARCHAR,
                run_id VARCHAR,
                stage VARCHAR,          -- row | image | ocr
                code VARCHAR,           -- machine-readable reason, e.g. path_outside_root
                message VARCHAR,        -- what a person reads
                source_id VARCHAR,
                row_number BIGINT,
                item_id VARCHAR,
                subject VARCHAR,        -- the image reference or sha256 the error is about
                source_row JSON,        -- the offending row, redacted and cut to a few KB
                created_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS ocr (
                sha256 VARCHAR,         -- the image content it was read from
                engine VARCHAR,         -- e.g. rapidocr-3.4.2
                text VARCHAR,           -- lines joined by newlines, redacted
                n_boxes INTEGER,
                mean_confidence DOUBLE,
                boxes JSON,             -- [{"box": [[x,y]x4], "text": ..., "score": ...}]
                redaction_counts JSON,
                seconds DOUBLE,
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
        ],
    ),
]

MIGRATIONS.append(
    (
        2,
        "scores and per-token scores",
        [
            # Every stat once, long format (data-juicer's lesson): filters are predicates over these rows
            # and re-thresholding never recomputes. value is NULL where the subject could not be scored
            # (flags say why), so "not yet scored" and "could not be scored" differ.
            """CREATE TABLE IF NOT EXISTS scores (
                subject_kind VARCHAR,   -- image | item | sample
                subject_id VARCHAR,
                metric VARCHAR,         -- clip_score, clip_cosine, vis_attn, vis_attn_mass, vis_attn_nosink, vis_attn_dist, text_tokens, ocr_chars, ocr_boxes
                model_id VARCHAR,       -- '' for stats that need no model
                segment VARCHAR,        -- answer | question | text for VisAttnScore, '' otherwise
                value DOUBLE,
                flags JSON,             -- {"truncated": true}, {"error": "no_image"}, {"demo_model": true}
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS token_scores (
                subject_kind VARCHAR,
                subject_id VARCHAR,
                model_id VARCHAR,
                segment VARCHAR,
                tokens JSON,            -- the segment's tokens as text
                token_ids JSON,
                scores JSON,            -- A(t) per token (eq. 2)
                mass JSON,              -- attention mass on the image per token
                words JSON,             -- sub-word pieces joined
                word_scores JSON,
                positions JSON,         -- segment, image, question and answer positions in input_ids
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
        ],
    )
)

MIGRATIONS.append(
    (
        3,
        "generated samples, generation rejects, selections",
        [
            """CREATE TABLE IF NOT EXISTS samples (
                sample_id VARCHAR,      -- sha256(item, task, question, answer, backend, model, prompt version)
                item_id VARCHAR,        -- the item it was generated from (lineage)
                task VARCHAR,           -- recognition | damage_detection | matching | attribute_extraction | counting |
                                        -- condition_packaging | comparison | refusal
                question VARCHAR,
                answer VARCHAR,
                answer_format VARCHAR,  -- short | detailed | list | json | yes_no
                image_ids JSON,         -- the images the question is about, in order ([1], [2], ...)
                label VARCHAR,          -- yes | no for the objective (yes/no) forms, else NULL
                backend VARCHAR,        -- template | openai | hf
                model_id VARCHAR,
                prompt_version VARCHAR, -- content hash of the template and its few-shot examples
                lineage JSON,           -- source, the catalog item a complaint refers to, negatives used, ...
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS generation_rejects (
                item_id VARCHAR,
                task VARCHAR,
                backend VARCHAR,
                model_id VARCHAR,
                prompt_version VARCHAR,
                reason VARCHAR,         -- bad_json | unknown_keys | empty | duplicate | too_long | no_pairs | http_error ...
                detail VARCHAR,
                question VARCHAR,
                answer VARCHAR,
                raw_response VARCHAR,   -- kept for inspection (the prompt was redacted, so is this)
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS generation_requests (
                item_id VARCHAR,        -- one row per (item, task, backend, model, prompt version) done:
                task VARCHAR,           -- what makes generation resumable without regenerating
                backend VARCHAR,
                model_id VARCHAR,
                prompt_version VARCHAR,
                n_samples INTEGER,
                n_rejects INTEGER,
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS selections (
                name VARCHAR,           -- a named stratified sample
                subject_kind VARCHAR,   -- sample | item
                subject_id VARCHAR,
                stratum JSON,           -- {"category": ..., "brand": ...}
                seed INTEGER,
                run_id VARCHAR,
                created_at TIMESTAMPTZ
            )""",
        ],
    )
)

MIGRATIONS.append(
    (
        4,
        "samples: the fields that support each answer",
        [
            # [{"field": "title", "text": "Pack of 12"}, ...]: which of the item's fields the answer rests on
            # (the template backend knows; an LLM's answers have none)
            "ALTER TABLE samples ADD COLUMN IF NOT EXISTS evidence JSON",
        ],
    )
)

MIGRATIONS.append(
    (
        5,
        "exclusions: samples a curator took out of the data set, as an append-only log",
        [
            # One row per change (see db/exclusions.py for why a log and not a flag): a sample's state is
            # its row with the highest ``seq``. In the lake, not the app tables, so a snapshot pinned at
            # DuckLake version V reads the exclusions as they were at V (time travel), like every other row.
            """CREATE TABLE IF NOT EXISTS exclusions (
                sample_id VARCHAR,
                seq INTEGER,            -- 1, 2, 3, ... per sample: the order of its changes
                excluded BOOLEAN,       -- true: taken out from here on; false: restored
                reason VARCHAR,         -- why it was taken out (required) or restored (optional)
                by_user VARCHAR,        -- who did it (web user or the OS / VITPRO_USER of the CLI)
                changed_at TIMESTAMPTZ
            )""",
        ],
    )
)

LATEST = MIGRATIONS[-1][0]


def applied_version(lake: Lake) -> int:
    exists = lake.scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'lake' AND table_name = 'schema_migrations'"
    )
    if not exists:
        return 0
    return int(lake.scalar("SELECT coalesce(max(version), 0) FROM schema_migrations") or 0)


def migrate(lake: Lake) -> list[int]:
    """Apply the missing migrations; each in its own transaction together with its version row.

    Safe to run twice and from two processes at once: a step that lost a commit race is retried, sees
    its version recorded and does nothing.
    """
    lake.transaction(
        lambda con: con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER, name VARCHAR, applied_at TIMESTAMPTZ)"
        )
    )
    done: list[int] = []
    for version, name, statements in MIGRATIONS:

        def step(con, version=version, name=name, statements=statements) -> bool:
            already = con.execute(
                "SELECT count(*) FROM schema_migrations WHERE version = ?", [version]
            ).fetchone()[0]
            if already:
                return False
            for statement in statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
            return True

        if lake.transaction(step):
            done.append(version)
    return done
