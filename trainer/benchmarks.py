"""Evaluation sets built from a snapshot's held-out products (the paper's MMPI-Bench, on our data).

* objective: balanced yes/no questions per task: attribute extraction (AE), damage detection (DD),
  product matching (PM). AE questions ask about the held-out products' own attributes, key and value
  from the data: the item's ``attributes`` column, its brand and the facts its title states
  (``curation.generation.facts``), never a generated answer. Each true value ("Is the sleeve style of
  this product 3/4 Sleeve?", yes) is paired with the same key's value of another product of the same
  category (any other product where the category has none; no pair where no other value exists), so
  the set is balanced by construction. ProductType and Name are not asked (the category, the whole title).
* generative: the held-out open questions; an LLM judge decides whether each answer matches.
* attributes: one attribute-extraction question per held-out item, its reference the item's own facts
  as JSON (every key the data states a value for), scored per attribute by exact match.

Rows are ``db.app.training.eval_rows``: a snapshot's samples with the item's (for a complaint, the catalog
product's) ``item_id``, ``title``, ``brand`` and ``attributes``. Products, not samples, are held out: a
product seen in training (another photo, another question about it) would make the test easy. Pure
functions over store rows, seeded where they choose; no torch.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from config.registry import Registry
from curation.generation.facts import Fact, item_facts, known_brand_index
from curation.verdicts import NO, YES

from .metrics import normalise_value, parse_attributes, yes_no_balance

OBJECTIVE_TASKS = {"attribute_extraction": "AE", "damage_detection": "DD", "matching": "PM"}
# benchmark name -> how its items are made from held-out rows (entries added below their functions)
BENCHMARKS: Registry[Callable[..., list["EvalItem"]]] = Registry("benchmark")
# how the objective benchmark is answered: the paper's generate-and-parse, or the probabilities of "yes" and
# "no" as the first answer token (one forward pass)
OBJECTIVE_MODES = ("generate", "logprob")
EVAL_BATCH_SIZE = 8  # items generated at once by default (greedy: the same answers as one at a time)
OBJECTIVE_INSTRUCTION = "Answer in a single word: yes or no."  # the paper's Obj-Bench prompt
AE_SKIPPED_KEYS = ("ProductType", "Name")  # the category and the whole title: trivial or too long for yes/no
AE_MAX_VALUE_CHARS = 80  # longer values (a bullet point in an attribute column) make no yes/no question


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


def split_key(row: dict[str, Any], keys: dict[str, str] | None = None) -> str:
    """What a row's side of the split is decided by: its key in ``keys`` (the smallest product of those its
    near-duplicate photos tie it to: curation.dup_splits), else its product, else its own id."""
    found = keys.get(row["sample_id"]) if keys else None
    return found if found is not None else str(row.get("product") or row["sample_id"])


def split_rows(rows: list[dict[str, Any]], holdout: float, seed: int = 0, keys: dict[str, str] | None = None) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) by product, or by the keys of products tied by near-duplicate photos."""
    train, test = [], []
    for r in rows:
        (test if is_held_out(split_key(r, keys), holdout, seed) else train).append(r)
    return train, test


def _item(r: dict[str, Any], task: str, question: str, reference: str, suffix: str = "") -> EvalItem:
    return EvalItem(r["sample_id"] + suffix, task, question, reference, list(r["blob_paths"]), list(r["ocr_texts"]),
                    r.get("category"), str(r.get("product") or r["sample_id"]))


def brand_index(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The brands the rows' brand column names, to find them in titles of products that have none."""
    return known_brand_index(r.get("brand") for r in rows)


def product_facts(row: dict[str, Any], known_brands: dict[str, str] | None = None) -> dict[str, Fact]:
    """What the row's product states about itself: its attribute column, brand, category and title."""
    attributes = row.get("attributes")
    if isinstance(attributes, str):
        attributes = parse_attributes(attributes)
    return item_facts(title=row.get("title"), brand=row.get("brand"), category=row.get("category"),
                      attributes=attributes or {}, known_brands=known_brands)


def key_words(key: str) -> str:
    """A CamelCase key as lower-case words for a question: ``SleeveStyle`` -> ``sleeve style``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", key).lower()


def ae_question(key: str, value: str) -> str:
    return f"Is the {key_words(key)} of this product {value.rstrip(' .,;:')}?"


def _per_item(rows: list[dict[str, Any]], prefer: str) -> list[dict[str, Any]]:
    """One row with images per item (the first of task ``prefer`` if it has one), in the rows' order."""
    chosen: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not r["blob_paths"]:
            continue
        key = str(r.get("item_id") or r.get("product") or r["sample_id"])
        if key not in chosen or (r["task"] == prefer and chosen[key]["task"] != prefer):
            chosen[key] = r
    return list(chosen.values())


def _ae_items(rows: list[dict[str, Any]], seed: int, known_brands: dict[str, str] | None) -> list[EvalItem]:
    """Pairs of yes/no questions about each held-out item's own attribute values."""
    subjects = [(r, {k: f.value for k, f in product_facts(r, known_brands).items()
                     if k not in AE_SKIPPED_KEYS and len(f.value) <= AE_MAX_VALUE_CHARS})
                for r in _per_item(rows, "attribute_extraction")]
    # key -> category -> product -> value: the pool a "no" is drawn from
    pool: dict[str, dict[Any, dict[str, str]]] = {}
    for r, facts in subjects:
        for key, value in facts.items():
            pool.setdefault(key, {}).setdefault(r.get("category"), {}).setdefault(str(r.get("product") or r["sample_id"]), value)
    items: list[EvalItem] = []
    for r, facts in subjects:
        product = str(r.get("product") or r["sample_id"])
        for key, value in facts.items():
            truth = normalise_value(value)

            def others(by_product: dict[str, str]) -> list[str]:
                return [v for p, v in by_product.items() if p != product and normalise_value(v) != truth]

            by_category = pool[key]
            candidates = others(by_category.get(r.get("category"), {}))
            if not candidates:  # the category has no other value of this key: any other product's
                candidates = [v for c, by_product in by_category.items() for v in others(by_product)]
            # one entry per distinct value, so a common value is not drawn more often than a rare one
            distinct: dict[str, str] = {}
            for v in sorted(candidates):
                distinct.setdefault(normalise_value(v), v)
            if not distinct:
                continue
            wrong = random.Random(f"{seed}:{r['sample_id']}:{key}").choice(sorted(distinct.values()))
            items.append(_item(r, "AE", ae_question(key, value), YES, f":{key}:yes"))
            items.append(_item(r, "AE", ae_question(key, wrong), NO, f":{key}:no"))
    return items


def limit_balanced(items: list[EvalItem], limit: int | None) -> list[EvalItem]:
    """``limit // 2`` "yes" and as many "no" items (one of each at least), in their order: a limit keeps
    the set balanced."""
    if not limit:
        return items
    half = max(1, limit // 2)
    yes = [k for k, i in enumerate(items) if i.reference == YES][:half]
    no = [k for k, i in enumerate(items) if i.reference == NO][:half]
    n = min(len(yes), len(no))
    return [items[k] for k in sorted(yes[:n] + no[:n])]


def objective_items(rows: list[dict[str, Any]], seed: int = 0, limit_per_task: int | None = None, *,
                    known_brands: dict[str, str] | None = None) -> list[EvalItem]:
    """Balanced yes/no items for AE, DD and PM from held-out rows. ``known_brands`` (:func:`brand_index`
    of the whole snapshot) finds a brand in a title; by default the held-out rows' own brands."""
    items: list[EvalItem] = []
    for r in rows:
        task = OBJECTIVE_TASKS.get(r["task"])
        if task in ("DD", "PM") and r.get("answer_format") == "yes_no" and r.get("label") in ("yes", "no") and r["blob_paths"]:
            items.append(_item(r, task, r["question"], r["label"]))
    items += _ae_items(rows, seed, brand_index(rows) if known_brands is None else known_brands)
    out: list[EvalItem] = []
    for task in ("AE", "DD", "PM"):
        balanced = yes_no_balance([i for i in items if i.task == task], key=lambda i: i.reference, seed=seed)
        out += limit_balanced(balanced, limit_per_task)
    return out


def generative_items(rows: list[dict[str, Any]], limit: int | None = None) -> list[EvalItem]:
    """Held-out open questions (not yes/no, not JSON) with their reference answers."""
    items = [_item(r, r["task"], r["question"], r["answer"]) for r in rows
             if r.get("answer_format") in ("short", "detailed", "list") and r["blob_paths"] and (r["answer"] or "").strip()]
    return items[:limit] if limit else items


def attribute_items(rows: list[dict[str, Any]], limit: int | None = None, *,
                    known_brands: dict[str, str] | None = None) -> list[EvalItem]:
    """One item per held-out item with an attribute-extraction sample and images: the sample's question,
    the reference every fact the item's own fields state (not the generated answer), as JSON."""
    known = brand_index(rows) if known_brands is None else known_brands
    items = []
    for r in _per_item([r for r in rows if r["task"] == "attribute_extraction"], "attribute_extraction"):
        facts = product_facts(r, known)
        if facts:
            items.append(_item(r, "attribute_extraction", r["question"], json.dumps({k: f.value for k, f in facts.items()}, ensure_ascii=False)))
    return items[:limit] if limit else items


# Each entry takes (held-out rows, seed, limit, known brands). They call the functions above by their module
# name when run, not as bound here, so that a test replacing one (monkeypatch) replaces it for the registry too.
BENCHMARKS.add(lambda rows, seed, limit, known_brands: objective_items(rows, seed, limit, known_brands=known_brands), "objective")
BENCHMARKS.add(lambda rows, seed, limit, known_brands: generative_items(rows, limit), "generative")
BENCHMARKS.add(lambda rows, seed, limit, known_brands: attribute_items(rows, limit, known_brands=known_brands), "attributes")


def benchmark_items(benchmark: str, rows: list[dict[str, Any]], *, seed: int = 0, limit: int | None = None,
                    known_brands: dict[str, str] | None = None) -> list[EvalItem]:
    """The items of ``benchmark`` from held-out rows (``limit``: per task for the objective benchmark)."""
    return BENCHMARKS[benchmark](rows, seed, limit, known_brands)


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
