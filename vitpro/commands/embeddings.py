"""`vitpro clusters` and `vitpro map`: k-means clusters, uniqueness and the 2-D map over the stored CLIP image vectors, as jobs."""
from __future__ import annotations

import click

from jobs.clusters import ClustersJob
from jobs.map import MapJob

from ..spec_options import job_params, spec_option
from .group import cli, run_job


@cli.command("clusters")
@spec_option(ClustersJob, "k")
@spec_option(ClustersJob, "neighbours")
@spec_option(ClustersJob, "embedding_model")
@spec_option(ClustersJob, "seed")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def clusters(k, neighbours, embedding_model, seed, wait, local) -> None:
    """k-means clusters of the images by their CLIP vectors (`vitpro score clip` stores them) and each image's
    uniqueness: stats `cluster` and `uniqueness`, a stratum (`vitpro sample --by cluster`) and a filter
    (`--where 'uniqueness >= p10'`).

    \b
      vitpro clusters --local             # about sqrt(images / 2) clusters
      vitpro clusters --k 50 --neighbours 10
    """
    run_job("clusters", job_params(ClustersJob, k=k, neighbours=neighbours, embedding_model=embedding_model, seed=seed), wait=wait, local=local)


@cli.command("map")
@spec_option(MapJob, "method")
@spec_option(MapJob, "sample_size")
@spec_option(MapJob, "embedding_model")
@spec_option(MapJob, "seed")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def map_(method, sample_size, embedding_model, seed, wait, local) -> None:
    """A 2-D map of the images by their CLIP vectors, for the web app's Map page: stats `map_x` and `map_y`.

    \b
      vitpro map --local                  # t-SNE on 10,000 images, the rest placed among their neighbours
      vitpro map --method pca             # instant, coarser
    """
    run_job("map", job_params(MapJob, method=method, sample_size=sample_size, embedding_model=embedding_model, seed=seed), wait=wait, local=local)
