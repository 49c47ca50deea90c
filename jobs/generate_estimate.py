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
    to_pay: list[int] = []  # prompt tokens of each request the cache does not answer (held: ints, not prompts)
    cached = 0
    for start in range(0, len(items), CHUNK):
        part = items[start:start + CHUNK]
        counts: list[tuple[str, int]] = []
        for request in build_requests(contexts_for(lake, part), spec.tasks, template, spec.n_pairs):
            messages = backend.body(request)["messages"] if hasattr(backend, "body") else request.messages  # as sent: structured note included
            counts.append((backend.fingerprint(request), counter.prompt(messages)))
        hits = set(generation_reads.cached_responses(lake, [fp for fp, _ in counts])) if spec.cache else set()
        cached += sum(fp in hits for fp, _ in counts)
        to_pay += [n for fp, n in counts if fp not in hits]
        if progress:
            progress(start + len(part), len(items))
    history = usage.percentile_pair(generation_reads.completion_lengths(lake, spec.model_id, spec.tasks))
    max_tokens = getattr(backend, "max_tokens", None) or getattr(backend, "max_new_tokens", None) or 768
    result = usage.estimate(to_pay, cached=cached, n_pairs=spec.n_pairs, max_tokens=max_tokens,
                            counted_by=counter.counted_by, prices=spec.prices(), completion_per_request=history)
    return JobEstimate(len(items), result, history is not None)
