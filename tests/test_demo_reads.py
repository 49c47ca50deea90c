"""The demo summary's reads (db/reads/demo_reads.py) on a store with ingested demo data and template samples."""
from __future__ import annotations

from db.reads import demo_reads

from .curation_store import ingest_and_generate


def test_the_demo_summary_reads_what_the_store_holds(home, tmp_path):
    lake = ingest_and_generate(tmp_path / "data", products=6, complaints=4, names=("demo-catalog", "demo-complaints"))
    tasks = dict(demo_reads.samples_per_task(lake))
    assert tasks and sum(tasks.values()) == lake.scalar("SELECT count(*) FROM samples") and list(tasks) == sorted(tasks)
    first = lake.fetchone("SELECT feedback_text FROM items WHERE kind = 'feedback' ORDER BY row_number LIMIT 1")[0]
    assert demo_reads.first_feedback_text(lake, "demo-complaints") == first and demo_reads.first_feedback_text(lake, "nope") is None
    assert demo_reads.catalog_brands_and_ocr(lake) == []  # nothing read by OCR yet
    assert demo_reads.least_grounded_words(lake) is None  # nothing scored yet
    rejects = demo_reads.rejects_per_reason(lake)
    assert sum(n for _, _, n in rejects) == lake.scalar("SELECT count(*) FROM generation_rejects")
