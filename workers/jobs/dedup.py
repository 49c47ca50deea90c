"""The dedup job: plan = the stored image contents not hashed yet with the method; unit = hash a batch (an image
that cannot be hashed is an error row, the batch goes on); finalize = group every hashed content by Hamming
distance (curation.near_dups, no all-pairs comparison) and write the groups and ranks as stats, replacing the
grouping of the same method and threshold."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

from curation.dup_keys import method_label
from curation.embedding_groups import groups_by_cosine
from curation.near_dups import HashConfig, NearDupError, groups_by_hash, hash_file
from curation.text_dups import TextDupConfig, groups_by_text
from db.app.jobs import UnitSpec
from db.lake import batches, dup_stats, metrics
from db.reads import dup_reads, embedding_reads
from db.storage.objects import ObjectStoreError
from jobs.dedup import DedupJob

from ..runtime import UnitContext
from .clusters import model_of
from .registry import add_handler


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    job: DedupJob = ctx.spec
    if job.method == "clip":  # the vectors are stored already: grouping only (finalize)
        model = model_of(ctx, job.embedding_model)
        ctx.log(f"grouping the images {model} embedded at cosine >= {job.min_cosine:g}")
        return [], {"set": {"embedding_model": model}}
    todo = dup_reads.images_without_hash(ctx.lake, method_label(job.method))
    size = job.batch_size
    specs = [UnitSpec({"images": [[sha, blob] for sha, blob in todo[i:i + size]]}, len(todo[i:i + size])) for i in range(0, len(todo), size)]
    ctx.log(f"{len(todo)} image content(s) to hash with {job.method}; then grouping within {job.threshold} bits")
    return specs, {"set": {"images_to_hash": len(todo)}}


def run(ctx: UnitContext) -> dict[str, Any]:
    job: DedupJob = ctx.spec
    label, config = method_label(job.method), HashConfig(method=job.method)
    rows, errors = [], []
    for i, (sha, blob) in enumerate(ctx.payload["images"]):
        ctx.check()
        ctx.progress(i)
        try:
            value = hash_file(ctx.blobs.local(blob), config)
        except ObjectStoreError:
            raise  # the store, not the image: the unit is retried with back-off
        except NearDupError as exc:  # one bad image never stops the batch
            errors.append({"job_id": ctx.job_id, "run_id": ctx.run_id, "stage": "dedup", "code": exc.code, "message": str(exc)[:1000],
                           "subject": sha, "created_at": batches.now_utc()})
            continue
        # the 64 bits as the signed BIGINT the table holds
        rows.append({"sha256": sha, "method": label, "hash": int(np.uint64(value).view(np.int64)), "run_id": ctx.run_id,
                     "created_at": batches.now_utc()})
    written = dup_stats.write_hashes(ctx.lake, ctx.run_id, rows, errors)
    return {"images_hashed": written, "images_failed": len(errors)}


def rank_stat(ctx: UnitContext, name: str) -> tuple[str, str, str, str] | None:
    """(metric, subject kind, model id, segment) of the stored stat that ranks samples in a group: the model
    with the most rows where several scored it (logged); None (rank by sample id) where none is stored."""
    if not name:
        return None
    metric = metrics.get(name)
    segment = metrics.default_segment(name)
    found = ctx.lake.fetchall("SELECT model_id, count(*) FROM scores WHERE subject_kind = ? AND metric = ? AND segment = ? "
                              "AND value IS NOT NULL GROUP BY model_id ORDER BY 2 DESC, 1", [metric.subject, name, segment])
    if not found:
        ctx.log(f"no {name} stored yet: samples in a group are ranked by sample id (run the dedup job again once it is)", level="warning")
        return None
    if len(found) > 1:
        ctx.log(f"{name} comes from {len(found)} models; ranking by {found[0][0]}'s ({found[0][1]} rows)")
    return name, metric.subject, found[0][0], segment


def components(n: int, groups: list[list[int]]) -> np.ndarray:
    """A label per hash: the group's number for members of a group, a number of its own for a hash alone."""
    labels = np.full(n, -1, dtype=np.int64)
    for k, members in enumerate(groups):
        labels[members] = k
    alone = labels < 0
    labels[alone] = len(groups) + np.arange(int(alone.sum()))
    return labels


def samples_saying_the_same(ctx: UnitContext, shas: list[str], labels: np.ndarray) -> tuple[tuple[list[str], np.ndarray], int]:
    """Near-duplicate samples: the same task, first images in one photo group, and questions and answers that say
    the same thing (curation.text_dups: normalised, MinHash/LSH, each pair checked exactly). Returns (sample ids, a
    label each: samples of one group share it) and the number of groups of two or more."""
    rows = dup_reads.sample_texts(ctx.lake, shas, labels)  # only samples that share (photo group, task) with another
    ids = rows["sample_id"]
    keys = list(zip(rows["label"], rows["task"]))
    texts = list(zip(rows["question"], rows["answer"]))
    groups = groups_by_text(keys, texts, **asdict(TextDupConfig()))
    out = np.arange(len(ids), dtype=np.int64) + len(groups)  # each sample alone ...
    for g, members in enumerate(groups):  # ... but those of a group
        out[members] = g
    return (ids, out), len(groups)


def finalize(ctx: UnitContext) -> dict[str, Any]:
    job: DedupJob = ctx.spec
    if job.method == "clip":
        model = model_of(ctx, job.embedding_model)
        label = f"clip@{model}"
        shas, vectors = embedding_reads.embeddings(ctx.lake, model)
        started = time.perf_counter()
        groups = groups_by_cosine(vectors, job.min_cosine)
    else:
        label = method_label(job.method)
        batches.dedupe_contents(ctx.lake, "image_hashes", "method", label)
        shas, hashes = dup_reads.hashes(ctx.lake, label)
        started = time.perf_counter()
        groups = groups_by_hash(hashes, job.threshold)
    seconds = time.perf_counter() - started
    labels = components(len(shas), groups)
    started = time.perf_counter()
    said, n_said = samples_saying_the_same(ctx, shas, labels)
    text_seconds = time.perf_counter() - started
    counts = dup_stats.write_groups(ctx.lake, model_id=job.grouping, shas=shas, components=labels, run_id=ctx.run_id,
                                    rank=rank_stat(ctx, job.rank_by), missing="no_embedding" if job.method == "clip" else "not_hashed",
                                    sample_groups=said)
    counts["sample_groups"] = n_said
    ctx.log(f"{n_said} group(s) of samples that say the same thing about near-duplicate photos ({text_seconds:.2f} s); "
            "dup_rank ranks within them")
    ctx.log(f"{len(shas)} image content(s) grouped in {seconds:.2f} s ({label}): {counts['groups']} group(s) of two or more images "
            f"({counts['images_in_groups']} images); {counts['images_not_hashed']} image(s) without a "
            + ("vector (CLIP could not read them, or they came after `vitpro score clip`)" if job.method == "clip" else "hash"))
    return {"set": {**counts, "grouping": job.grouping, "group_seconds": round(seconds, 3)}}


add_handler("dedup", plan=plan, run=run, finalize=finalize)
