"""The ``vitpro`` group and what its commands share: failing with a message, tables, the store, launching a
job and waiting for it with a progress bar."""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path

import click

from config.settings import load_settings

EXIT_FAILED = 1


def echo_table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    rows = [tuple("" if v is None else str(v) for v in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="vitpro-curation-studio")
def cli() -> None:
    """VIT-Pro Curation Studio: turn product images and texts into a visual instruction-tuning set.

    \b
    Stages:         ingest (with redaction) -> ocr -> score clip -> generate -> sample -> score grounding
                    -> filter -> pilot -> snapshot -> snapshot export
    Start here:     vitpro demo             (builds demo data, runs every stage, then serves the web app)
    A whole run:    vitpro run RECIPE.yaml  (a pipeline of stages from one file; examples/ has some)
    Web app:        vitpro users add NAME --role admin; vitpro ui
    Configuration:  VITPRO_HOME (default ./var), VITPRO_CATALOG, VITPRO_BROKER, ... (docs/reference/configuration.md)
    """


# ---- waiting -----------------------------------------------------------------------------------------
def wait_for_job(job_id: str, *, quiet: bool = False, poll: float = 0.3) -> int:
    """Show a progress bar until the job ends; returns the exit code (0 when it succeeded)."""
    from tqdm import tqdm

    from db.app import jobs
    from db.app.engine import write_engine
    from jobs.submit import queue_has_worker

    s = load_settings()
    engine = write_engine(s.app_url)
    job = jobs.get_job(engine, job_id)
    if job is None:
        fail(f"no job {job_id}")
    warned_at = time.monotonic()
    # disable=None: a bar on a terminal, nothing in a log file (the outcome line is printed either way)
    bar = None if quiet else tqdm(total=max(job.progress_total, 1), desc=f"{job.kind} {job.id[-6:]}", unit="row" if job.kind == "ingest" else "img", dynamic_ncols=True,
                                  disable=None)
    try:
        while True:
            job = jobs.get_job(engine, job.id)
            if bar is not None:
                if job.progress_total and bar.total != job.progress_total:
                    bar.total = job.progress_total
                bar.n = job.progress_done
                bar.set_postfix_str(job.status)
                bar.refresh()
            if job.status in ("succeeded", "failed", "cancelled"):
                break
            if time.monotonic() - warned_at > 10 and not queue_has_worker(job.queue, settings=s):
                warned_at = time.monotonic() + 50
                click.secho(
                    f"\nno worker serves the {job.queue!r} queue; start one with `vitpro worker --queues {job.queue}` "
                    f"(the job waits, Ctrl-C leaves it queued)",
                    fg="yellow",
                    err=True,
                )
            time.sleep(poll)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; the job goes on. `vitpro jobs show {job.id}` shows it, `vitpro jobs cancel {job.id}` stops it")
        return 130
    finally:
        if bar is not None:
            bar.close()
    print_job_outcome(job)
    return 0 if job.status == "succeeded" else EXIT_FAILED


def print_job_outcome(job) -> None:
    color = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(job.status, None)
    click.secho(f"job {job.id}: {job.status}", fg=color, bold=True)
    if job.counts:
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in job.counts.items()))
    if job.error:
        click.secho(f"  {job.error}", fg="red")
    if job.counts.get("failed") or job.counts.get("images_failed"):
        click.echo(f"  details: vitpro errors --job {job.id}")


def run_job(kind: str, params: dict, *, wait: bool, local: bool) -> str:
    """Queue the job (starting a worker with ``local`` if none serves its queue), wait for it with ``wait``;
    returns its id (exits with the job's failure code)."""
    from jobs.registry import queue_of
    from jobs.submit import JobRefused, queue_has_worker, submit_job
    from vitpro.local_workers import local_workers

    s = load_settings()
    queue = queue_of(kind, params)
    starts_worker = local and not queue_has_worker(queue, settings=s)
    with local_workers(queue, log_path=s.home / "local-worker.log") if starts_worker else nullcontext():
        try:
            job_id = submit_job(kind, params, settings=s)
        except JobRefused as exc:  # a device no live worker of the queue has: say so, no traceback
            fail(str(exc))
        click.echo(f"job {job_id} queued on {queue!r}")
        if not wait:
            return job_id
        code = wait_for_job(job_id)
    if code:
        sys.exit(code)
    return job_id


# ---- the store -------------------------------------------------------------------------------------
def open_engine():
    from db.app.engine import write_engine
    from db.store import open_store

    s = load_settings()
    open_store(s.store)
    return write_engine(s.app_url)


def find_job(job_id: str):
    """The job with this id (or the only one starting with it); exits with a message if none."""
    from db.app import jobs as jobs_db

    job = jobs_db.get_job(open_engine(), job_id)
    if job is None:
        fail(f"no job {job_id}")
    return job


def fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def open_lake():
    from db.store import open_store

    return open_store(load_settings().store)


def demo_banner(model_dir: str | None) -> None:
    from curation.tiny_models import is_tiny

    if model_dir and Path(model_dir.removeprefix("local-dir:")).is_dir() and is_tiny(model_dir.removeprefix("local-dir:")):
        click.secho("demo model (random weights built from a config): its scores mean nothing", fg="yellow", err=True)


