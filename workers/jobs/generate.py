"""The generation job: question/answer samples for every item and task not yet generated with this
backend, model and prompt version. API and template backends run on the ``cpu`` queue, a local model on
``gpu``. A unit's samples, rejects and "done" markers are written in one transaction, so a job resumed
after a crash regenerates only the units that had not finished."""
from __future__ import annotations

from typing import Any

from curation.generation import (
    PromptTemplate,
    applicable,
    build_requests,
    normalise,
    process_responses,
)
from curation.generation.facts import known_brand_index
from curation.item_contexts import contexts_for
from db.app.jobs import UnitSpec
from db.lake import batches
from db.reads import generation_reads
from jobs.generate import GenerateJob

from ..runtime import PermanentError, UnitContext
from .registry import add_handler

MAX_BACKEND_TRIES = 3  # runs that may ask the backend again for an (item, task) it failed to answer


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    job: GenerateJob = ctx.spec
    todo = generation_reads.items_to_generate(ctx.lake, job.tasks, job.backend, job.model_id, job.prompt_version, job.kinds, job.limit)
    size = job.items_per_unit
    specs = [UnitSpec({"items": todo[i : i + size]}, len(todo[i : i + size])) for i in range(0, len(todo), size)]
    ctx.log(f"{len(todo)} item(s) to generate for with {job.backend} ({job.model_id}), prompt {job.prompt_version}")
    return specs, {"set": {"items_to_generate": len(todo)}}


_backends: dict[str, Any] = {}


def _backend(job: GenerateJob):
    """One backend per worker process (a local model loads once)."""
    key = repr((job.backend, job.openai, job.hf))
    if key not in _backends:
        _backends[key] = job.make_backend()
    return _backends[key]


_brands_of_job: dict[str, dict[str, str]] = {}


def _job_brands(lake, job_id: str) -> dict[str, str]:
    """The catalog's brands (to find a brand in a title when the item has no brand column), read once per
    job in a worker process rather than once per unit: a store-wide aggregate."""
    brands = _brands_of_job.get(job_id)
    if brands is None:
        brands = known_brand_index(generation_reads.known_brands(lake))
        _brands_of_job.clear()  # only the running job's index is kept
        _brands_of_job[job_id] = brands
    return brands


def run(ctx: UnitContext) -> dict[str, Any]:
    job: GenerateJob = ctx.spec
    template = PromptTemplate.load(job.template_path, job.examples_path)
    if job.backend != "template" and template.version != job.prompt_version:
        raise PermanentError(f"the prompt files changed since the job was planned ({job.prompt_version} -> {template.version}); generate again")
    try:
        backend = _backend(job)
    except (OSError, ValueError) as exc:
        raise PermanentError(f"cannot start the {job.backend} backend: {exc}") from exc
    item_ids = ctx.payload["items"]
    contexts = contexts_for(ctx.lake, item_ids, _job_brands(ctx.lake, ctx.job_id))
    done = generation_reads.generated_tasks(ctx.lake, item_ids, job.backend, job.model_id, job.prompt_version, ctx.run_id)
    requests = [r for r in build_requests(contexts, job.tasks, template, job.n_pairs) if r.key not in done]
    seen: dict[str, set[str]] = {}
    for item_id, question, answer in generation_reads.stored_pairs(ctx.lake, item_ids, ctx.run_id):
        seen.setdefault(item_id, set()).add(normalise(question) + "\x1f" + normalise(answer))
    ctx.check()
    responses = backend.complete(requests)
    ctx.check()
    outcome = process_responses(requests, responses, backend=job.backend, model_id=job.model_id, prompt_version=job.prompt_version, seen=seen)
    now = batches.now_utc()
    common = {"backend": job.backend, "model_id": job.model_id, "prompt_version": job.prompt_version, "run_id": ctx.run_id, "created_at": now}
    samples = [
        {"sample_id": s.sample_id, "item_id": s.item_id, "task": s.task, "question": s.question, "answer": s.answer,
         "answer_format": s.answer_format, "image_ids": s.image_ids, "label": s.label, "lineage": s.lineage, "evidence": s.evidence, **common}
        for s in outcome.samples
    ]
    rejects = [
        {"item_id": item_id, "task": task, "reason": r.reason, "detail": r.detail[:500], "question": (r.question or "")[:500] or None,
         "answer": (r.answer or "")[:500] or None, "raw_response": raw[:20_000] if raw else None, **common}
        for item_id, task, r, raw in outcome.rejects
    ]
    # A request the backend could not answer (time-outs, 5xx, 429 after the retries) is not marked done:
    # the next run asks again, up to MAX_BACKEND_TRIES runs. A refusal (4xx, content filter) is final.
    earlier = generation_reads.backend_failures(ctx.lake, item_ids, job.backend, job.model_id, job.prompt_version, ctx.run_id)
    failed = {(i, t) for i, t, r, _ in outcome.rejects if r.reason == "backend_error" and earlier.get((i, t), 0) + 1 < MAX_BACKEND_TRIES}
    markers = [
        {"item_id": i, "task": t, "n_samples": ns, "n_rejects": nr, **common}
        for i, t, ns, nr in outcome.done
        if (i, t) not in failed
    ]
    # tasks that do not apply to an item (no complaint to detect damage in, no catalog photo to compare
    # with) are done too, with nothing: the next run does not plan them again
    asked = {r.key for r in requests}
    markers += [
        {"item_id": c.item_id, "task": t, "n_samples": 0, "n_rejects": 0, **common}
        for c in contexts
        for t in job.tasks
        if (c.item_id, t) not in asked and (c.item_id, t) not in done and not applicable(t, c)
    ]
    written = batches.write_generation(ctx.lake, ctx.run_id, samples, rejects, markers)
    ctx.progress(len(item_ids))
    return {"requests": len(requests), "samples": written, "rejects": len(rejects), "backend_errors": len(failed)}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    removed = batches.dedupe_samples(ctx.lake)
    if removed:
        ctx.log(f"removed {removed} sample(s) two units wrote at once")
    return {}


add_handler("generate", plan=plan, run=run, finalize=finalize)
