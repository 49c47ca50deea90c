"""The lake's tables (declared in db/lake/tables.py) created as numbered migrations.

Later stages hang off the ingest's keys: scores are long rows ``(subject, metric, model_id, value)`` keyed
by item, image or sample id, samples reference ``item_id``, per-token scores reference ``sample_id``; they
arrive as further migrations below.

DuckLake has no primary keys or unique constraints; uniqueness is kept by the writers (anti-joins in the
same transaction as the insert) and checked by the tests.
"""
from __future__ import annotations

from . import tables
from .connection import Lake

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "sources, items, images, errors, ocr", [tables.SOURCES.ddl(), tables.ITEMS.ddl(), tables.IMAGES.ddl(), tables.ERRORS.ddl(), tables.OCR.ddl()]),
    # Every stat once, long format (data-juicer's lesson): filters are predicates over these rows and
    # re-thresholding never recomputes. value is NULL where the subject could not be scored (flags say
    # why), so "not yet scored" and "could not be scored" differ.
    (2, "scores and per-token scores", [tables.SCORES.ddl(), tables.TOKEN_SCORES.ddl()]),
    (3, "generated samples, generation rejects, selections",
     [tables.SAMPLES.ddl(), tables.GENERATION_REJECTS.ddl(), tables.GENERATION_REQUESTS.ddl(), tables.SELECTIONS.ddl()]),
    # a store made before evidence was declared gets the column here; a newer one has it from step 3
    (4, "samples: the fields that support each answer", ["ALTER TABLE samples ADD COLUMN IF NOT EXISTS evidence JSON"]),
    # One row per change (see db/lake/exclusions.py for why a log and not a flag): a sample's state is its row
    # with the highest ``seq``. In the lake, not the app tables, so a snapshot pinned at DuckLake version V
    # reads the exclusions as they were at V (time travel), like every other row.
    (5, "exclusions: samples a curator took out of the data set, as an append-only log", [tables.EXCLUSIONS.ddl()]),
    # Snapshots made before this step have no list: db/ cannot rebuild a filter (that is curation's), so
    # curation.snapshots.backfill_members fills them in (`vitpro snapshot backfill`, or lazily on first read).
    (6, "snapshot members: each snapshot's sample ids, listed once", [tables.SNAPSHOT_MEMBERS.ddl(), tables.SNAPSHOT_MEMBER_LISTS.ddl()]),
    # Append-only as the exclusions are (db/lake/tags.py): who put a tag on or took it off, when; a filter
    # and a snapshot read the tags of their version.
    (7, "sample tags: free labels on samples, as an append-only log", [tables.SAMPLE_TAGS.ddl()]),
    # beside token_scores, not new columns of it: a sample scored before the gain existed gets its gain
    # rows later without its A(t) row being rewritten
    (8, "token gains: visual information gain per token", [tables.TOKEN_GAINS.ddl()]),
    # the groups themselves are stats (dup_group, dup_size, dup_rank in scores), so filters, snapshots and
    # time travel read them like any other; only the hashes need a table of their own
    (9, "image hashes: perceptual hashes for near-duplicate groups", [tables.IMAGE_HASHES.ddl()]),
    (10, "image embeddings: CLIP image vectors for semantic duplicates, clusters and the map", [tables.IMAGE_EMBEDDINGS.ddl()]),
    (11, "LLM calls, the response cache and Batch API batches: tokens, latency and cost per request; answers by request "
         "fingerprint; a unit's batch, to resume polling it", [tables.LLM_CALLS.ddl(), tables.LLM_CACHE.ddl(), tables.LLM_BATCHES.ddl()]),
]

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
