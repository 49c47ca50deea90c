"""The generation job: question/answer samples for every item and task not yet generated with this
backend, model and prompt version. API and template backends run on the ``cpu`` queue, a local model on
``gpu``. A unit's samples, rejects and "done" markers are written in one transaction, so a job resumed
after a crash regenerates only the units that had not finished."""
from __future__ import annotations

from typing import Any

from curation.generation import (
    GenResponse,
    PromptTemplate,
    applicable,
    build_requests,
    normalise,
    process_responses,
    usage,
)
from curation.generation.facts import known_brand_index
from curation.generation.repeats import hold_outcome
from curation.item_contexts import contexts_for
from db.app.jobs import UnitSpec
from db.lake import batches
from db.reads import generation_reads
from jobs.generate import GenerateJob

from ..runtime import Cancelled, PermanentError, UnitContext
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
    responses, calls = _complete(ctx, job, backend, requests)
    ctx.check()
    outcome = process_responses(requests, responses, backend=job.backend, model_id=job.model_id, prompt_version=job.prompt_version, seen=seen)
    # the repetition rule holds when samples are written (curation/generation/repeats.py): a pair whose answer
    # would be given for more products than the rule allows is a reject, not a sample
    answers = [(s.task, s.answer) for s in outcome.samples if s.label is None]
    outcome, repeats = hold_outcome(outcome, *generation_reads.answer_products(ctx.lake, job.backend, item_ids, answers, ctx.run_id))
    if repeats:
        ctx.log(f"{repeats} sample(s) not written: their answer would break the repetition rule (rejects 'repeated_answer')")
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
    written = batches.write_generation(ctx.lake, ctx.run_id, samples, rejects, markers, calls)
    ctx.progress(len(item_ids))
    return {"requests": len(requests), "samples": written, "rejects": len(rejects), "backend_errors": len(failed), "repeats_dropped": repeats,
            **usage.unit_counts(calls)}


def _complete(ctx: UnitContext, job: GenerateJob, backend, requests: list) -> tuple[list, list[dict[str, Any]]]:
    """The backend's answers, those of requests asked before read from the response cache (job.cache), with one
    ``llm_calls`` row per request: its tokens, latency and outcome. New answers go into the cache at once, before
    they are parsed: a unit that dies after paying for them finds them there when it runs again."""
    fingerprint_of = getattr(backend, "fingerprint", None)
    if fingerprint_of is None:  # the template backend asks no model: nothing to pay, count or cache
        return backend.complete(requests), []
    fingerprints = [fingerprint_of(r) for r in requests]
    stored = generation_reads.cached_responses(ctx.lake, fingerprints) if job.cache else {}
    todo = [k for k, fp in enumerate(fingerprints) if fp not in stored]
    asked = [requests[k] for k in todo]
    fresh = (_through_batch(ctx, job, backend, asked) if job.batch else backend.complete(asked)) if todo else []
    now = batches.now_utc()
    answered = [{"fingerprint": fingerprints[k], "model_id": job.model_id, "text": r.text, "finish_reason": r.finish_reason,
                 "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "counted_by": r.counted_by,
                 "run_id": ctx.run_id, "created_at": now} for k, r in zip(todo, fresh) if r.text is not None]
    batches.write_llm_cache(ctx.lake, ctx.run_id, answered)
    responses: list = [None] * len(requests)
    for k, r in zip(todo, fresh):
        r.fingerprint = fingerprints[k]
        responses[k] = r
    for k, fp in enumerate(fingerprints):
        if responses[k] is None:
            hit = stored[fp]
            responses[k] = GenResponse(requests[k].key, hit["text"], None, hit["finish_reason"], 0, 0.0, prompt_tokens=hit["prompt_tokens"],
                                       completion_tokens=hit["completion_tokens"], counted_by=hit["counted_by"] or "none", cached=True, fingerprint=fp)
    calls = [{"item_id": q.key[0], "task": q.key[1], "backend": job.backend, "model_id": job.model_id, "fingerprint": r.fingerprint,
              "outcome": "cached" if r.cached else "ok" if r.text is not None else usage.failure_reason(r.error, permanent=r.permanent),
              "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "counted_by": r.counted_by, "seconds": round(r.seconds, 4),
              "attempts": r.attempts, "job_id": ctx.job_id, "run_id": ctx.run_id, "created_at": now} for q, r in zip(requests, responses)]
    if stored:
        ctx.log(f"{len(requests) - len(todo)} of {len(requests)} request(s) answered from the response cache")
    return responses, calls


def finalize(ctx: UnitContext) -> dict[str, Any]:
    removed = batches.dedupe_samples(ctx.lake)
    if removed:
        ctx.log(f"removed {removed} sample(s) two units wrote at once")
    return {}


add_handler("generate", plan=plan, run=run, finalize=finalize)


def _through_batch(ctx: UnitContext, job: GenerateJob, backend, requests: list) -> list:
    """The answers to ``requests`` through the server's Batch API (curation/generation/batch_api.py). The batch id
    is stored with the unit before polling starts: a unit run again after its worker died polls that batch
    rather than submitting (and paying for) the same requests again. A cancelled job cancels its batch. Requests
    the batch did not answer, or answered with a failure that may pass, are then asked directly."""
    import time
    from dataclasses import replace

    from curation.generation.batch_api import BatchClient, BatchError, wait

    client = BatchClient(backend)
    _, ids = client.lines(requests)
    start = time.monotonic()
    known = generation_reads.unit_batch(ctx.lake, ctx.run_id)

    def record(batch_id: str, file_id: str | None, status: str) -> None:
        batches.record_llm_batch(ctx.lake, {"run_id": ctx.run_id, "batch_id": batch_id, "input_file_id": file_id, "requests": len(ids),
                                            "status": status, "job_id": ctx.job_id, "created_at": batches.now_utc()})

    try:
        if known and known["status"] == "submitted":
            batch_id, file_id = known["batch_id"], known["input_file_id"]
            ctx.log(f"batch {batch_id}: polling it again (this unit submitted it before its worker stopped)")
        else:
            batch_id, file_id = client.submit(requests, metadata={"vitpro_unit": ctx.run_id})
            record(batch_id, file_id, "submitted")
            ctx.log(f"batch {batch_id}: {len(ids)} request(s) submitted; polled every {job.batch_poll_s:g} s")
        try:
            state = wait(client, batch_id, poll_s=job.batch_poll_s, check=ctx.check)
        except Cancelled:
            try:
                client.cancel(batch_id)
            except BatchError as exc:
                ctx.log(f"batch {batch_id}: could not cancel it: {exc}", "warning")
            record(batch_id, file_id, "cancelled")
            ctx.log(f"batch {batch_id}: cancelled with the job")
            raise
        record(batch_id, file_id, state.status)
        results = client.results(state, round(time.monotonic() - start, 3))
    except BatchError as exc:  # the server refused a step: the unit is retried (a submitted batch is polled again)
        raise RuntimeError(f"the Batch API: {exc}") from None
    out: list = []
    again: list[int] = []
    for k, request in enumerate(requests):
        got = results.get(backend.fingerprint(request))
        if got is None or (got.text is None and not got.permanent):
            out.append(None)
            again.append(k)
        else:
            out.append(backend.counted(replace(got, key=request.key), backend.body(request)["messages"]))
    ctx.log(f"batch {batch_id}: {state.status}; {len(requests) - len(again)} answer(s)" + (f", {len(again)} asked directly" if again else ""))
    if again:
        for k, response in zip(again, backend.complete([requests[k] for k in again])):
            out[k] = response
    return out

