"""The clusters job: one unit; k-means over the stored CLIP image vectors and each image's uniqueness, written as the
image stats ``cluster`` (model id ``kmeans:K@MODEL``) and ``uniqueness`` (``knn:N@MODEL``), replacing earlier ones."""
from __future__ import annotations

import math
import time
from typing import Any

from curation.embedding_groups import SearchConfig, kmeans, uniqueness
from db.app.jobs import UnitSpec
from db.lake import image_stats
from db.reads import embedding_reads
from jobs.clusters import ClustersJob

from ..runtime import PermanentError, UnitContext
from .registry import add_handler


def model_of(ctx: UnitContext, wanted: str) -> str:
    """The named embedding model, or the one that embedded the most images."""
    models = embedding_reads.embedding_models(ctx.lake)
    if wanted and wanted not in models:
        raise PermanentError(f"no embeddings of model {wanted!r}; stored: {', '.join(models) or 'none'}")
    if not models:
        raise PermanentError("no CLIP image embeddings are stored: run `vitpro score clip` first")
    return wanted or next(iter(models))


def default_k(n: int) -> int:
    return max(2, round(math.sqrt(n / 2)))


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    """One unit over the vectors of the chosen embedding model (the map job plans the same way)."""
    model = model_of(ctx, ctx.spec.embedding_model)
    n = embedding_reads.embedding_models(ctx.lake)[model]
    return [UnitSpec({"model": model}, n)], {"set": {"embedding_model": model, "images": n}}


def run(ctx: UnitContext) -> dict[str, Any]:
    job: ClustersJob = ctx.spec
    model = ctx.payload["model"]
    shas, vectors = embedding_reads.embeddings(ctx.lake, model)
    if len(shas) < 2:
        raise PermanentError(f"{len(shas)} image(s) embedded by {model}: nothing to cluster")
    k = min(job.k or default_k(len(shas)), len(shas))
    started = time.perf_counter()
    _, labels = kmeans(vectors, k, seed=job.seed)
    ctx.check()
    unique = uniqueness(vectors, job.neighbours, SearchConfig(seed=job.seed))
    seconds = time.perf_counter() - started
    cluster_id, unique_id = f"kmeans:{k}@{model}", f"knn:{job.neighbours}@{model}"
    image_stats.replace_image_stats(ctx.lake, model_id=cluster_id, shas=shas, values={"cluster": labels}, run_id=ctx.run_id)
    written = image_stats.replace_image_stats(ctx.lake, model_id=unique_id, shas=shas, values={"uniqueness": unique}, run_id=ctx.run_id)
    ctx.progress(len(shas))
    ctx.log(f"{len(shas)} image content(s) in {k} clusters ({seconds:.1f} s); largest {int((labels == 0).sum())}, stats "
            f"cluster ({cluster_id}) and uniqueness ({unique_id}) on {written} image(s)")
    return {"clusters": k, "images": written, "cluster_model": cluster_id, "uniqueness_model": unique_id, "seconds": round(seconds, 3)}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}


add_handler("clusters", plan=plan, run=run, finalize=finalize)
