"""The CLIPScore job (gpu queue): every item with images not yet scored by the model, in units."""
from __future__ import annotations

from typing import Any

import numpy as np

from curation.clip_score import item_text, reduce_scores
from db.app.jobs import UnitSpec
from db.lake import batches, embeddings
from db.reads import embedding_reads, scoring_reads

from .. import models
from ..runtime import PermanentError, UnitContext
from .registry import add_handler


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    scored = [item_id for item_id, _ in scoring_reads.items_without_score(ctx.lake, "clip_score", ctx.spec.model_id)]
    # and items scored before embeddings were stored: their vectors (their scores stay as they are)
    todo = sorted(set(scored) | set(embedding_reads.items_without_embedding(ctx.lake, ctx.spec.model_id)))
    size = ctx.spec.items_per_unit
    specs = [UnitSpec({"items": todo[i : i + size]}, len(todo[i : i + size])) for i in range(0, len(todo), size)]
    ctx.log(f"{len(todo)} item(s) to score with {ctx.spec.model_id}")
    return specs, {"set": {"items_to_score": len(todo)}}


def run(ctx: UnitContext) -> dict[str, Any]:
    config = ctx.spec.config
    try:
        scorer = models.clip(config)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        raise PermanentError(f"cannot load CLIP model {config.model!r}: {exc}") from exc
    model_id = ctx.spec.model_id
    flags_base = {"demo_model": True} if ctx.spec.demo_model else {}
    items = scoring_reads.items_with_images(ctx.lake, ctx.payload["items"])
    pairs, owners, shas = [], [], []
    blobs = ctx.blobs
    for item in items:
        text = item_text(item)
        for image_id, blob, sha in zip(item["image_ids"], item["blob_paths"], item["sha256s"]):
            pairs.append(((lambda b=blob: blobs.local(b).read_bytes()), text))
            owners.append((item["item_id"], image_id))
            shas.append(sha)
    ctx.check()
    results = scorer.score_pairs(pairs)
    now = batches.now_utc()
    rows, errors = [], []
    per_item: dict[str, list] = {}

    def row(kind, subject, metric, value, flags):
        return {"subject_kind": kind, "subject_id": subject, "metric": metric, "model_id": model_id, "segment": "",
                "value": value, "flags": {**flags_base, **flags} or None, "run_id": ctx.run_id, "created_at": now}

    for (item_id, image_id), result in zip(owners, results):
        flags = {"truncated": True} if result.truncated else {}
        if result.error:
            flags = {"error": "image_unreadable"}
            errors.append({"job_id": ctx.job_id, "run_id": ctx.run_id, "stage": "clip", "code": "image_unreadable",
                           "message": result.error, "item_id": item_id, "subject": image_id, "created_at": now})
        rows.append(row("image", image_id, "clip_score", result.score, flags))
        rows.append(row("image", image_id, "clip_cosine", result.cosine, flags))
        per_item.setdefault(item_id, []).append(result)
    for item_id, results_ in per_item.items():
        values = [r.score for r in results_]
        flags = {"truncated": True} if any(r.truncated for r in results_) else {}
        if all(v is None for v in values):
            flags = {"error": "no_readable_image"}
        rows.append(row("item", item_id, "clip_score", reduce_scores(values, config.reduce), {**flags, "reduce": config.reduce}))
        for how in ("max", "min"):
            rows.append(row("item", item_id, f"clip_score_{how}", reduce_scores(values, how), flags))
    written = batches.write_scores(ctx.lake, ctx.run_id, rows, errors=errors)
    embedded = [(sha, r.embedding) for sha, r in zip(shas, results) if r.embedding is not None]
    vectors = embeddings.embeddings_table([sha for sha, _ in embedded], model_id,
                                          np.stack([v for _, v in embedded]) if embedded else np.zeros((0, 0), np.float32), ctx.run_id, now)
    stored = embeddings.write_embeddings(ctx.lake, ctx.run_id, vectors)
    ctx.progress(len(items))
    return {"items_scored": len(per_item), "images_scored": sum(r.error is None for r in results),
            "images_failed": sum(r.error is not None for r in results), "rows_written": written, "images_embedded": stored}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    batches.dedupe_contents(ctx.lake, "image_embeddings", "model_id", ctx.spec.model_id)
    removed = batches.dedupe_scores(ctx.lake, ctx.spec.model_id)
    if removed:
        ctx.log(f"removed {removed} score row(s) two units wrote at once")
    return {}


add_handler("clip_score", plan=plan, run=run, finalize=finalize)
