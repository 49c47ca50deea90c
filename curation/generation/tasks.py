"""The paper's tasks, which items each applies to, and the context an item gives the generator.

An item's context is built here once and used two ways: rendered into the LLM prompt's tagged blocks,
and read directly by the template backend (which needs no LLM).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from config.registry import Registry

from .condition import StatedCondition, arrival_condition
from .facts import PAPER_KEYS, Fact, item_facts

# task name -> what the generator is asked to write for it (the prompt's task description)
TASKS: Registry[str] = Registry("task")
TASKS.add("Ask what the product in the photo is (type, name, brand).", "recognition")
TASKS.add("Ask whether the product or its packaging is damaged, and how.", "damage_detection")
TASKS.add("Ask whether the photo shows a given product title; answer yes or no.", "matching")
TASKS.add("Ask for the product's attributes as JSON.", "attribute_extraction")
TASKS.add("Ask how many items or units the photo shows.", "counting")
TASKS.add("Ask about the condition of the product and its packaging.", "condition_packaging")
TASKS.add("Ask how the photos compare: photo [1] from the customer, photo [2] from the catalog.", "comparison")
TASKS.add("Ask something the photo cannot answer, and decline politely with the reason.", "refusal")

ATTRIBUTE_KEYS = PAPER_KEYS  # the paper's keys; an item's own attribute keys come on top (facts.py)
@dataclass
class ItemContext:
    """What the generator knows about one item (all text already redacted at ingest)."""

    item_id: str
    kind: str  # catalog | feedback
    title: str | None
    description: str | None
    brand: str | None
    category: str | None
    attributes: dict[str, str]
    feedback_text: str | None
    issue_type: str | None
    image_ids: list[str]
    ocr_text: str | None = None
    product: dict[str, Any] | None = None  # the catalog item a complaint refers to (product_ref)
    negative_title: str | None = None  # another product's title, same category if there is one
    negative_item_id: str | None = None
    known_brands: dict[str, str] = field(default_factory=dict, repr=False)  # lower-cased brand -> spelling
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def stated_condition(self) -> StatedCondition | None:
        return read_condition(self)

    @cached_property
    def facts(self) -> dict[str, Fact]:
        """What the product's fields state (the catalog item's, for a complaint), each with its source."""
        facts = item_facts(
            title=self.product_title, brand=self.product_field("brand"), category=self.product_field("category"),
            attributes=self.product_attributes(), description=self.product_field("description"), ocr_text=self.ocr_text,
            known_brands=self.known_brands,
        )
        if self.kind == "catalog" or not self.product:
            return facts
        # a complaint's product facts come from the catalog item it refers to: say so in the evidence
        own = set(self.attributes)
        return {k: f if f.source == "ocr" or f.source.removeprefix("attributes.") in own else Fact(f.key, f.value, "product." + f.source, f.quote)
                for k, f in facts.items()}

    @property
    def product_title(self) -> str | None:
        """The product's name: a listing's own title; for feedback, the title of the listing it refers to, never
        its own. A review's or a ticket's title is the customer's headline ("Not as Advertised", "This is Good
        Quality Dog Food."): named as the product, it made answers no field backs. It stays in the customer's
        block of the prompt (context_blocks)."""
        return self.title if self.kind == "catalog" else (self.product or {}).get("title")

    def product_field(self, name: str):
        if self.kind == "catalog" or not self.product:
            return getattr(self, name)
        return self.product.get(name) or getattr(self, name)

    def product_attributes(self) -> dict[str, str]:
        if self.kind == "catalog" or not self.product:
            return self.attributes
        return {**(self.product.get("attributes") or {}), **self.attributes}

    def comparison_images(self) -> list[str]:
        """Photo [1] from the customer, photo [2] from the catalog item it refers to."""
        catalog_images = (self.product or {}).get("image_ids") or []
        return self.image_ids[:1] + catalog_images[:1] if self.image_ids and catalog_images else []


def applicable(task: str, item: ItemContext) -> bool:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if not item.image_ids:
        return False
    if task == "damage_detection":
        return item.kind == "feedback"
    if task == "matching":
        return bool(item.product_title)
    if task == "comparison":
        return bool(item.comparison_images())
    if task == "recognition":
        return bool(item.product_title)
    if task == "condition_packaging":  # only what a customer wrote about it; a listing says nothing
        return condition(item) is not None
    if task == "counting":  # a pack size the listing states; nothing else supports a number
        return "Count" in item.facts
    return True


def attribute_json(item: ItemContext) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The attributes the item's fields state (its own keys and the paper's), and the evidence for each."""
    facts = item.facts
    return {k: f.value for k, f in facts.items()}, [{"field": f.source, "text": f.quote, "key": k} for k, f in facts.items()]


def condition(item: ItemContext) -> StatedCondition | None:
    """:func:`read_condition`, read once per item (every condition-bearing task and ``applicable`` ask)."""
    return item.stated_condition


def read_condition(item: ItemContext) -> StatedCondition | None:
    """What the customer's own words say about the condition the product or parcel arrived in, if anything
    (``condition.py`` says which sentences count). Catalog items have no such text: nothing is said about
    their condition, so they get no condition sample."""
    if item.kind != "feedback":
        return None
    return arrival_condition([("feedback_text", item.feedback_text), ("issue_type", item.issue_type)])


def context_blocks(item: ItemContext) -> tuple[str, str]:
    """<context_1> (what the customer wrote) and <context_2> (product information) as text."""
    context_1 = item.feedback_text or ""
    headline = " ".join((item.title or "").split()) if item.kind == "feedback" else ""
    if headline and headline.lower() not in " ".join(context_1.split()).lower():  # mapped apart from the text: still the customer's words
        context_1 = f"Headline: {headline}\n{context_1}".strip()
    context_1 = context_1 or "(none)"
    lines = []
    if item.product_title:
        lines.append(f"Title: {item.product_title}")
    for label, name in (("Brand", "brand"), ("Category", "category")):
        value = item.product_field(name)
        if value:
            lines.append(f"{label}: {value}")
    attrs = item.product_attributes()
    if attrs:
        lines.append("Attributes: " + ", ".join(f"{k}: {v}" for k, v in attrs.items()))
    description = item.product_field("description")
    if description:
        lines.append(f"Description: {description[:1500]}")
    if item.issue_type:
        lines.append(f"Reported issue: {item.issue_type}")
    if item.ocr_text:
        lines.append(f"Text read from the photo: {item.ocr_text[:500]}")
    return context_1, "\n".join(lines) or "(none)"


def sample_id(item_id: str, task: str, question: str, answer: str, backend: str, model_id: str, prompt_version: str) -> str:
    basis = json.dumps([item_id, task, normalise(question), normalise(answer), backend, model_id, prompt_version])
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def normalise(text: str) -> str:
    """For duplicate detection: case, spacing and punctuation do not make a new pair."""
    kept = "".join(ch.lower() if ch.isalnum() else " " for ch in text)
    return " ".join(kept.split())
