"""The clusters job's spec (cpu queue): k-means over the CLIP image vectors the CLIPScore job stored, and each image's
uniqueness (how far its nearest neighbours are), as the stats ``cluster`` and ``uniqueness``."""
from __future__ import annotations

from dataclasses import dataclass

from config.fields import param

from .registry import JobSpec, job_kind


def embedding_check(settings, model: str) -> None:
    """Refuse a job over stored vectors where there are none (or none of the named model)."""
    from db.reads.embedding_reads import embedding_models
    from db.store import open_store

    models = embedding_models(open_store(settings.store))
    if not models:
        raise ValueError("no CLIP image embeddings are stored: run `vitpro score clip` first (it stores each image's vector)")
    if model and model not in models:
        raise ValueError(f"no embeddings of model {model!r}; stored: {', '.join(models)}")


@job_kind("clusters")
@dataclass(frozen=True)
class ClustersJob(JobSpec):
    QUEUE = "cpu"

    k: int = param(0, min=0, max=100_000, help="Clusters; 0: about the square root of half the images (at least 2), a common rule of thumb.")
    neighbours: int = param(5, min=1, max=100, help="Uniqueness is 1 - the mean cosine to this many nearest other images.")
    embedding_model: str = param("", help="The CLIP model whose stored vectors are clustered; default: the model that embedded the most images.")
    seed: int = param(0, help="k-means seeding and sampling.")

    def check_store(self, settings) -> None:
        embedding_check(settings, self.embedding_model)
