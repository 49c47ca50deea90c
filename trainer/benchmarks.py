"""Evaluation sets built from a snapshot's held-out products (the paper's MMPI-Bench, on our data).

* objective: balanced yes/no questions per task: attribute extraction (AE), damage detection (DD),
  product matching (PM). AE questions are made from the held-out products' attributes, each true value
  paired with another product's value for the same attribute, so the set is balanced by construction.
* generative: the held-out open questions; an LLM judge decides whether each answer matches.
* attributes: the held-out attribute-extraction samples, scored per attribute by exact match.

Products, not samples, are held out: a product seen in training (another photo, another question about
it) would make the test easy. Pure functions over store rows; no torch.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from .metrics import UNANSWERABLE, normalise_value, parse_attributes, yes_no_balance

OBJECTIVE_TASKS = {"attribute_extraction": "AE", "damage_detection": "DD", "matching": "PM"}
BENCHMARKS = ("objective", "generative", "attributes")
OBJECTIVE_INSTRUCTION = "Answer in a single word: yes or no."  # the paper's Obj-Bench prompt
AE_QUESTION_KEYS = ("Brand", "Color", "Size", "Count", "ProductType")


@dataclass
class EvalItem:
    item_id: str
    task: str  # AE | DD | PM for the objective benchmark, the sample's task otherwise
    question: str
    reference: str  # "yes"/"no", the ground-truth answer, or the attributes as JSON
    blob_paths: list[str]
    ocr_texts: list[str]
    category: str | None
    product: str
    examples: list[dict[str, Any]] = field(default_factory=list)  # in-context examples (rows)

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "task": self.task, "question": self.question, "reference": self.reference,
                "category": self.category, "product": self.product, "examples": [e["sample_id"] for e in self.examples]}


def is_held_out(product: str, holdout: float, seed: int = 0) -> bool:
    """A product's side of the split: a hash, so it never changes with the snapshot's size or order."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{product}".encode()).digest()[:8], "big")
    return h / 2**64 < holdout


def split_rows(rows: list[dict[str, Any]], holdout: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) by product."""
    train, test = [], []
    for r in rows:
        (test if is_held_out(str(r.get("product") or r["sample_id"]), holdout, seed) else train).append(r)
    return train, test


def _item(r: dict[str, Any], task: str, question: str, reference: str, suffix: str = "") -> EvalItem:
    return EvalItem(r["sample_id"] + suffix, task, question, reference, list(r["blob_paths"]), list(r["ocr_texts"]),
                    r.get("category"), str(r.get("product") or r["sample_id"]))


def objective_items(rows: list[dict[str, Any]], seed: int = 0, limit_per_task: int | None = None) -> list[EvalItem]:
    """Balanced yes/no items for AE, DD and PM from held-out rows."""
    items: list[EvalItem] = []
    for r in rows:
        task = OBJECTIVE_TASKS.get(r["task"])
        if task in ("DD", "PM") and r.get("answer_format") == "yes_no" and r.get("label") in ("yes", "no") and r["blob_paths"]:
            items.append(_item(r, task, r["question"], r["label"]))
    # AE: "Is the brand of this product X?" with X true, or another held-out product's value
    attrs = [(r, parse_attributes(r["answer"]) or {}) for r in rows if r["task"] == "attribute_extraction" and r["blob_paths"]]
    values: dict[str, set[str]] = {}
    for _, a in attrs:
        for key in AE_QUESTION_KEYS:
            v = a.get(key)
            if v and normalise_value(v) != UNANSWERABLE:
                values.setdefault(key, set()).add(str(v))
    rng = random.Random(seed)
    for r, a in attrs:
        for key in AE_QUESTION_KEYS:
            v = a.get(key)
            if not v or normalise_value(v) == UNANSWERABLE:
                continue
            others = sorted(x for x in values.get(key, ()) if normalise_value(x) != normalise_value(v))
            items.append(_item(r, "AE", f"Is the {key.lower()} of this product {v}?", "yes", f":{key}:yes"))
            if others:
                items.append(_item(r, "AE", f"Is the {key.lower()} of this product {rng.choice(others)}?", "no", f":{key}:no"))
    out: list[EvalItem] = []
    for task in ("AE", "DD", "PM"):
        balanced = yes_no_balance([i for i in items if i.task == task], key=lambda i: i.reference, seed=seed)
        out += balanced[:limit_per_task] if limit_per_task else balanced
    return out


def generative_items(rows: list[dict[str, Any]], limit: int | None = None) -> list[EvalItem]:
    """Held-out open questions (not yes/no, not JSON) with their reference answers."""
    items = [_item(r, r["task"], r["question"], r["answer"]) for r in rows
             if r.get("answer_format") in ("short", "detailed", "list") and r["blob_paths"] and (r["answer"] or "").strip()]
    return items[:limit] if limit else items


def attribute_items(rows: list[dict[str, Any]], limit: int | None = None) -> list[EvalItem]:
    items = [_item(r, "attribute_extraction", r["question"], r["answer"]) for r in rows
             if r["task"] == "attribute_extraction" and r["blob_paths"] and parse_attributes(r["answer"])]
    return items[:limit] if limit else items


def add_examples(items: list[EvalItem], pool: list[dict[str, Any]], k: int, *, picked: list[str] | None = None, seed: int = 0) -> None:
    """In-context examples for each item: ``picked`` sample ids (hand-picked, used in that order) or ``k``
    random training rows of the item's category (the paper found hand-picked ones better)."""
    if k <= 0 and not picked:
        return
    by_id = {r["sample_id"]: r for r in pool}
    if picked:
        missing = [p for p in picked if p not in by_id]
        if missing:
            raise ValueError(f"in-context example(s) not among the snapshot's training samples: {', '.join(missing[:5])}")
        chosen = [by_id[p] for p in picked]
        for item in items:
            item.examples = chosen
        return
    by_category: dict[Any, list[dict]] = {}
    for r in pool:
        if r["blob_paths"]:
            by_category.setdefault(r.get("category"), []).append(r)
    for item in items:
        rng = random.Random(f"{seed}:{item.item_id}")
        same = by_category.get(item.category) or [r for rows in by_category.values() for r in rows]
        item.examples = rng.sample(same, min(k, len(same)))


def prompt_question(item: EvalItem, benchmark: str) -> str:
    """The question as the model sees it: the paper's single-word instruction for yes/no items, and the
    in-context examples as numbered ``###`` sections whose images come first ([1], [2], ...)."""
    question = f"{OBJECTIVE_INSTRUCTION}\n{item.question}" if benchmark == "objective" else item.question
    if not item.examples:
        return question
    parts = []
    for n, ex in enumerate(item.examples, start=1):
        answer = ex["label"].capitalize() + "." if benchmark == "objective" and ex.get("label") else ex["answer"]
        parts.append(f"### Example {n} (image [{n}])\nQuestion: {ex['question']}\nAnswer: {answer}")
    parts.append(f"### Now image [{len(item.examples) + 1}]\n{question}")
    return "\n".join(parts)


def item_images(item: EvalItem) -> list[str]:
    """Blob paths in prompt order: one image per in-context example, then the item's own."""
    return [ex["blob_paths"][0] for ex in item.examples if ex["blob_paths"]] + item.blob_paths
