"""``vitpro samples exclude|restore|excluded`` (take samples out of the data set, with a reason, and put
them back).

Registered on the main group (vitpro/commands/group.py); ``vitpro snapshot rename`` lives with its group in snapshots.py. Every change is recorded with
the acting user: ``VITPRO_USER``, else the OS login name (settings.user), as the other commands do.
"""
from __future__ import annotations

import click

from config.settings import load_settings

from .group import cli, echo_table, fail, fmt_time, open_lake


@cli.group()
def samples() -> None:
    """Exclude samples from the data set (every filter, snapshot and export leaves them out) and restore them."""


@samples.command("exclude")
@click.argument("sample_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--reason", required=True, help="Why they are excluded (kept with them; required).")
def samples_exclude(sample_ids, reason) -> None:
    """Exclude samples by id. Snapshots made from now on leave them out; older snapshots keep them."""
    from db.lake import exclusions

    try:
        n = exclusions.exclude(open_lake(), sample_ids, reason=reason, by=load_settings().user)
    except exclusions.ExclusionError as exc:
        fail(str(exc))
    already = len(set(sample_ids)) - n
    click.echo(f"excluded {n} sample(s)" + (f"; {already} already excluded" if already else "") + " (vitpro samples excluded lists them)")


@samples.command("restore")
@click.argument("sample_ids", nargs=-1, required=True, metavar="ID...")
def samples_restore(sample_ids) -> None:
    """Put excluded samples back into the data set (the exclusion stays in their history)."""
    from db.lake import exclusions

    try:
        n = exclusions.restore(open_lake(), sample_ids, by=load_settings().user)
    except exclusions.ExclusionError as exc:
        fail(str(exc))
    skipped = len(set(sample_ids)) - n
    click.echo(f"restored {n} sample(s)" + (f"; {skipped} were not excluded" if skipped else ""))


@samples.command("excluded")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
def samples_excluded(limit, offset) -> None:
    """The excluded samples, latest first, with reason, who and when."""
    from db.lake import exclusions

    lake = open_lake()
    total = exclusions.count(lake)
    if not total:
        click.echo("no sample is excluded")
        return
    rows = exclusions.list_excluded(lake, limit=limit, offset=offset)
    echo_table([(r["sample_id"], r["reason"], r["by"], fmt_time(r["at"])) for r in rows], ("sample", "reason", "by", "excluded (UTC)"))
    click.echo(f"{total} excluded in all" + (f"; showing {offset + 1}-{offset + len(rows)}" if len(rows) < total else ""))
