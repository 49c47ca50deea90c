"""`vitpro jobs`: list, inspect, cancel, retry and wait for jobs; take back lost units now."""
from __future__ import annotations

import json
import sys

import click

from config.settings import load_settings

from .group import cli, echo_table, find_job, fmt_time, open_engine, wait_for_job


# ---- jobs --------------------------------------------------------------------------------------------
@cli.group()
def jobs() -> None:
    """List, inspect, cancel and retry jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]))
@click.option("--kind")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
def jobs_list(status, kind, limit) -> None:
    """Recent jobs, newest first."""
    from db.app import jobs as jobs_db
    from jobs.timing import duration, timing

    rows = jobs_db.list_jobs(open_engine(), limit=limit, status=status, kind=kind)
    took = {j.id: timing(j.status, j.started_at, j.finished_at, j.progress_done, j.progress_total or 0) for j in rows}
    echo_table(
        [(j.id, j.kind, j.status, f"{j.progress_done}/{j.progress_total}", j.launched_by, fmt_time(j.created_at),
          duration(took[j.id].elapsed_s), "" if took[j.id].eta_s is None else duration(took[j.id].eta_s)) for j in rows],
        ("job", "kind", "status", "progress", "by", "created (UTC)", "elapsed", "left (est.)"),
    )


@jobs.command("show")
@click.argument("job_id")
@click.option("--units", is_flag=True, help="List the work units too.")
@click.option("--log", "log_lines", type=click.IntRange(0), default=15, show_default=True, help="Log lines to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs_show(job_id, units, log_lines, as_json) -> None:
    """One job: parameters, progress, counts, error, log tail."""
    from db.app import jobs as jobs_db
    from jobs.cost import cost_report

    engine = open_engine()
    job = find_job(job_id)
    tail = jobs_db.log_tail(engine, job.id, log_lines) if log_lines else []
    cost = cost_report(job)
    if as_json:
        click.echo(json.dumps({
            "id": job.id, "kind": job.kind, "queue": job.queue, "status": job.status, "params": job.params,
            "progress": [job.progress_done, job.progress_total], "counts": job.counts, "error": job.error,
            **({"llm": cost.to_dict()} if cost else {}),
            "launched_by": job.launched_by, "created_at": fmt_time(job.created_at), "started_at": fmt_time(job.started_at),
            "finished_at": fmt_time(job.finished_at), "log": [f"{fmt_time(line.ts)} {line.level} {line.message}" for line in tail],
        }, indent=2, default=str))
        return
    click.echo(f"job       {job.id}\nkind      {job.kind} on {job.queue!r}\nstatus    {job.status}")
    click.echo(f"progress  {job.progress_done}/{job.progress_total}\nby        {job.launched_by}")
    click.echo(f"created   {fmt_time(job.created_at)}  started {fmt_time(job.started_at)}  finished {fmt_time(job.finished_at)}")
    click.echo(f"params    {json.dumps(job.params, default=str)[:600]}")
    if job.counts:
        click.echo("counts    " + ", ".join(f"{k} {v}" for k, v in job.counts.items()))
    for line in cost.lines() if cost else ():
        click.echo(f"llm       {line}")
    if job.error:
        click.secho(f"error     {job.error}", fg="red")
    if units:
        rows = jobs_db.job_units(engine, job.id)
        echo_table([(u.id.rsplit(".", 1)[1], u.phase, u.status, u.attempts, f"{u.done}/{u.size}", (u.error or "")[:60]) for u in rows], ("unit", "phase", "status", "tries",
                                                                                                                                         "done", "error"))
    if tail:
        click.echo("log:")
        for line in tail:
            click.echo(f"  {fmt_time(line.ts)} {line.level:<7} {line.message}")


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id) -> None:
    """Cancel a job: pending units are dropped, running ones stop after their current batch."""
    from jobs.submit import cancel_job

    job = find_job(job_id)
    click.echo(f"job {job.id}: {cancel_job(job.id)}")


@jobs.command("retry")
@click.argument("job_id")
def jobs_retry(job_id) -> None:
    """Run the failed and cancelled units of a finished job again (writes are idempotent)."""
    from jobs.submit import retry_job

    job = find_job(job_id)
    n = retry_job(job.id)
    click.echo(f"job {job.id}: {n} unit(s) sent again" if n else f"job {job.id} has nothing to retry ({job.status})")


@jobs.command("wait")
@click.argument("job_id")
def jobs_wait(job_id) -> None:
    """Wait for a job with a progress bar; exit code 0 only if it succeeded."""
    sys.exit(wait_for_job(find_job(job_id).id))


@jobs.command("reap")
def jobs_reap() -> None:
    """Take back units of dead workers and resend lost messages now (workers also do this on a timer)."""
    from jobs.broker import client_for, reap_once

    open_engine()
    click.echo(f"{reap_once(load_settings(), client_for())} unit(s) sent again")
