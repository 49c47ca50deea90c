"""The objective and attribute benchmarks ask about the held-out products' own attributes: keys and values
from the data (the real ABO listings and the demo catalog in a real store), balanced yes/no, each "no" a
value of another product of the same category, never one equal to the truth."""
from __future__ import annotations

import json
import re

from config.settings import load_settings
from curation import snapshots
from curation.filters import FilterConfig
from curation.generation.facts import canonical_key
from db.app.engine import write_engine
from db.store import init_store
from jobs.ingest import IngestJob
from trainer import benchmarks as bm
from trainer.metrics import normalise_value

from .curation_store import ingest_and_generate
from .test_generation import _run_job

_QUESTION = re.compile(r"^Is the (.+) of this product (.+)\?$")


def _store_rows(tmp_path, shared_data):
    init_store(load_settings().store)
    params = IngestJob(source=str(shared_data / "abo-samples" / "listings.jsonl"), format=None, mapping=None, name=None,
                       image_root=None, redact=True).params()
    assert _run_job("ingest", params).status == "succeeded"
    lake = ingest_and_generate(tmp_path / "demo")  # the demo catalog and complaints beside them, then the template samples
    engine = write_engine(load_settings().app_url)
    snapshots.create(lake, engine, name="snap", filter_name=None, config=FilterConfig([]), created_by="tester")
    return snapshots.eval_rows(lake, engine, "snap")


def _ae(items):
    return [i for i in items if i.task == "AE"]


def test_benchmarks_ask_about_the_products_own_attributes(home, tmp_path, shared_data):
    rows = _store_rows(tmp_path, shared_data)
    # the held-out rows carry the product's own fields: the ABO listing's attribute column, a complaint its catalog product's
    starter = next(r for r in rows if r["product"] == "B0799CK52K")
    assert starter["brand"] == "Starter" and starter["title"] == "Starter Yoga Bag"
    assert starter["attributes"]["fabric_type"] == "100% Polyester" and starter["attributes"]["color"] == "Iron Grey"
    complaint = next(r for r in rows if r["product"] == "DP1005" and r["task"] == "damage_detection")
    assert complaint["title"] == "Kestrel Fresh Mint Laundry Detergent 3 kg" and complaint["brand"] == "Kestrel"
    assert complaint["attributes"]["Size"] == "3 kg"

    items = bm.objective_items(rows, seed=3, known_brands=bm.brand_index(rows))
    ae = _ae(items)
    questions = {(i.question, i.reference) for i in ae}
    assert ("Is the color of this product Iron Grey?", "yes") in questions  # the listing's colour, not the paper's fixed keys
    assert ("Is the brand of this product Starter?", "yes") in questions
    assert ("Is the model number of this product ST1004?", "yes") in questions  # a key of the listing's own, in words
    assert ("Is the size of this product 3 kg?", "yes") in questions
    assert not any(i.question.startswith(("Is the producttype", "Is the product type", "Is the name")) for i in ae)
    # exactly balanced, and every "yes" has its "no" about the same item and key
    assert len(ae) > 40 and sum(i.reference == "yes" for i in ae) == sum(i.reference == "no" for i in ae)
    assert {i.item_id.removesuffix(":yes") for i in ae if i.reference == "yes"} == {i.item_id.removesuffix(":no") for i in ae if i.reference == "no"}

    # each "no": another product's value of the key, of the same category where that category has another value
    facts = {}  # (category, product) -> {key: value}
    for r in rows:
        facts.setdefault((r["category"], r["product"]), {k: f.value for k, f in bm.product_facts(r, bm.brand_index(rows)).items()})
    truth = {}
    for i in ae:
        if i.reference == "yes":
            truth[i.item_id.removesuffix(":yes")] = _QUESTION.match(i.question).group(2)
    same_category = 0
    for i in ae:
        if i.reference != "no":
            continue
        key = i.item_id.split(":")[-2]
        assert bm.key_words(key) == _QUESTION.match(i.question).group(1)
        value = _QUESTION.match(i.question).group(2)
        true_value = truth[i.item_id.removesuffix(":no")]
        assert normalise_value(value) != normalise_value(true_value)
        def others(category_ok):
            return {normalise_value(v[key]) for (c, p), v in facts.items()
                    if category_ok(c) and p != i.product and key in v and normalise_value(v[key]) != normalise_value(true_value)}
        in_category = others(lambda c: c == i.category)
        if in_category:
            assert normalise_value(value) in in_category, (i.question, i.category)
            same_category += 1
        else:
            assert normalise_value(value) in others(lambda c: True)
    assert same_category > 20
    # "Count" is "1" for every demo product and nothing else states one: no other value, so no question
    assert not any(i.question.startswith("Is the count of") for i in ae)
    # seeded: the same rows give the same set, in any order
    assert [i.to_dict() for i in bm.objective_items(rows, seed=3)] == [i.to_dict() for i in items]
    assert {i.question for i in _ae(bm.objective_items(list(reversed(rows)), seed=3))} == {i.question for i in ae}

    # the attribute benchmark's reference: every fact the item's own fields state, not the generated answer
    refs = {i.product: json.loads(i.reference) for i in bm.attribute_items(rows)}
    assert refs["B0799CK52K"]["FabricType"] == "100% Polyester" and refs["B0799CK52K"]["Color"] == "Iron Grey"
    assert refs["B0799CK52K"]["Brand"] == "Starter" and refs["B074M5HPBD"]["Color"] == "Bright White"
    assert refs["DP1005"]["Size"] == "3 kg" and "TargetGender" not in refs["DP1005"]  # "Unanswerable" in the column is no value
    # a limit keeps the balance
    limited = _ae(bm.objective_items(rows, seed=3, limit_per_task=6))
    assert [i.reference for i in limited].count("yes") == [i.reference for i in limited].count("no") == 3


def _row(n, product, category, attributes, task="attribute_extraction", item=None):
    return {"sample_id": f"s{n}", "item_id": item or f"i{n}", "task": task, "question": "Attributes as JSON?", "answer": "{}", "answer_format": "json",
            "label": None, "category": category, "blob_paths": [f"{n}.jpg"], "ocr_texts": [""], "product": product,
            "title": f"Item {n}", "brand": None, "attributes": attributes}


def test_negatives_fall_back_to_other_categories_and_never_equal_the_truth():
    rows = [
        _row(1, "A", "Shirts", {"Sleeve Style": "3/4 Sleeve", "colour": "Iron Grey"}),
        _row(2, "B", "Shirts", {"sleeve_style": "Short Sleeve", "Color": "iron grey."}),  # the same colour, spelled otherwise
        _row(3, "C", "Bags", {"Color": "Navy", "Capacity": "20 L"}),  # the only capacity: no other value, no question
        _row(4, "A", "Shirts", {"Sleeve Style": "3/4 Sleeve", "colour": "Iron Grey"}, task="recognition", item="i1"),  # the same item again
    ]
    assert canonical_key("Sleeve Style") == "SleeveStyle" and bm.key_words("SleeveStyle") == "sleeve style"
    ae = _ae(bm.objective_items(rows, seed=0))
    got = sorted((i.item_id, i.question) for i in ae)
    assert got == sorted([
        ("s1:SleeveStyle:yes", "Is the sleeve style of this product 3/4 Sleeve?"),
        ("s1:SleeveStyle:no", "Is the sleeve style of this product Short Sleeve?"),
        ("s1:Color:yes", "Is the color of this product Iron Grey?"),
        ("s1:Color:no", "Is the color of this product Navy?"),  # "iron grey." is the truth after normalising: from Bags instead
        ("s2:SleeveStyle:yes", "Is the sleeve style of this product Short Sleeve?"),
        ("s2:SleeveStyle:no", "Is the sleeve style of this product 3/4 Sleeve?"),
        ("s2:Color:yes", "Is the color of this product iron grey?"),
        ("s2:Color:no", "Is the color of this product Navy?"),
        ("s3:Color:yes", "Is the color of this product Navy?"),
        ("s3:Color:no", "Is the color of this product Iron Grey?"),
    ])
    assert bm.prompt_question(ae[0], "objective") == "Answer in a single word: yes or no.\n" + ae[0].question
