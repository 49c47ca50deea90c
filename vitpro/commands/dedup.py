"""`vitpro dedup`: near-duplicate images, grouped by a job; the groups listed."""
from __future__ import annotations

import json

import click

from jobs.dedup import DedupJob

from ..spec_options import job_params, spec_option
from .group import cli, echo_table, fail, run_job


@cli.group()
def dedup() -> None:
    """Near-duplicate photos: the same picture resized, re-encoded, cropped or re-toned, under several items.

    \b
      vitpro dedup images --local             # hash new images, group all within 10 bits (dhash)
      vitpro dedup images --method clip       # by meaning: CLIP image vectors with cosine >= 0.95
      vitpro dedup show                       # the groups of two or more images
      vitpro filter ... --where 'dup_rank == 1'   # one sample per task and group (the best by --rank-by)
    """


@dedup.command("images")
@spec_option(DedupJob, "method")
@spec_option(DedupJob, "threshold")
@spec_option(DedupJob, "min_cosine")
@spec_option(DedupJob, "embedding_model")
@spec_option(DedupJob, "rank_by")
@spec_option(DedupJob, "batch_size")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def dedup_images(method, threshold, min_cosine, embedding_model, rank_by, batch_size, wait, local) -> None:
    """Hash the images not hashed yet (each content once; a bad image is an error row), then group every hashed
    image with those within THRESHOLD bits, and rank each group's samples per task: stats dup_group, dup_size and
    dup_rank (model id METHOD:THRESHOLD), which replace the grouping of the same method and threshold.
    --method clip groups by the CLIP vectors `vitpro score clip` stored instead (cosine >= --min-cosine; model id
    clip:MIN_COSINE), and is refused before it is queued where none are stored."""
    run_job("dedup", job_params(DedupJob, method=method, threshold=threshold, min_cosine=min_cosine, embedding_model=embedding_model,
                                rank_by=rank_by, batch_size=batch_size), wait=wait, local=local)


@dedup.command("show")
@click.option("--grouping", help="Which grouping (METHOD:THRESHOLD, e.g. dhash:10); default: the newest.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N groups (the largest first).")
@click.option("--json", "as_json", is_flag=True, help='Print {"method", "threshold", "grouping", "groups": [{"group", "members": '
                                                      '[{"item_id", "source", "external_id", "image_sha256"}]}]}.')
def dedup_show(grouping, limit, as_json) -> None:
    """The near-duplicate groups of two or more images: one member per (item, image)."""
    from config.settings import load_settings
    from db.reads import dup_reads
    from db.store import open_store

    lake = open_store(load_settings().store)
    made = dup_reads.groupings(lake)
    if not made:
        fail("no near-duplicate grouping yet: run `vitpro dedup images` first")
    grouping = grouping or made[0]
    if grouping not in made:
        fail(f"no grouping {grouping!r}; the store has {', '.join(made)}")
    groups = dup_reads.groups(lake, grouping, limit=limit)
    method, _, threshold = grouping.partition(":")
    if as_json:
        click.echo(json.dumps({"method": method, "threshold": int(threshold), "grouping": grouping, "groups": groups}, indent=2))
        return
    members = sum(len(g["members"]) for g in groups)
    click.echo(f"{grouping}: {len(groups)} group(s) of near-duplicate images, {members} members" + (f" (first {limit} groups)" if limit else ""))
    rows = []
    for g in groups:
        for k, m in enumerate(g["members"]):
            rows.append((g["group"] if k == 0 else "", m["source"], m["external_id"], m["item_id"], m["image_sha256"][:12]))
    if rows:
        echo_table(rows, ("group", "source", "external id", "item", "image"))
