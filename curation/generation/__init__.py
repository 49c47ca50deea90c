"""Instruction generation: tasks and item contexts, the prompt, backends, parsing and validation."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from .backends import GenRequest, GenResponse, HFLocalBackend, OpenAIChatBackend, TemplateBackend
from .facts import complete_attributes
from .parse import Pair, Reject, extract_pairs, validate
from .prompt import PromptTemplate, escape_data
from .tasks import ATTRIBUTE_KEYS, TASKS, ItemContext, applicable, normalise, sample_id

__all__ = [
    "ATTRIBUTE_KEYS", "TASKS", "GenRequest", "GenResponse", "GeneratedSample", "GenerationOutcome", "HFLocalBackend",
    "ItemContext", "OpenAIChatBackend", "Pair", "PromptTemplate", "Reject", "TemplateBackend", "applicable",
    "build_requests", "escape_data", "extract_pairs", "normalise", "process_responses", "sample_id", "validate",
]


@dataclass
class GeneratedSample:
    sample_id: str
    item_id: str
    task: str
    question: str
    answer: str
    answer_format: str
    image_ids: list[str]
    label: str | None
    lineage: dict[str, Any]
    evidence: list[dict[str, str]] | None = None  # the item's fields that support the answer (template backend)


@dataclass
class GenerationOutcome:
    samples: list[GeneratedSample] = field(default_factory=list)
    rejects: list[tuple[str, str, Reject, str | None]] = field(default_factory=list)  # (item, task, reject, raw)
    done: list[tuple[str, str, int, int]] = field(default_factory=list)  # (item, task, n samples, n rejects)


def build_requests(contexts: Iterable[ItemContext], tasks: Iterable[str], template: PromptTemplate, n_pairs: int = 3) -> list[GenRequest]:
    tasks = list(tasks)
    return [
        GenRequest((item.item_id, task), template.render(item, task, n_pairs), item, task)
        for item in contexts
        for task in tasks
        if applicable(task, item)
    ]


def process_responses(
    requests: list[GenRequest],
    responses: list[GenResponse],
    *,
    backend: str,
    model_id: str,
    prompt_version: str,
    seen: dict[str, set[str]] | None = None,
) -> GenerationOutcome:
    """Parse and validate every response; samples keep their lineage, rejects their reason and raw text."""
    seen = seen if seen is not None else {}
    out = GenerationOutcome()
    for request, response in zip(requests, responses):
        item, task = request.context, request.task
        if response.evidence == [] and not response.text:
            # the template backend found nothing in the item's fields to support a pair: done, with nothing
            out.done.append((item.item_id, task, 0, 0))
            continue
        if response.text is None:
            reason = "backend_refused" if response.permanent else "backend_error"
            out.rejects.append((item.item_id, task, Reject(reason, response.error or "no response"), None))
            out.done.append((item.item_id, task, 0, 1))
            continue
        raw_pairs, rejects = extract_pairs(response.text)
        if response.finish_reason == "length" and not any(r.reason == "truncated" for r in rejects) and not raw_pairs:
            rejects.append(Reject("truncated", "the model stopped at its token limit"))
        good, more = validate(task, raw_pairs, seen.setdefault(item.item_id, set()), list(item.product_attributes()))
        rejects += more
        images = item.comparison_images() if task == "comparison" else list(item.image_ids)
        lineage = {"item_id": item.item_id, "kind": item.kind, "product_item_id": (item.product or {}).get("item_id")}
        if task == "matching" and item.negative_item_id:
            lineage["negative_item_id"] = item.negative_item_id
        for pair in good:
            evidence = response.evidence[pair.index] if response.evidence and pair.index < len(response.evidence) else None
            if task == "attribute_extraction" and response.evidence is None:
                # an LLM's "Unanswerable" for a value the item's own fields state would teach the model to give up
                values, evidence = complete_attributes(json.loads(pair.answer), item.facts)
                pair.answer = json.dumps(values, ensure_ascii=False)
            out.samples.append(
                GeneratedSample(
                    sample_id(item.item_id, task, pair.question, pair.answer, backend, model_id, prompt_version),
                    item.item_id, task, pair.question, pair.answer, pair.answer_format, images, pair.label, lineage, evidence,
                )
            )
        for reject in rejects:
            out.rejects.append((item.item_id, task, reject, response.text))
        out.done.append((item.item_id, task, len(good), len(rejects)))
    return out
