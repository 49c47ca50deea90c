"""The map job: one unit; a 2-D projection of the stored CLIP image vectors (curation/projection.py), written as the
image stats ``map_x`` and ``map_y`` (model id ``METHOD@MODEL``), replacing an earlier map of the same method and model."""
from __future__ import annotations

import time
from typing import Any

from curation.projection import project
from db.lake import image_stats
from db.reads import embedding_reads
from jobs.map import MapJob

from ..runtime import PermanentError, UnitContext
from .clusters import plan
from .registry import add_handler


def run(ctx: UnitContext) -> dict[str, Any]:
    job: MapJob = ctx.spec
    model = ctx.payload["model"]
    shas, vectors = embedding_reads.embeddings(ctx.lake, model)
    if not shas:
        raise PermanentError(f"no image embedded by {model}: nothing to map")
    started = time.perf_counter()
    xy = project(vectors, method=job.method, sample_size=job.sample_size, seed=job.seed)
    seconds = time.perf_counter() - started
    map_id = f"{job.method}@{model}"
    written = image_stats.replace_image_stats(ctx.lake, model_id=map_id, shas=shas, values={"map_x": xy[:, 0], "map_y": xy[:, 1]},
                                              run_id=ctx.run_id)
    ctx.progress(len(shas))
    ctx.log(f"{len(shas)} image content(s) projected by {job.method} in {seconds:.1f} s" +
            (f" (fitted on {job.sample_size}, the rest placed by their nearest neighbours)" if job.method == "tsne" and len(shas) > job.sample_size else "")
            + f"; map {map_id} on {written} image(s)")
    return {"images": written, "map": map_id, "seconds": round(seconds, 3)}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}


add_handler("map", plan=plan, run=run, finalize=finalize)
