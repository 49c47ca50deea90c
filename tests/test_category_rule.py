"""One category per item everywhere: a product whose catalog copies disagree (two sources, two
categories) is counted under the same category by filters, sampling, the browse page and exports."""
from __future__ import annotations

from datetime import datetime, timezone

from config.settings import load_settings
from curation.filters import FilterConfig, stats_for
from db.lake import batches, sampling
from db.reads import browse, samples_view
from db.store import open_store


def _item(item_id, source, kind, *, external_id=None, category=None, product_ref=None, run="r1"):
    now = datetime.now(timezone.utc)
    return {"item_id": item_id, "source_id": source, "external_id": external_id, "row_number": 1, "kind": kind, "product_ref": product_ref,
            "title": f"title {item_id}", "category": category, "feedback_text": "broken" if kind == "feedback" else None, "n_images": 1,
            "run_id": run, "ingested_at": now}


def _image(item_id, run="r1"):
    return {"image_id": f"img-{item_id}", "item_id": item_id, "position": 0, "sha256": f"sha-{item_id}", "blob_path": f"b/{item_id}.jpg",
            "run_id": run, "ingested_at": datetime.now(timezone.utc)}


def test_a_products_disagreeing_copies_give_one_category_everywhere(home):
    lake = open_store(load_settings().store)
    # the copy written first says Zebra, the later one Apple: min() (Apple) is the rule, whatever a scan meets first
    batches.write_ingest_batch(lake, "r1", [_item("cat-1", "s1", "catalog", external_id="P1", category="Zebra")], [_image("cat-1")], [])
    batches.write_ingest_batch(lake, "r2", [_item("cat-2", "s2", "catalog", external_id="P1", category="Apple", run="r2")], [_image("cat-2", "r2")], [])
    batches.write_ingest_batch(lake, "r3", [_item("fb-1", "s3", "feedback", product_ref="P1", run="r3")], [_image("fb-1", "r3")], [])
    now = datetime.now(timezone.utc)
    samples = [{"sample_id": f"x{k}", "item_id": "fb-1", "task": "damage_detection", "question": f"q{k}?", "answer": "yes",
                "answer_format": "yes_no", "image_ids": ["img-fb-1"], "label": "yes", "backend": "template", "model_id": "t",
                "prompt_version": "v", "run_id": "g1", "created_at": now} for k in range(3)]
    batches.write_generation(lake, "g1", samples, [], [])

    config = FilterConfig([])
    filtered = {c: k + d for c, k, d in stats_for(lake, config).report(config).per_category}
    sql, params, names = sampling.stratified(lake, by=["category"], per_stratum=10)
    sampled = {row[0]: row[1] for row in sampling.balance(lake, sql, params, names)}
    shown = browse.facets(lake)["category"]
    browsed = {c: browse.browse(lake, vis_model=None, clip_model=None, categories=[c], limit=0)[0] for c in ("Apple", "Zebra")}
    exported = {r["category"] for r in samples_view.samples_with_images(lake, [s["sample_id"] for s in samples])}

    assert filtered == {"Apple": 3}
    assert sampled == {"Apple": 3}
    assert shown == ["Apple"]
    assert browsed == {"Apple": 3, "Zebra": 0}
    assert exported == {"Apple"}
