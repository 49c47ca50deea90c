"""Samples that carry the data's own facts: what titles and attribute columns state, condition only where a
customer describes it, varied answers, and the quality report that checks all of it."""
import csv
import json

import pytest

from curation.generation import GenResponse, ItemContext, PromptTemplate, TemplateBackend, applicable, build_requests, process_responses
from curation.generation.facts import canonical_key, item_facts, known_brand_index
from curation.generation.report import build_report
from curation.generation.tasks import condition
from curation.generation.templates import template_pairs
from db.reads import quality

from .curation_store import ingest_and_generate


@pytest.mark.parametrize("title, key, value, quote", [
    ("Lindt Dark Chocolate Truffles, Pack of 12", "Count", "12", "Pack of 12"),
    ("Kettle Brand Potato Chips, Sea Salt, 5 Count", "Count", "5", "5 Count"),
    ("Pyrex Glass Mixing Bowl Set of 6", "Count", "6", "Set of 6"),
    ("La Croix Sparkling Water 12-pack, Lime", "Count", "12", "12-pack"),
    ("Nature Valley Granola Bars, Pack of Two", "Count", "2", "Pack of Two"),
    ("Hanes Women's 3/4 Sleeve Crew Tee, Gray", "Color", "Gray", "Gray"),
    ("Amazon Essentials Men's Slim-Fit Jeans - Navy Blue, Size 32", "Color", "Navy Blue", "Navy Blue"),
    ("Hanes Women's 3/4 Sleeve Crew Tee, Gray", "TargetGender", "Women", "Women's"),
    ("Amazon Essentials Men's Slim-Fit Jeans - Navy Blue, Size 32", "Size", "32", "Size 32"),
    ("Orange Juice 64 fl oz", "Size", "64 fl oz", "64 fl oz"),
    ("NIKE Air Zoom Pegasus Running Shoe", "Brand", "NIKE", "NIKE"),
])
def test_titles_state_their_facts(title, key, value, quote):
    facts = item_facts(title=title, known_brands=known_brand_index(["NIKE", "Amazon Essentials", "Hanes", "Lindt"]))
    assert (facts[key].value, facts[key].source, facts[key].quote) == (value, "title", quote)


def test_colour_words_inside_a_name_are_not_colours():
    # "Black Pepper", "Orange Juice": a colour word that names the thing is not the product's colour
    for title in ("McCormick Black Pepper Grinder, 2.5 oz", "Tropicana Orange Juice 52 fl oz", "Green Tea Bags, 100 Count"):
        assert "Color" not in item_facts(title=title)


def test_attribute_keys_have_one_spelling_and_win_over_the_title():
    assert {canonical_key(k) for k in ("Sleeve Style", "sleeve_style", "sleeveStyle", "SLEEVE-STYLE")} == {"SleeveStyle"}
    assert [canonical_key(k) for k in ("colour", "Brand Name", "number_of_items", "department")] == ["Color", "Brand", "Count", "TargetGender"]
    facts = item_facts(title="Hanes Crew Tee, Gray", attributes={"colour": "Heather Grey", "Sleeve Style": "3/4 Sleeve", "size": ""})
    assert facts["Color"].value == "Heather Grey" and facts["Color"].source == "attributes.colour"
    assert facts["SleeveStyle"].value == "3/4 Sleeve" and "Size" not in facts  # an empty value states nothing


def _reviews(shared_data):
    with open(shared_data / "reviews" / "amazon_fine_food_200.csv", encoding="utf-8") as f:
        return {r["Id"]: r for r in csv.DictReader(f)}


def _review_ctx(r):
    return ItemContext(item_id=r["Id"], kind="feedback", title=r["Summary"], description=None, brand=None, category=None,
                       attributes={}, feedback_text=r["Text"], issue_type=None, image_ids=["photo"])


def test_condition_comes_only_from_what_real_reviews_say(shared_data):
    reviews = _reviews(shared_data)
    states = {i: (condition(_review_ctx(reviews[i])) or None) for i in ("2", "73", "174", "77", "141", "147", "183")}
    assert states["2"] is None  # "Not as Advertised": wrong size, nothing about condition
    assert {i: s.state for i, s in states.items() if s} == {"73": "intact", "174": "intact", "77": "damaged", "141": "damaged",
                                                            "147": "damaged", "183": "damaged"}
    assert "broke open in shipping" in states["141"].quote
    pair, = template_pairs(_review_ctx(reviews["183"]), "condition_packaging")
    assert "2 broken bottles" in pair.answer and pair.evidence == [{"field": "feedback_text", "text": states["183"].quote}]
    # over all 200 reviews: a condition sample exactly where the text describes a condition
    made = {i for i, r in reviews.items() if template_pairs(_review_ctx(r), "condition_packaging")}
    assert made == {i for i, r in reviews.items() if condition(_review_ctx(r))} and 5 <= len(made) <= 20
    # a catalog listing never says how a parcel arrived
    listing = ItemContext(item_id="c1", kind="catalog", title="Aurelia Shampoo 250 ml", description="Gentle, for daily use.", brand="Aurelia",
                          category="Hair Care", attributes={}, feedback_text=None, issue_type=None, image_ids=["p"])
    assert not applicable("condition_packaging", listing) and template_pairs(listing, "condition_packaging") == []
    assert not applicable("counting", listing)  # and nothing states a number of units


def test_refusals_say_why_for_that_item(shared_data):
    reviews = list(_reviews(shared_data).values())
    # a review's summary is the customer's headline, not the product's name: with no listing to name the product
    # (and no text read from the photo), no refusal is made ("the listing for Not as Advertised" was one)
    assert [template_pairs(_review_ctx(r), "refusal") for r in reviews] == [[]] * len(reviews)
    linked = [ItemContext(**{**_review_ctx(r).__dict__, "product": {"item_id": r["ProductId"], "title": f"Grocery item {r['ProductId']}"}})
              for r in reviews]
    answers = [template_pairs(c, "refusal")[0].answer for c in linked]
    # each names its product (the listing's title) and what is missing, never the customer's headline
    assert all(f"Grocery item {r['ProductId']}" in a and r["Summary"] not in a for r, a in zip(reviews, answers))
    questions = {template_pairs(c, "refusal")[0].question for c in linked}
    assert len(questions) >= 4  # several things a photo cannot tell, chosen per item


def test_the_llm_prompt_names_the_items_own_keys():
    ctx = ItemContext(item_id="c1", kind="catalog", title="Hanes Crew Tee", description=None, brand="Hanes", category="Shirts",
                      attributes={"sleeve_style": "3/4 Sleeve", "Material": "Cotton"}, feedback_text=None, issue_type=None, image_ids=["p"])
    prompt = PromptTemplate.load().render(ctx, "attribute_extraction")[-1]["content"]
    assert "SleeveStyle, Material" in prompt and "Pack of 12" in prompt


def test_an_llm_answer_never_calls_a_stated_value_unanswerable():
    ctx = ItemContext(item_id="c1", kind="catalog", title="Hanes Women's Crew Tee, Gray", description=None, brand="Hanes", category="Shirts",
                      attributes={"sleeve_style": "3/4 Sleeve"}, feedback_text=None, issue_type=None, image_ids=["p"])
    request, = build_requests([ctx], ["attribute_extraction"], PromptTemplate.load())
    answer = '{"Brand": "Unanswerable", "Color": "Gray", "sleeve style": "3/4 Sleeve", "Pattern": "Plain"}'
    text = f"<question>Attributes?</question><answer>{answer}</answer>"
    unknown = process_responses([request], [GenResponse(request.key, text)], backend="openai", model_id="m", prompt_version="v")
    assert unknown.samples == [] and unknown.rejects[0][2].reason == "unknown_keys"  # "Pattern": no field of the item has it
    text = text.replace(', "Pattern": "Plain"', "")
    sample, = process_responses([request], [GenResponse(request.key, text)], backend="openai", model_id="m", prompt_version="v").samples
    values = json.loads(sample.answer)
    assert values["Brand"] == "Hanes" and values["SleeveStyle"] == "3/4 Sleeve" and values["TargetGender"] == "Women"
    assert {e["key"]: e["field"] for e in sample.evidence} == {"ProductType": "category", "Name": "title", "Brand": "brand", "Color": "title",
                                                               "TargetGender": "title", "SleeveStyle": "attributes.sleeve_style"}


def test_report_flags_a_stock_answer_given_for_many_products():
    rows = [{"task": "condition_packaging", "samples": 100, "distinct_answers": 2, "yes_no": 0, "unanswerable": 0,
             "most_repeated_other": 90, "top_answers": [{"answer": "The packaging looks intact and sealed.", "count": 90, "products": 90, "yes_no": False}]},
            {"task": "matching", "samples": 100, "distinct_answers": 2, "yes_no": 100, "unanswerable": 0, "most_repeated_other": 0, "top_answers": []}]
    report = build_report(rows, {"condition_packaging": (50, 5)})
    assert not report.within_rule and [t.within_rule for t in report.tasks] == [False, True]  # yes/no verdicts may repeat
    assert report.tasks[0].coverage == 0.1 and report.tasks[1].coverage is None


def test_demo_samples_carry_their_facts_and_keep_the_repetition_rule(home, tmp_path):
    lake = ingest_and_generate(tmp_path / "demo", products=24, complaints=16)
    report = build_report(quality.task_rows(lake, "template"), quality.coverage_rows(lake, "template"))
    assert report.within_rule, [(t.task, t.top_answers) for t in report.tasks if not t.within_rule]
    by_task = {t.task: t for t in report.tasks}
    assert by_task["attribute_extraction"].coverage > 0.8 and by_task["attribute_extraction"].unanswerable_share == 0
    # every template answer records the fields it rests on
    assert lake.scalar("SELECT count(*) FROM samples WHERE backend = 'template' AND (evidence IS NULL OR evidence::VARCHAR = '[]')") == 0
    # condition samples come only from complaints (and only those that describe a condition)
    kinds = {k for (k,) in lake.fetchall("SELECT DISTINCT i.kind FROM samples s JOIN items i USING (item_id) WHERE s.task = 'condition_packaging'")}
    assert kinds == {"feedback"}
    # several phrasings per task, fixed per item
    questions = lake.fetchall("SELECT task, count(DISTINCT question) FROM samples WHERE task IN ('recognition', 'refusal', 'counting') GROUP BY 1")
    assert all(n >= 3 for _, n in questions), questions
    # the demo's catalog attributes (Color, Size, ...) are in the attribute answers of their items
    for attributes, answer in lake.fetchall("SELECT i.attributes, s.answer FROM samples s JOIN items i USING (item_id) "
                                            "WHERE s.task = 'attribute_extraction' AND i.kind = 'catalog'"):
        stated = json.loads(answer)
        for key, value in json.loads(attributes).items():
            if value != "Unanswerable":
                assert stated[canonical_key(key)] == value


def test_generate_report_command(home, tmp_path, cli):
    ingest_and_generate(tmp_path / "demo", products=8, complaints=8)
    out = cli("generate", "report", "--json", check=True)
    data = json.loads(out.stdout)
    assert data["within_rule"] is True and {t["task"] for t in data["tasks"]} >= {"recognition", "attribute_extraction", "refusal"}
    text = cli("generate", "report", check=True).stdout
    assert "distinct" in text and "coverage" in text and "recognition" in text
    assert TemplateBackend().model_id == "template-v3"
