"""The map job's spec (cpu queue): a 2-D projection of the CLIP image vectors the CLIPScore job stored (the web app's
Map page), as the stats ``map_x`` and ``map_y``."""
from __future__ import annotations

from dataclasses import dataclass

from config.fields import param

from .clusters import embedding_check
from .registry import JobSpec, job_kind


@job_kind("map")
@dataclass(frozen=True)
class MapJob(JobSpec):
    QUEUE = "cpu"

    method: str = param("tsne", choices=("tsne", "pca"),
                        help="tsne: PCA to 50 dimensions, then t-SNE (scikit-learn) on a sample, the rest placed among their nearest "
                             "sampled neighbours; pca: the first two principal components (instant, coarser).")
    sample_size: int = param(10_000, min=100, max=200_000, help="tsne: images the t-SNE is fitted on (its cost grows faster than linearly).")
    embedding_model: str = param("", help="The CLIP model whose stored vectors are projected; default: the model that embedded the most images.")
    seed: int = param(0, help="Sampling and t-SNE's initialisation.")

    def check_store(self, settings) -> None:
        embedding_check(settings, self.embedding_model)
