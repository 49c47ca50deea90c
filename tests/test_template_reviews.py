"""Template samples that hold on real customer reviews (issue 29, part 6): the repetition rule held when samples
are written, no empty slot, and a condition only where the customer speaks of the product or its parcel as it
arrived. On the real Amazon Fine Food reviews and phone-review sentences in ../shared/data, as a new user would
ingest them (no product titles, a category every review shares, a photo each), and on texts written to mirror
each failure seen there."""
from __future__ import annotations

import csv
import json
import re
import shutil

import pytest

from config.settings import load_settings
from curation.generation import TASKS, GeneratedSample, GenerationOutcome, ItemContext, applicable
from curation.generation.condition import arrival_condition
from curation.generation.parse import Reject
from curation.generation.repeats import Candidate, RepeatRule, hold_outcome, hold_to_rule
from curation.generation.report import build_report
from curation.generation.tasks import condition
from curation.generation.templates import TemplatePair, template_pairs
from curation.mapping import ColumnMapping
from db.app import jobs
from db.app.engine import write_engine
from db.reads import generation_reads, quality
from db.store import init_store, open_store
from jobs.generate import GenerateJob
from jobs.ingest import IngestJob

from .test_generation import _run_job


# ---- the real reviews, as a new user ingests them ----------------------------------------------------------
def _fine_food(shared_data) -> list[dict[str, str]]:
    with open(shared_data / "reviews" / "amazon_fine_food_200.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _phone_sentences(shared_data) -> list[str]:
    with open(shared_data / "reviews" / "amazon_cells_labelled.txt", encoding="utf-8") as f:
        return [line.rsplit("\t", 1)[0] for line in f if line.strip()]


def _review(r: dict[str, str], **kw) -> ItemContext:
    """A review as `--map feedback_text=Summary,Text --map product_ref=ProductId` ingests it (the README's way:
    no title), with the category every review of the set shares and one photo."""
    base = dict(item_id=r["Id"], kind="feedback", title=None, description=None, brand=None, category="Grocery", attributes={},
                feedback_text=f"{r['Summary']}\n\n{r['Text']}", issue_type=None, image_ids=["photo"])
    return ItemContext(**{**base, **kw})


def _said(text: str, **kw) -> ItemContext:
    base = dict(item_id="w1", kind="feedback", title=None, description=None, brand=None, category="Home Improvement", attributes={},
                feedback_text=text, issue_type=None, image_ids=["photo"])
    return ItemContext(**{**base, **kw})


_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
_DANGLING = re.compile(r"\{\w*\}|\bNone\b|\s[.,;:!?]|\b(?:for|of|from|on|is)\s*[.,;:)]|\(\s*\)")


def slot_faults(text: str, data: tuple[str, ...] = ()) -> list[str]:
    """What betrays an empty or unfilled slot in a question or answer. The customer's own words inside quotes
    are theirs (a space before a comma there is the customer's), and so are the ``data`` strings filled in
    (a title such as "Never paid that much !"): only the words around them are read for dangling punctuation."""
    faults = []
    if "  " in text:
        faults.append("doubled space")
    if re.search(r'""|“”|\(\s*""\s*\)', text):
        faults.append("empty quote")
    if re.search(r"the listing (?:for|of)\s+(?:give|gives|states|show|shows)\b|the listing (?:for|of)\s{2}", text):
        faults.append("the listing for nothing")
    for value in sorted(filter(None, data), key=len, reverse=True):
        text = text.replace(value, "T")
    if _DANGLING.search(_QUOTED.sub('"q"', text)):
        faults.append("dangling slot")
    return faults


def test_the_slot_check_sees_each_kind_of_empty_slot():
    assert slot_faults("That cannot be answered from the photo: the listing for  states no price.") == ["doubled space", "the listing for nothing"]
    assert slot_faults('It is damaged; the customer writes: ""') == ["empty quote"]
    assert slot_faults("Does the photo show None? Answer yes or no.") == ["dangling slot"]
    assert slot_faults("12: the listing for {t} says so.") == ["dangling slot"]
    assert slot_faults("It contains 12; is sold as .") == ["dangling slot"]
    assert slot_faults('Damaged: "great taffy , but the box was crushed", the customer says.') == []


def _all_pairs(ctx: ItemContext) -> list[tuple[str, TemplatePair]]:
    # every task, applicable or not: a template must not fill an empty slot even where it is called directly
    return [(task, pair) for task in TASKS for pair in template_pairs(ctx, task)]


def test_no_question_or_answer_has_an_empty_slot_over_the_real_reviews(shared_data):
    reviews = _fine_food(shared_data)
    listing_without_title = {"item_id": "cat-1", "title": None, "brand": None, "category": "Grocery", "attributes": {}, "image_ids": ["catalog-photo"],
                             "description": None}
    variants = {
        "no title": lambda r: _review(r),
        # examples/complaints.yaml maps the review's Summary to the title
        "summary as title": lambda r: _review(r, title=r["Summary"]),
        # text read from the photo, with the spacing OCR leaves
        "photo text": lambda r: _review(r, ocr_text=f"  NET WT\n{len(r['Text']) % 40 + 4} OZ   {r['ProductId']}  "),
        "listing without title": lambda r: _review(r, product=listing_without_title, ocr_text=r["ProductId"]),
        "spaced title": lambda r: _review(r, title=f"  {r['Summary']}   -  Pack of  6 ", negative_title="Twizzlers  Strawberry,   16 oz"),
    }
    made = {}
    for name, build in variants.items():
        contexts = {r["Id"]: build(r) for r in reviews}
        pairs = [(i, task, pair) for i, ctx in contexts.items() for task, pair in _all_pairs(ctx)]
        # a title is data: the words it brings are checked for doubled spaces and empty quotes, not for punctuation
        titles = {i: (" ".join((ctx.product_title or "").split()), " ".join((ctx.product_title or "").split()[:8]),
                      " ".join((ctx.negative_title or "").split())) for i, ctx in contexts.items()}
        bad = [(i, task, text, slot_faults(text, titles[i])) for i, task, pair in pairs for text in (pair.question, pair.answer)
               if slot_faults(text, titles[i])]
        assert bad == [], (name, bad[:5])
        assert all(e["text"] for _, _, pair in pairs for e in pair.evidence), name  # no evidence rests on an empty field
        made[name] = len(pairs)
    # without a title or the photo's text, only the customers' own sentences about the condition make pairs:
    # 6 damaged reviews (a yes and a "what is wrong" each) and 3 intact ones (a no each), 9 condition answers
    assert made["no title"] == 6 * 2 + 3 + 9
    # the photo's text gives each review a size to extract and a refusal that names it
    assert made["photo text"] == made["no title"] + 200 + 200


def test_no_title_says_this_product_or_writes_nothing(shared_data):
    r = next(r for r in _fine_food(shared_data) if r["Id"] == "2")
    untitled = _review(r)
    # a refusal would be one stock sentence for every untitled review, and recognition has nothing to name
    assert template_pairs(untitled, "refusal") == [] and template_pairs(untitled, "recognition") == [] and template_pairs(untitled, "matching") == []
    read = _review(r, ocr_text="Jumbo Salted Peanuts 6 x 500 g")
    # with the photo's text, the refusal names what was read (and no listing: a review without one has none)
    assert [(p.question, p.answer, p.evidence) for p in template_pairs(read, "refusal")] == [
        ("Who ordered this product?", 'I can\'t tell: the text read from the photo ("Jumbo Salted Peanuts 6 x 500 g") gives no buyer details.',
         [{"field": "ocr", "text": "Jumbo Salted Peanuts 6 x 500 g"}])]
    # a count printed on the pack is the pack's words, not the listing's
    assert [(p.answer, p.evidence) for p in template_pairs(read, "counting")] == [
        ('6: the pack of this product reads "6 x 500 g".', [{"field": "ocr", "text": "6 x 500 g"}])]
    listing = _review(r, product={"item_id": "cat-1", "title": None, "image_ids": ["cat"], "attributes": {}}, ocr_text="Jumbo Salted Peanuts")
    answer, = [p.answer for p in template_pairs(listing, "refusal")]
    assert answer == ('That cannot be answered from the text read from the photo ("Jumbo Salted Peanuts"): the listing for this product states '
                      "no buyer details.")
    same, = template_pairs(listing, "comparison")
    assert "catalog photo of this product" in same.question and same.evidence == [{"field": "product_ref", "text": "cat-1"}]


def test_an_attribute_answer_never_rests_on_the_shared_category_alone(shared_data):
    reviews = _fine_food(shared_data)
    # before: 200 of 200 answers were {"ProductType": "Grocery"}
    assert [template_pairs(_review(r), "attribute_extraction") for r in reviews] == [[]] * 200
    with_size = template_pairs(_review(reviews[0], ocr_text="Dog Food 30 lb bag"), "attribute_extraction")
    assert [json.loads(p.answer) for p in with_size] == [{"ProductType": "Grocery", "Size": "30 lb"}]
    for attributes in ({}, {"product_type": "HOOK"}):  # the item's own type column is the same kind of shared value
        catalog = ItemContext(item_id="c1", kind="catalog", title=None, description=None, brand=None, category="Wall Hooks", attributes=attributes,
                              feedback_text=None, issue_type=None, image_ids=["p"])
        assert template_pairs(catalog, "attribute_extraction") == []
    titled = ItemContext(item_id="c2", kind="catalog", title="Command Small Wall Hooks, 6 Hooks", description=None, brand=None, category="Wall Hooks",
                         attributes={}, feedback_text=None, issue_type=None, image_ids=["p"])
    assert [json.loads(p.answer) for p in template_pairs(titled, "attribute_extraction")] == [
        {"ProductType": "Wall Hooks", "Name": "Command Small Wall Hooks, 6 Hooks"}]


# ---- the condition on arrival --------------------------------------------------------------------------------
def test_arrival_condition_over_the_real_fine_food_reviews(shared_data):
    found = {r["Id"]: condition(_review(r)) for r in _fine_food(shared_data)}
    assert {i: c.state for i, c in found.items() if c} == {
        "14": "intact", "73": "intact", "174": "intact", "77": "damaged", "79": "damaged", "141": "damaged", "147": "damaged", "168": "damaged",
        "183": "damaged"}
    # "the zip-lock ripped off and quit working after awhile": worn out in use, not how the pouch came
    assert found["193"] is None
    assert found["141"].quote == "My only complaint is that one of the bags broke open in shipping."


@pytest.mark.parametrize("sentence, state", [
    # broken in use or by the customer's hand, later: not arrival
    ("This item worked great, but it broke after 6 months of use.", None),
    ("A PIECE OF JUNK THAT BROKE AFTER BEING ON MY PHONE FOR 2 DAYS!!!", None),
    ("All it took was one drop from about 6 inches above the kitchen counter and it was cracked.", None),
    ("I got the car charger and not even after a week the charger was broken...", None),
    ("Finally, after three or four times the spring of the latch broke and I could not use it any longer on the visor.", None),
    ("This does not fit the Palm Tungsten E2 and it broke the first time I tried to plug it in.", None),
    ("After receiving and using the product for just 2 days it broke.", None),
    ("Bought mainly for the charger, which broke soon after purchasing.", None),
    ("All three broke within two months of use.", None),
    # something else than the product: the sound, music files
    ("The only thing that I think could improve is the sound leaks out from the headset.", None),
    ("Also, the phone doesn't seem to accept anything except CBR mp3s, preferably ripped by Windows Media Player.", None),
    # the parcel as it came
    ("Headset works great & was packaged nicely to avoid any damage.", "intact"),
    ("Well packaged, arrived on time, and works as intended.", "intact"),
])
def test_arrival_condition_of_real_phone_reviews(shared_data, sentence, state):
    assert any(line.startswith(sentence[:40]) for line in _phone_sentences(shared_data))  # the data's own sentence
    found = arrival_condition([("feedback_text", sentence)])
    assert (found.state if found else None) == state


WALL = "For my use it works well and I can remove them with little or no damage to the wall."


@pytest.mark.parametrize("text, state, quote", [
    (WALL, None, None),  # the wall, not the hooks; and nothing about how they came
    ("Great hooks. No damage to my paint when I took them down.", None, None),
    ("These hard candies are awful, I broke my tooth on one.", None, None),
    ("Some reviewers said it arrived broken.", None, None),
    ("Other customers complained that the bottles leaked.", None, None),
    ("I read that people got crushed boxes. Not me!", None, None),
    ("Some reviewers said theirs arrived broken, but mine came in perfect condition.", "intact",
     "Some reviewers said theirs arrived broken, but mine came in perfect condition."),
    ("Some said theirs arrived broken, but mine came in perfect condition.", "intact",
     "Some said theirs arrived broken, but mine came in perfect condition."),
    ("Others got theirs crushed.", None, None),
    ("The lid cracked after two weeks.", None, None),
    ("I dropped the jar and the lid cracked.", None, None),
    ("My son broke the handle the day after it came.", None, None),
    ("If it arrives broken they refund you.", None, None),
    ("Great bottle, no leaks in my gym bag.", None, None),  # intact, but not how it arrived
    ("I was worried it would leak, but it came well packed.", "intact", "I was worried it would leak, but it came well packed."),
    ("It arrived after 3 days, crushed.", "damaged", "It arrived after 3 days, crushed."),  # delivery time, not later
    ("The jar arrived cracked.", "damaged", "The jar arrived cracked."),
    ("Arrived well packed. The jar inside was cracked.", "damaged", "The jar inside was cracked."),
    ("The seal was broken when I opened the box.", "damaged", "The seal was broken when I opened the box."),
])
def test_arrival_condition_of_written_reviews(text, state, quote):
    found = condition(_said(text))
    assert (found.state if found else None, found.quote if found else None) == (state, quote)


def test_no_condition_pair_from_the_wall_other_reviewers_or_a_later_break():
    for text in (WALL, "Some reviewers said it arrived broken.", "The handle broke after two weeks, my fault really: I dropped it."):
        ctx = _said(text)
        assert not applicable("condition_packaging", ctx) and template_pairs(ctx, "condition_packaging") == []
        assert template_pairs(ctx, "damage_detection") == []
    # it came whole and broke later: arrival says intact, but the photo may show the break, so no "not damaged" verdict
    later = _said("It arrived in perfect condition, but the handle broke after a week.")
    assert condition(later).state == "intact" and condition(later).damaged_since
    (_, answer), = [(p.question, p.answer) for p in template_pairs(later, "condition_packaging")]
    assert answer.endswith('"It arrived in perfect condition, but the handle broke after a week."')
    assert template_pairs(later, "damage_detection") == []
    whole = _said("It arrived in perfect condition.")
    assert [p.answer for p in template_pairs(whole, "damage_detection")] == ["No."]


# ---- the repetition rule when samples are written --------------------------------------------------------
def test_the_write_rule_is_the_reports_rule():
    rule = RepeatRule()
    assert [rule.allowed_products(n) for n in (0, 1, 49, 50, 99, 100, 149, 150, 151, 1000)] == [1, 1, 1, 1, 1, 2, 2, 3, 3, 20]
    for samples in range(1, 400):
        for products in range(1, 12):
            row = {"task": "t", "samples": samples, "distinct_answers": 1, "yes_no": 0, "unanswerable": 0,
                   "most_repeated_other": products if products > 1 else 0, "top_answers": []}
            assert (products <= rule.allowed_products(samples)) == build_report([row], {}).within_rule, (samples, products)


def _c(answer: str, product: str, task: str = "refusal", verdict: bool = False) -> Candidate:
    return Candidate(task, answer, product, verdict)


def test_at_the_start_of_a_job_one_product_per_answer_is_kept():
    stock = [_c('{"ProductType": "Grocery"}', f"p{k}", "attribute_extraction") for k in range(5)]
    held = hold_to_rule(stock, {}, {})
    assert held.kept == [0] and [d.index for d in held.dropped] == [1, 2, 3, 4]
    assert held.dropped[0].reason == "its answer would be given for 2 products; 1 sample(s) of the task allow 1"


def test_verdicts_and_the_same_product_are_not_repeats():
    candidates = [_c("Yes.", f"p{k}", "matching", verdict=True) for k in range(4)] + [_c("Intact.", "p1"), _c("Intact.", "p1"), _c("Intact.", "p2")]
    held = hold_to_rule(candidates, {}, {})
    assert held.kept == [0, 1, 2, 3, 4, 5] and [d.index for d in held.dropped] == [6]


def test_what_the_store_holds_counts_and_the_cap_grows_with_the_task():
    answer = "I can't tell: the photo gives no price."
    candidates = [_c(answer, p) for p in ("a", "b", "c", "d", "e")]
    # the store has the answer for 2 products, "c" among them, and 200 refusals: with these 5, 4 products may share it
    held = hold_to_rule(candidates, {("refusal", answer): (2, frozenset({"c"}))}, {"refusal": 200})
    assert held.kept == [0, 1, 2] and [d.index for d in held.dropped] == [3, 4]  # "c" is not a new product
    assert held.dropped[0].reason == "its answer would be given for 5 products; 203 sample(s) of the task allow 4"
    # the same answer in another task is another answer
    assert hold_to_rule(candidates, {("comparison", answer): (9, frozenset())}, {"refusal": 200}).kept == [0, 1, 2, 3]


def test_drops_make_the_task_smaller_and_the_cap_is_read_again():
    # 100 samples would allow 2 products; dropping the third makes 99 samples, which allow 1: the second goes too
    candidates = [_c("Same.", f"p{k}") for k in range(3)] + [_c(f"Own answer {k}.", f"q{k}") for k in range(97)]
    held = hold_to_rule(candidates, {}, {})
    assert [d.index for d in held.dropped] == [1, 2] and len(held.kept) == 98


def test_an_outcome_keeps_its_markers_and_the_dropped_pairs_are_rejects():
    def sample(item, answer, label=None):
        return GeneratedSample(f"s-{item}-{answer}", item, "attribute_extraction", "Attributes?", answer, "json", ["img"], label, {}, [])

    outcome = GenerationOutcome(samples=[sample("i1", "{}"), sample("i2", "{}"), sample("i3", "{}")],
                                rejects=[("i9", "refusal", Reject("empty", "an empty answer"), "raw")],
                                done=[("i1", "attribute_extraction", 1, 0), ("i2", "attribute_extraction", 1, 0), ("i3", "attribute_extraction", 1, 0)])
    held, dropped = hold_outcome(outcome, {"i1": "P1", "i2": "P2", "i3": "P1"}, {}, {})
    assert dropped == 1 and [s.item_id for s in held.samples] == ["i1", "i3"]  # i3 is P1 again
    assert [(i, t, r.reason, r.question, r.answer) for i, t, r, _ in held.rejects] == [
        ("i9", "refusal", "empty", None, None), ("i2", "attribute_extraction", "repeated_answer", "Attributes?", "{}")]
    assert held.done == [("i1", "attribute_extraction", 1, 0), ("i2", "attribute_extraction", 0, 1), ("i3", "attribute_extraction", 1, 0)]
    # an item with no product key is its own product: three products, three samples, one may keep the answer
    assert hold_outcome(outcome, {}, {}, {})[1] == 2
    one_product = GenerationOutcome(samples=outcome.samples[:1], done=outcome.done[:1])
    assert hold_outcome(one_product, {}, {}, {}) == (one_product, 0)


# ---- through the job, on the real reviews with photos -------------------------------------------------------
def _ingest_reviews(shared_data, tmp_path) -> None:
    """The 200 Fine Food reviews with a real photo each (the grocery set's) and the category they share, ingested
    the README's way: no title."""
    with open(shared_data / "grocery-photos" / "photos.csv", encoding="utf-8") as f:
        photos = [r["file"] for r in csv.DictReader(f)]
    src = tmp_path / "reviews"
    (src / "images").mkdir(parents=True)
    rows = []
    for k, r in enumerate(_fine_food(shared_data)):
        shutil.copy(shared_data / "grocery-photos" / photos[k * 7 % len(photos)], src / "images" / f"r{r['Id']}.jpg")
        rows.append({"Id": r["Id"], "ProductId": r["ProductId"], "Summary": r["Summary"], "Text": r["Text"], "category": "Grocery",
                     "image": f"images/r{r['Id']}.jpg"})
    with open(src / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    init_store(load_settings().store)
    mapping = ColumnMapping(item_kind="feedback", columns={"external_id": ["Id"], "product_ref": ["ProductId"], "feedback_text": ["Summary", "Text"],
                                                           "category": ["category"], "images": ["image"]})
    params = IngestJob(source=str(src / "reviews.csv"), format=None, mapping=mapping, name="reviews", image_root=str(src), redact=True).params()
    assert _run_job("ingest", params).status == "succeeded"


def test_template_samples_of_real_reviews_hold_the_rule_and_fill_every_slot(home, shared_data, tmp_path):
    _ingest_reviews(shared_data, tmp_path)
    job = _run_job("generate", GenerateJob(backend="template", items_per_unit=50).params())
    assert job.status == "succeeded" and job.counts["items_to_generate"] == 200 and job.counts["repeats_dropped"] == 0
    lake = open_store(load_settings().store)
    by_task = dict(lake.fetchall("SELECT task, count(*) FROM samples GROUP BY 1"))
    assert by_task == {"condition_packaging": 9, "damage_detection": 15}  # no stock attribute answer, no empty refusal
    for question, answer in lake.fetchall("SELECT question, answer FROM samples"):
        assert slot_faults(question) == [] and slot_faults(answer) == []
    report = build_report(quality.task_rows(lake, "template"), quality.coverage_rows(lake, "template"))
    assert report.within_rule
    # every (item, task) is done: a second job asks for nothing
    assert _run_job("generate", GenerateJob(backend="template").params()).counts["items_to_generate"] == 0

    # the store read behind the rule: the products an answer is given for, those of the unit's items among them
    item_73, item_14 = (lake.scalar("SELECT item_id FROM items WHERE external_id = ?", [i]) for i in ("73", "14"))
    answer_73 = lake.scalar("SELECT answer FROM samples WHERE item_id = ? AND task = 'condition_packaging'", [item_73])
    product_of, stored, samples = generation_reads.answer_products(lake, "template", [item_73, item_14], [("condition_packaging", answer_73)], "none")
    assert product_of == {item_73: "B006SQBRMA", item_14: "B001GVISJM"}
    assert stored == {("condition_packaging", answer_73): (1, frozenset({"B006SQBRMA"}))} and samples == {"condition_packaging": 9}
    assert generation_reads.answer_products(lake, "openai", [item_73], [("condition_packaging", answer_73)], "none")[2] == {}


def test_stock_answers_are_not_written_and_the_job_log_counts_them(home, shared_data, tmp_path, monkeypatch):
    """The failure as it was: every review's attribute answer the category alone. The job writes the answer for
    one product (its reviews are one product's photos) and drops the rest, as rejects the log counts."""
    from curation.generation import backends

    real = backends.template_pairs

    def category_alone(ctx, task):
        if task == "attribute_extraction":
            return [TemplatePair("Attributes?", json.dumps({"ProductType": ctx.category}), [{"field": "category", "text": ctx.category}])]
        return real(ctx, task)

    monkeypatch.setattr(backends, "template_pairs", category_alone)
    _ingest_reviews(shared_data, tmp_path)
    job = _run_job("generate", GenerateJob(backend="template", items_per_unit=50).params())
    lake = open_store(load_settings().store)
    # the first unit's first review is the first product given the answer; no later unit may add another
    first = lake.scalar("SELECT product_ref FROM items WHERE kind = 'feedback' ORDER BY item_id LIMIT 1")
    reviews_of_first = lake.scalar("SELECT count(*) FROM items WHERE product_ref = ?", [first])
    kept = lake.fetchall("SELECT DISTINCT i.product_ref FROM samples s JOIN items i USING (item_id) WHERE s.task = 'attribute_extraction'")
    assert kept == [(first,)] and lake.scalar("SELECT count(*) FROM samples WHERE task = 'attribute_extraction'") == reviews_of_first
    assert job.counts["repeats_dropped"] == 200 - reviews_of_first
    assert lake.scalar("SELECT count(*) FROM generation_rejects WHERE reason = 'repeated_answer'") == 200 - reviews_of_first
    logged = [m.message for m in jobs.log_tail(write_engine(load_settings().app_url), job.id, 100) if "repetition rule" in m.message]
    assert sum(int(m.split()[0]) for m in logged) == 200 - reviews_of_first
    # the markers count what was written, and the report finds the store within the rule
    assert lake.scalar("SELECT sum(n_samples) FROM generation_requests WHERE task = 'attribute_extraction'") == reviews_of_first
    assert build_report(quality.task_rows(lake), quality.coverage_rows(lake)).within_rule
