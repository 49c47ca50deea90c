"""The VisAttnScore job (gpu queue): every generated sample (or, with ``on="items"``, every item) not yet
scored by the VLM, shortest first. A sample is its images, question and answer; an item is its images and
its own text (a catalog title or what the customer wrote) as the answer to a fixed question. Each gets
the segment score (eq. 2), the image mass, the option scores, its length in tokens and its per-token
and per-word values.
"""
from __future__ import annotations

from typing import Any

from PIL import Image

from curation.images import ImageError, ImageLimits, inspect_image
from curation.judge import JUDGE_QUESTION, JUDGE_VERSION, judge_tokens
from curation.prompt_layout import ocr_body
from curation.vis_attn import ATTN_NAME, VisAttnConfig, check_segment, score_batch
from curation.visual_gain import GAIN_METRICS, check_same_tokens, encode_blind, gains
from curation.vlm import Sample, SampleError
from db.app.jobs import UnitSpec
from db.lake import batches
from db.reads import samples_view, scoring_reads
from jobs.grounding import GroundingJob

from .. import models
from ..runtime import PermanentError, UnitContext
from .registry import add_handler

WINDOW_BATCHES = 4  # batches encoded at a time (sorted by length within the window)
QUESTIONS = {
    "catalog": "Describe the product in the image.",
    "feedback": "What does the customer report about the product in the photo?",
}


def requested_metrics(config: VisAttnConfig, signals: list[str] = ("attention",)) -> list[str]:
    return (["vis_attn"] + (["vis_attn_nosink"] if config.exclude_sinks else []) + (["vis_attn_dist"] if config.distance_correction else [])
            + (list(GAIN_METRICS) if "gain" in signals else []) + (["judge_yes"] if "judge" in signals else []))


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    job: GroundingJob = ctx.spec
    metrics, segment = requested_metrics(job.config, job.signals), job.config.segment
    if job.on == "samples":
        todo = [sid for sid, _ in scoring_reads.samples_without_score(ctx.lake, metrics, job.model_id, segment, job.selection)]
        if not todo and not ctx.lake.scalar("SELECT count(*) FROM samples"):
            ctx.log("no samples in the store yet: generate some (vitpro generate) or score items (--on items)", level="warning")
    else:
        todo = [item_id for item_id, _ in scoring_reads.items_without_score(ctx.lake, metrics, job.model_id, segment)]
    size = job.items_per_unit
    specs = [UnitSpec({"subjects": todo[i : i + size]}, len(todo[i : i + size])) for i in range(0, len(todo), size)]
    ctx.log(f"{len(todo)} {job.on} to score with {job.model_id}")
    return specs, {"set": {f"{job.on}_to_score": len(todo)}}


def _subjects(ctx: UnitContext, on: str) -> list[tuple[str, str, list[str], str, str, list[str]]]:
    """(kind, id, blob paths, question, answer, OCR texts) for the unit's subjects."""
    if on == "samples":
        return [("sample", r["sample_id"], r["blob_paths"], r["question"], r["answer"], r["ocr_texts"])
                for r in samples_view.samples_with_images(ctx.lake, ctx.payload["subjects"])]
    out = []
    for item in scoring_reads.items_with_images(ctx.lake, ctx.payload["subjects"]):
        answer = (item["title"] if item["kind"] == "catalog" else item["feedback_text"]) or item["description"] or ""
        out.append(("item", item["item_id"], item["blob_paths"], QUESTIONS.get(item["kind"], QUESTIONS["catalog"]), answer, item["ocr_texts"]))
    return out


def _images(blob_paths: list[str], blobs) -> list[Image.Image]:
    images = []
    for blob in blob_paths:
        data = blobs.local(blob).read_bytes()
        inspect_image(data, ImageLimits())  # a blob damaged since ingest fails clearly here
        images.append(Image.open(blobs.local(blob)).convert("RGB"))
    return images


def run(ctx: UnitContext) -> dict[str, Any]:
    job: GroundingJob = ctx.spec
    config = job.config
    try:
        adapter = models.vlm(job.model, job.device, job.dtype, ATTN_NAME)
    except (RuntimeError, OSError, ValueError) as exc:
        raise PermanentError(f"cannot load {job.model}: {exc}") from exc
    model_id, segment = job.model_id, config.segment
    flags_base = {"demo_model": True} if job.demo_model else {}
    if adapter.template_source != "checkpoint":
        flags_base["chat_template"] = adapter.template_source
        ctx.log(f"{job.model} has no chat template: scored with the {adapter.family} layout written from its documentation "
                "(copy the checkpoint's chat_template.jinja into the folder to use its own)", level="warning")
    now = batches.now_utc()
    rows, tokens, errors, side, gain_rows = [], [], [], [], []

    on = job.on
    kind = "sample" if on == "samples" else "item"

    def score_row(subject_id, metric, value, flags):
        return {"subject_kind": kind, "subject_id": subject_id, "metric": metric, "model_id": model_id, "segment": segment,
                "value": value, "flags": {**flags_base, **flags} or None, "run_id": ctx.run_id, "created_at": now}

    wanted = requested_metrics(config, job.signals)

    def failed(subject_id, metrics, stage, code, message):
        """``metrics`` recorded as failed with ``code`` (so the next job does not plan the sample again for
        them), and the error row saying why."""
        for metric in metrics:
            rows.append(score_row(subject_id, metric, None, {"error": code}))
        errors.append({"job_id": ctx.job_id, "run_id": ctx.run_id, "stage": stage, "code": code, "message": message[:1000],
                       "item_id": subject_id if kind == "item" else None, "subject": subject_id, "created_at": now})

    def fail(subject_id, code, message):  # the sample itself: every metric asked for
        failed(subject_id, wanted, "grounding", code, message)

    with_gain = "gain" in job.signals
    judge = None
    if "judge" in job.signals:
        try:
            judge = judge_tokens(adapter)
        except SampleError as exc:  # this model cannot spell the verdict in one token: every sample says why
            judge_problem = exc
    judge_question = JUDGE_QUESTION if judge is not None else None

    def encode(subject) -> tuple[str, object, object] | None:
        _, subject_id, blob_paths, question, answer, ocr_texts = subject
        ocr = ocr_body(ocr_texts, len(blob_paths)) if job.ocr else None
        try:
            sample = Sample(_images(blob_paths, ctx.blobs), question, answer, ocr or None)
            enc = adapter.encode(sample, follow_up=judge_question)  # the judge's turn after the answer: A(t) unchanged (causal)
            check_segment(enc, segment)
            blind = None
            if with_gain:
                try:
                    blind = encode_blind(adapter, sample, ocr=job.blind_ocr)
                    check_same_tokens(enc, blind, segment)
                except SampleError as exc:  # the gain alone cannot be had (no turn without images): attention stands
                    failed(subject_id, GAIN_METRICS, "grounding_gain", exc.code, exc.message)
                    blind = None
            if "judge" in job.signals and judge is None:  # a model that cannot spell yes / no in one token
                failed(subject_id, ["judge_yes"], "grounding_judge", judge_problem.code, judge_problem.message)
            return subject_id, enc, blind
        except SampleError as exc:
            fail(subject_id, exc.code, exc.message)
        except (ImageError, OSError) as exc:
            fail(subject_id, "image_unreadable", str(exc))
        return None

    size = job.batch_size
    subjects = _subjects(ctx, on)
    # A window of a few batches is encoded at a time: an encoded sample holds its processor's pixel
    # tensors (several MB for a large photo), so a whole unit of them at once would be the job's peak memory.
    window = size * WINDOW_BATCHES
    done = 0
    for first in range(0, len(subjects), window):
        encoded = [e for e in map(encode, subjects[first : first + window]) if e is not None]
        encoded.sort(key=lambda pair: pair[1].length)  # similar lengths together: little padding
        for start in range(0, len(encoded), size):
            ctx.check()
            chunk = encoded[start : start + size]
            results = score_batch(adapter, [e for _, e, _ in chunk], config, logprobs=with_gain, judge=judge)
            blind_ones = [(k, b) for k, (_, _, b) in enumerate(chunk) if b is not None]
            if blind_ones:  # one text-only forward for the chunk's samples that have a blind prompt
                for (k, b), g in zip(blind_ones, gains(adapter, [results[k] for k, _ in blind_ones], [b for _, b in blind_ones], segment)):
                    item_id = chunk[k][0]
                    for metric, value in g.metrics().items():
                        rows.append(score_row(item_id, metric, value, {"blind_ocr": False} if not job.blind_ocr else {}))
                    gain_rows.append({"subject_kind": kind, "subject_id": item_id, "model_id": model_id, "segment": segment,
                                      "with_logp": g.with_logp, "blind_logp": g.blind_logp, "gain": g.gain, "words": g.words,
                                      "word_gain": g.word_gain, "blind_input_ids": b.input_ids, "blind_positions": b.positions_of(segment),
                                      "run_id": ctx.run_id, "created_at": now})
            for (item_id, enc, _), res in zip(chunk, results):
                flags = {"truncated": True} if res.truncated else {}
                rows.append(score_row(item_id, "vis_attn", res.segment_score, flags))
                rows.append(score_row(item_id, "vis_attn_mass", res.image_mass, flags))
                for metric, value in res.extra.items():
                    rows.append(score_row(item_id, metric, value, flags))
                rows.append(score_row(item_id, "text_tokens", float(len(res.positions["answer"])), {}))
                if res.judge_yes is not None:  # the prompt's version and how much mass went to yes or no, with the verdict
                    rows.append(score_row(item_id, "judge_yes", res.judge_yes, {"judge_version": JUDGE_VERSION, "judge_mass": round(res.judge_mass, 6)}))
                tokens.append({"subject_kind": kind, "subject_id": item_id, "model_id": model_id, "segment": segment,
                               "tokens": res.tokens, "token_ids": res.token_ids, "scores": res.token_scores, "mass": res.token_mass,
                               "words": res.words, "word_scores": res.word_scores, "positions": res.positions,
                               "run_id": ctx.run_id, "created_at": now})
                if kind == "sample" and res.question:  # the question's tokens too, so Inspect can colour it
                    side.append({"subject_kind": kind, "subject_id": item_id, "model_id": model_id, "segment": "question",
                                 **res.question, "run_id": ctx.run_id, "created_at": now})
            done += len(chunk)
            ctx.progress(done)
    batches.write_scores(ctx.lake, ctx.run_id, rows, tokens + side, errors, gain_rows)
    return {f"{on}_scored": len(tokens), f"{on}_failed": sum(1 for e in errors if e["stage"] == "grounding"),
            **({"gain_scored": len(gain_rows), "gain_failed": sum(1 for e in errors if e["stage"] == "grounding_gain")} if with_gain else {}),
            "truncated": sum(1 for r in rows if r["metric"] == "vis_attn" and (r["flags"] or {}).get("truncated"))}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    removed = batches.dedupe_scores(ctx.lake, ctx.spec.model_id)
    if removed:
        ctx.log(f"removed {removed} score row(s) two units wrote at once")
    return {}


add_handler("grounding", plan=plan, run=run, finalize=finalize)
