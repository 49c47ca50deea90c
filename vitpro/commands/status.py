"""`vitpro errors` and `vitpro status`: recorded errors, and counts per stage with the live workers."""
from __future__ import annotations

import json

import click

from config.settings import load_settings

from .group import cli, echo_table, find_job, open_engine

# ---- errors and status -------------------------------------------------------------------------------
# every stage a job records errors under (ingest: row, image; then ocr, clip, dedup, and grounding's signals)
ERROR_STAGES = ["row", "image", "ocr", "clip", "dedup", "grounding", "grounding_gain", "grounding_judge"]


@cli.command()
@click.option("--job", "job_id", help="Only this job's errors.")
@click.option("--stage", type=click.Choice(ERROR_STAGES))
@click.option("--limit", type=click.IntRange(1), default=30, show_default=True)
def errors(job_id, stage, limit) -> None:
    """Rows and images that were refused, with the reason (source rows shown redacted)."""
    from db.reads import queries
    from db.store import open_store

    s = load_settings()
    lake = open_store(s.store)
    if job_id:
        job_id = find_job(job_id).id
    summary = queries.error_summary(lake, job_id)
    if not summary:
        click.echo("no errors recorded")
        return
    echo_table(summary, ("stage", "code", "count"))
    click.echo()
    for e in queries.error_rows(lake, job_id=job_id, stage=stage, limit=limit):
        where = f"row {e['row_number']}" if e["row_number"] is not None else (e["subject"] or "")[:40]
        click.echo(f"[{e['stage']}/{e['code']}] {where}: {e['message']}")
        if e["source_row"]:  # the mapped fields, already redacted and cut short at ingest
            click.echo(f"    {e['source_row'][:160]}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json) -> None:
    """Counts per stage, redactions (in item text and in OCR text), errors, jobs and live workers."""
    from db.app import jobs as jobs_db
    from db.reads import ocr_reads, queries
    from db.store import open_store

    s = load_settings()
    lake = open_store(s.store)
    engine = open_engine()
    counts = queries.stage_counts(lake)
    redactions = queries.redaction_totals(lake)
    ocr_redactions = ocr_reads.ocr_redaction_totals(lake)
    job_counts = jobs_db.status_counts(engine)
    workers = jobs_db.live_workers(engine, max_age_seconds=max(10.0, s.lease_seconds))
    if as_json:
        click.echo(json.dumps({"stages": counts, "redactions": redactions, "ocr_redactions": ocr_redactions, "jobs": job_counts,
                               "workers": [w.id for w in workers]}, indent=2))
        return
    click.echo(f"store     {s.describe()['catalog']}  (data {s.data_path})")
    click.echo(f"ingest    {counts['sources']} source(s), {counts['items']} item(s): {counts['items_catalog']} catalog, {counts['items_feedback']} feedback")
    click.echo(f"images    {counts['images']} image(s) ({counts['image_contents']} distinct), {counts['items_with_images']} item(s) with images")
    click.echo(f"ocr       {counts['images_ocr']}/{counts['image_contents']} image(s) read, {counts['images_with_text']} with text")
    click.echo(f"samples   {counts['samples']} generated over {counts['sample_tasks']} task(s), {counts['generation_rejects']} refused at parsing")
    click.echo(
        f"scores    {counts['items_clip_scored']} item(s) with CLIPScore; VisAttnScore for {counts['samples_grounding_scored']} sample(s) "
        f"and {counts['items_grounding_scored']} item(s) (vitpro score summary)"
    )
    if counts["dup_grouping"]:
        click.echo(f"dedup     {counts['dup_groups']} group(s) of near-duplicate images ({counts['dup_images']} images) by "
                   f"{counts['dup_grouping']}; {counts['images_embedded']} image(s) with a CLIP vector (vitpro dedup show)")
    click.echo("redacted  " + (", ".join(f"{k} {v}" for k, v in redactions.items()) or "nothing") + " in item text; "
               + (", ".join(f"{k} {v}" for k, v in ocr_redactions.items()) or "nothing") + " in OCR text")
    click.echo(f"errors    {counts['errors']} recorded (vitpro errors)")
    click.echo("jobs      " + (", ".join(f"{k} {v}" for k, v in sorted(job_counts.items())) or "none"))
    click.echo(f"workers   {len(workers)} live" + (f": {', '.join(w.id + ' [' + w.queues + ']' for w in workers)}" if workers else ""))
