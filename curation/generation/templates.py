"""Template samples: question/answer pairs made from an item's own fields, with no LLM.

These rules keep them fit for training:

* An answer says only what a field of the item states, and records that field as ``evidence``
  (``[{"field": "title", "text": "Pack of 12"}]``); where no field supports an answer, no pair is made (a
  listing says nothing about its parcel's condition, so catalog items get no condition sample).
* Answers carry the item's own words (its title, the customer's sentence, the pack size it states), so two
  items rarely share an answer; only yes/no verdicts repeat by design.
* Several phrasings per task, chosen by a hash of the item and task: the same item gets the same pair on
  every run, different items get different wordings.
* No slot is left empty: without a product title an answer says "this product", or no pair is made where
  the title was all it had of the item (recognition, matching; a refusal with neither a title nor text read
  from the photo would be one stock sentence for every such item).
* No pair rests only on a field every item shares: an attribute answer whose one value is the product type
  (the category, which a whole catalog or a whole review set may have in common) is not made. The
  repetition rule is also held when samples are written (``repeats.py``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from config.registry import Registry

from .tasks import ItemContext, attribute_json, condition

# task -> the function writing its question/answer pairs from an item's fields (each below, by decorator)
TEMPLATES: Registry[Callable[[ItemContext], list["TemplatePair"]]] = Registry("task template")


@dataclass(frozen=True)
class TemplatePair:
    question: str
    answer: str
    evidence: list[dict[str, str]] = field(default_factory=list)


def choose(item: ItemContext, task: str, slot: str, options: tuple[str, ...] | list[str]) -> str:
    """One of ``options``, fixed for this item, task and slot."""
    digest = hashlib.sha256(f"{item.item_id}\x1f{task}\x1f{slot}".encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def _ev(field_name: str, text: str | None) -> dict[str, str]:
    return {"field": field_name, "text": (text or "")[:300]}


def _quote(sentence: str, limit: int = 160) -> str:
    sentence = " ".join(sentence.split()).strip(" \"'“”")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rsplit(" ", 1)[0] + "…"


def _title(item: ItemContext) -> str | None:
    """The product's title on one line, or None where there is none (never an empty slot)."""
    return " ".join((item.product_title or "").split()) or None


def _short_title(item: ItemContext, words: int = 8) -> str:
    """The title's first words, or "this product" where there is no title."""
    parts = (_title(item) or "").split()
    if not parts:
        return "this product"
    return " ".join(parts) if len(parts) <= words else " ".join(parts[:words]) + "…"


def _product_type(item: ItemContext) -> str:
    fact = item.facts.get("ProductType")
    return fact.value.replace("_", " ").lower() if fact else "product"


def _title_source(item: ItemContext) -> str:
    return "title" if item.kind == "catalog" or not item.product else "product.title"


@TEMPLATES.named("recognition")
def recognition(item: ItemContext) -> list[TemplatePair]:
    title = _title(item)
    if title is None:  # nothing names the product
        return []
    brand = item.facts.get("Brand")
    evidence = [_ev(_title_source(item), title)]
    question = choose(item, "recognition", "q", (
        "What product is shown in the photo?", "What is this product?", "Which product does the photo show?",
        "Name the product in the photo.", "What item is pictured here?",
    ))
    if brand and brand.value.lower() not in (title or "").lower():
        answer = choose(item, "recognition", "ab", ("{t}, by {b}.", "It is {t} from {b}.", "The photo shows {t} ({b})."))
        answer = answer.format(t=title, b=brand.value)
        evidence.append(_ev(brand.source, brand.quote))
    else:
        answer = choose(item, "recognition", "a", ("{t}.", "This is {t}.", "The photo shows {t}.", "It is {t}."))
        answer = answer.format(t=title)
    yes_no = choose(item, "recognition", "yn", ("Is this {t}? Answer yes or no.", "Does this photo show {t}? Answer yes or no."))
    return [TemplatePair(question, answer, evidence), TemplatePair(yes_no.format(t=title), "Yes.", evidence)]


# Keys whose value many items share by nature (the category): an attribute answer needs some other key too.
_SHARED_KEYS = frozenset({"ProductType"})


@TEMPLATES.named("attribute_extraction")
def attribute_extraction(item: ItemContext) -> list[TemplatePair]:
    attrs, evidence = attribute_json(item)
    if not set(attrs) - _SHARED_KEYS:
        # {"ProductType": "Grocery"} alone is the same answer for every item of the category: it teaches
        # nothing about the photo
        return []
    question = choose(item, "attribute_extraction", "q", (
        "Extract the product's attributes from the photo as JSON.", "List this product's attributes as a JSON object.",
        "Give the attributes of the product shown, in JSON.", "What are the product's attributes? Answer in JSON.",
    ))
    return [TemplatePair(question, json.dumps(attrs, ensure_ascii=False), evidence)]


@TEMPLATES.named("matching")
def matching(item: ItemContext) -> list[TemplatePair]:
    title = _title(item)
    if title is None:
        return []
    negative = " ".join((item.negative_title or "").split())
    form = choose(item, "matching", "q", (
        "Does the photo show {t}? Answer yes or no.", "Is the product in the photo {t}? Answer yes or no.",
        "Does this picture match the listing \"{t}\"? Answer yes or no.",
    ))
    out = [TemplatePair(form.format(t=title), "Yes.", [_ev(_title_source(item), title)])]
    if negative:
        out.append(TemplatePair(form.format(t=negative), "No.", [_ev(_title_source(item), title), _ev("negative.title", negative)]))
    return out


@TEMPLATES.named("damage_detection")
def damage_detection(item: ItemContext) -> list[TemplatePair]:
    found = condition(item)
    question = choose(item, "damage_detection", "q", (
        "Is the product or its packaging damaged? Answer yes or no.", "Does the photo show any damage? Answer yes or no.",
        "Is anything broken, torn or leaking here? Answer yes or no.",
    ))
    if found is None:
        # A complaint about something else ("wrong flavour") says nothing of damage either way.
        return []
    evidence = [_ev(found.field, found.quote)]
    if found.state == "intact":
        if found.damaged_since:
            # it arrived whole but the customer broke it or it broke in use: the photo may show that damage
            return []
        return [TemplatePair(question, "No.", evidence)]
    how = choose(item, "damage_detection", "how", (
        "What is wrong with the product in the photo?", "Describe the damage shown.", "What damage does the customer's photo show?",
    ))
    answer = choose(item, "damage_detection", "a", (
        "The customer reports: \"{q}\"", "According to the customer, \"{q}\"", "It is damaged; the customer writes: \"{q}\"",
    ))
    return [TemplatePair(question, "Yes.", evidence), TemplatePair(how, answer.format(q=_quote(found.quote)), evidence)]


@TEMPLATES.named("counting")
def counting(item: ItemContext) -> list[TemplatePair]:
    count = item.facts.get("Count")
    if count is None:
        return []
    question = choose(item, "counting", "q", (
        "How many units does this pack contain?", "How many items come in this product?", "What is the pack size of this product?",
        "How many pieces are included?",
    ))
    if "attributes." in count.source:  # a count column, not words of the title
        answer = choose(item, "counting", "attr", (
            "{n}, as the listing of {t} gives.", "The listing of {t} gives a count of {n}.", "{n} (the count stated for {t}).",
        ))
    elif count.source == "ocr":  # the words printed on the pack, not the listing's
        answer = choose(item, "counting", "ocr", (
            "{n}: the pack of {t} reads \"{q}\".", "{n} (\"{q}\" is printed on {t}).", "It contains {n}; the text on {t} says \"{q}\".",
        ))
    else:
        answer = choose(item, "counting", "a", (
            "{n}: the listing for {t} says \"{q}\".", "{n} ({q}, as stated for {t}).", "It contains {n}; {t} is sold as \"{q}\".",
        ))
    return [TemplatePair(question, answer.format(n=count.value, q=count.quote, t=_short_title(item)), [_ev(count.source, count.quote)])]


@TEMPLATES.named("condition_packaging")
def condition_packaging(item: ItemContext) -> list[TemplatePair]:
    found = condition(item)
    if found is None:
        return []
    question = choose(item, "condition_packaging", "q", (
        "What condition is the packaging in?", "In what condition did the product arrive?", "Describe the state of the product and its packaging.",
    ))
    if found.state == "damaged":
        answer = choose(item, "condition_packaging", "d", ("Damaged: \"{q}\", the customer says.", "Not intact. The customer writes: \"{q}\""))
    else:
        answer = choose(item, "condition_packaging", "i", ("Intact, by the customer's account: \"{q}\"", "It arrived in good order: \"{q}\""))
    return [TemplatePair(question, answer.format(q=_quote(found.quote)), [_ev(found.field, found.quote)])]


@TEMPLATES.named("comparison")
def comparison(item: ItemContext) -> list[TemplatePair]:
    if not item.product:  # no catalog item to compare the customer's photo with
        return []
    title = _title(item)
    evidence = [_ev("product_ref", (item.product or {}).get("item_id")), *([_ev("product.title", title)] if title else [])]
    same = choose(item, "comparison", "q", (
        "Photo [1] is the customer's, photo [2] is the catalog photo of {t}. Do they show the same product? Answer yes or no.",
        "Do photo [1] (from the customer) and photo [2] (the catalog's {t}) show the same product? Answer yes or no.",
    ))
    out = [TemplatePair(same.format(t=title or "this product"), "Yes.", evidence)]
    found = condition(item)
    if found is not None and found.state == "damaged":
        ask = choose(item, "comparison", "diff", ("What differs between photo [1] and photo [2]?", "How does the delivered item in photo [1] differ from photo [2]?"))
        answer = choose(item, "comparison", "a", (
            "Photo [1] shows the delivered item, which the customer describes as: \"{q}\"; photo [2] shows it as listed.",
            "In photo [1] the customer's {p} is damaged (\"{q}\"); the catalog photo [2] shows it new.",
        ))
        out.append(TemplatePair(ask, answer.format(p=_product_type(item), q=_quote(found.quote, 120)), [*evidence, _ev(found.field, found.quote)]))
    return out


# What a refusal may be asked about: (name, question, fact keys that would answer it, why it cannot be told)
_UNKNOWABLE = (
    ("expiry", "What is the expiry date printed on the product?", ("ExpiryDate",), "expiry date"),
    ("price", "How much does this product cost?", ("Price", "ListPrice"), "price"),
    ("origin", "In which country was this product made?", ("CountryOfOrigin", "Origin"), "country of origin"),
    ("serial", "What is the serial number of this unit?", ("SerialNumber",), "serial number"),
    ("made", "When was this unit manufactured?", ("ManufactureDate", "ProductionDate"), "manufacturing date"),
    ("buyer", "Who ordered this product?", (), "buyer details"),
)


@TEMPLATES.named("refusal")
def refusal(item: ItemContext) -> list[TemplatePair]:
    open_questions = [u for u in _UNKNOWABLE if not any(k in item.facts for k in u[2])]
    title, read = _title(item), _quote(item.ocr_text or "", 40)
    if not open_questions or not (title or read):
        # with neither a title nor text read from the photo, the answer would be the same for every such item
        return []
    _, question, _, missing = choose(item, "refusal", "topic", open_questions)
    seen = f"the text read from the photo (\"{read}\")" if read else "the photo"
    if title or item.kind == "catalog" or item.product:  # there is a listing to name
        answer = choose(item, "refusal", "a", (
            "I can't tell: {seen} and the listing for {t} give no {m}.",
            "That cannot be answered from {seen}: the listing for {t} states no {m}.",
            "I don't know; {seen} and the listing of {t} show no {m}.",
        ))
    else:  # a customer's photo of a product with no listing: only what the photo's text says
        answer = choose(item, "refusal", "photo", (
            "I can't tell: {seen} gives no {m}.", "That cannot be answered from {seen}: it states no {m}.",
            "I don't know; {seen} shows no {m}.",
        ))
    evidence = [*([_ev(_title_source(item), title)] if title else []), *([_ev("ocr", item.ocr_text)] if read else [])]
    return [TemplatePair(question, answer.format(seen=seen, t=_short_title(item), m=missing), evidence)]


def template_pairs(item: ItemContext, task: str) -> list[TemplatePair]:
    try:
        make = TEMPLATES[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}") from None
    return make(item)

