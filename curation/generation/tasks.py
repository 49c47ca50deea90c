"""The paper's tasks, which items each applies to, and the context an item gives the generator.

An item's context is built here once and used two ways: rendered into the LLM prompt's tagged blocks,
and read directly by the template backend (which needs no LLM).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

TASKS: dict[str, str] = {
    "recognition": "Ask what the product in the photo is (type, name, brand).",
    "damage_detection": "Ask whether the product or its packaging is damaged, and how.",
    "matching": "Ask whether the photo shows a given product title; answer yes or no.",
    "attribute_extraction": "Ask for the product's attributes as JSON.",
    "counting": "Ask how many items or units the photo shows.",
    "condition_packaging": "Ask about the condition of the product and its packaging.",
    "comparison": "Ask how the photos compare: photo [1] from the customer, photo [2] from the catalog.",
    "refusal": "Ask something the photo cannot answer, and decline politely with the reason.",
}
ATTRIBUTE_KEYS = ("ProductType", "Name", "Brand", "Color", "Count", "Size", "ExpiryDate", "TargetGender")
UNANSWERABLE = "Unanswerable"
DAMAGE_WORDS = ("leak", "torn", "tear", "dent", "crush", "broken", "break", "crack", "damag", "spill", "smash", "open")


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def product_title(self) -> str | None:
        return self.title if self.kind == "catalog" else (self.product or {}).get("title") or self.title

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


def applicable(task: str, ctx: ItemContext) -> bool:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if not ctx.image_ids:
        return False
    if task == "damage_detection":
        return ctx.kind == "feedback"
    if task == "matching":
        return bool(ctx.product_title)
    if task == "comparison":
        return bool(ctx.comparison_images())
    if task == "recognition":
        return bool(ctx.product_title)
    return True


def attribute_json(ctx: ItemContext) -> dict[str, str]:
    """The known attributes in the paper's keys, "Unanswerable" where the item does not say."""
    attrs = {k.lower().replace("_", "").replace(" ", ""): v for k, v in ctx.product_attributes().items()}

    def pick(*names: str) -> str | None:
        for name in names:
            value = attrs.get(name.lower())
            if value not in (None, "", "None"):
                return str(value)
        return None

    product_type = pick("ProductType", "product_type", "itemtype") or ctx.product_field("category")
    return {
        "ProductType": product_type or UNANSWERABLE,
        "Name": pick("Name", "modelname", "itemname") or ctx.product_title or UNANSWERABLE,
        "Brand": pick("Brand") or ctx.product_field("brand") or UNANSWERABLE,
        "Color": pick("Color", "colour") or UNANSWERABLE,
        "Count": pick("Count", "numberofitems", "unitcount") or UNANSWERABLE,
        "Size": pick("Size", "itemvolume", "itemweight") or UNANSWERABLE,
        "ExpiryDate": pick("ExpiryDate", "expirationdate") or UNANSWERABLE,
        "TargetGender": pick("TargetGender", "gender", "department") or UNANSWERABLE,
    }


def mentions_damage(ctx: ItemContext) -> bool:
    text = " ".join(t for t in (ctx.issue_type, ctx.feedback_text) if t).lower()
    return any(word in text for word in DAMAGE_WORDS)


def context_blocks(ctx: ItemContext) -> tuple[str, str]:
    """<context_1> (what the customer wrote) and <context_2> (product information) as text."""
    context_1 = ctx.feedback_text or "(none)"
    lines = []
    if ctx.product_title:
        lines.append(f"Title: {ctx.product_title}")
    for label, name in (("Brand", "brand"), ("Category", "category")):
        value = ctx.product_field(name)
        if value:
            lines.append(f"{label}: {value}")
    attrs = ctx.product_attributes()
    if attrs:
        lines.append("Attributes: " + ", ".join(f"{k}: {v}" for k, v in attrs.items()))
    description = ctx.product_field("description")
    if description:
        lines.append(f"Description: {description[:1500]}")
    if ctx.issue_type:
        lines.append(f"Reported issue: {ctx.issue_type}")
    if ctx.ocr_text:
        lines.append(f"Text read from the photo: {ctx.ocr_text[:500]}")
    return context_1, "\n".join(lines) or "(none)"


def sample_id(item_id: str, task: str, question: str, answer: str, backend: str, model_id: str, prompt_version: str) -> str:
    basis = json.dumps([item_id, task, normalise(question), normalise(answer), backend, model_id, prompt_version])
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def normalise(text: str) -> str:
    """For duplicate detection: case, spacing and punctuation do not make a new pair."""
    kept = "".join(ch.lower() if ch.isalnum() else " " for ch in text)
    return " ".join(kept.split())
