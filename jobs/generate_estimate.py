"""What a generation job would ask and cost, before any request (``vitpro generate --estimate``, the Jobs
page's Estimate button): every request rendered as the job would send it, its prompt tokens counted with the
model's tokenizer (or characters / 4), the requests the response cache already answers left out, and the
completion lengths expected from this model's earlier answers (or per pair asked)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from curation.generation import PromptTemplate, build_requests, usage
from curation.item_contexts import contexts_for
from db.reads import generation_reads

from .generate import GenerateJob

CHUNK = 500  # items rendered at a time: a million items are never all in memory as prompts


class EstimateError(ValueError):
    pass


@dataclass(frozen=True)
class JobEstimate:
    items: int
    estimate: usage.Estimate
    from_history: bool  # completion lengths from this model's earlier answers


def estimate_job(spec: GenerateJob, lake, *, progress: Callable[[int, int], None] | None = None) -> JobEstimate:
    """``spec``: a resolved GenerateJob (its model id and prompt version set)."""
    if spec.backend == "template":
        raise EstimateError("the template backend asks no model: it costs nothing (--estimate is for openai and hf)")
    items = generation_reads.items_to_generate(lake, spec.tasks, spec.backend, spec.model_id, spec.prompt_version, spec.kinds, spec.limit)
    backend = spec.make_backend()
    template = PromptTemplate.load(spec.template_path, spec.examples_path)
    try:
        counter = usage.TokenCounter(getattr(backend, "tokenizer", None) or getattr(backend, "model_dir", None))
    except ValueError as exc:
        raise EstimateError(str(exc)) from None
    counts: list[int] = []
    fingerprints: list[str] = []
    for start in range(0, len(items), CHUNK):
        part = items[start:start + CHUNK]
        for request in build_requests(contexts_for(lake, part), spec.tasks, template, spec.n_pairs):
            messages = backend.body(request)["messages"] if hasattr(backend, "body") else request.messages  # as sent: structured note included
            counts.append(counter.prompt(messages))
            fingerprints.append(backend.fingerprint(request))
        if progress:
            progress(start + len(part), len(items))
    cached = set(generation_reads.cached_responses(lake, fingerprints)) if spec.cache else set()
    to_pay = [n for n, fp in zip(counts, fingerprints) if fp not in cached]
    history = usage.percentile_pair(generation_reads.completion_lengths(lake, spec.model_id, spec.tasks))
    max_tokens = getattr(backend, "max_tokens", None) or getattr(backend, "max_new_tokens", None) or 768
    result = usage.estimate(to_pay, cached=len(counts) - len(to_pay), n_pairs=spec.n_pairs, max_tokens=max_tokens,
                            counted_by=counter.counted_by, prices=spec.prices(), completion_per_request=history)
    return JobEstimate(len(items), result, history is not None)
