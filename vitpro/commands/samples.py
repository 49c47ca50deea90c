"""``vitpro samples exclude|restore|excluded`` (take samples out of the data set, with a reason, and put
them back): by id, or every sample a query matches (the filter grammar, or a saved filter's kept or dropped
samples).

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


def _query_ids(where, models, keep_missing, filter_name, dropped) -> tuple[list[str], str]:
    """The samples a query names, and how to say it: the samples the conditions ``where`` keep (the filter
    grammar), or the samples the saved filter ``filter_name`` keeps (drops, with ``dropped``)."""
    from .filters import _config_from_options, _evaluate, load_filter

    if filter_name:
        if where or models:
            fail("give either --filter NAME or --where conditions, not both")
        _, config = load_filter(filter_name)
        said = f"{'dropped' if dropped else 'kept'} by filter {filter_name!r}"
    else:
        config = _config_from_options(where, models, False, keep_missing, None, None, None)
        said = "matching " + " and ".join(c.describe() for c in config.conditions)
    table, _ = _evaluate(config)
    return (table.dropped_ids(config) if dropped else table.kept_ids(config)), said


def _by_query(sample_ids, where, filter_name, dropped) -> bool:
    """Whether the command names its samples by a query (else by ids); a mix or neither ends it."""
    by_query = bool(where or filter_name)
    if dropped and not filter_name:
        fail("--dropped goes with --filter NAME (the samples a saved filter drops)")
    if by_query and sample_ids:
        fail("give sample ids or a query (--where / --filter), not both")
    if not by_query and not sample_ids:
        fail("name the samples: their ids, --where CONDITION, or --filter NAME [--dropped]")
    return by_query


def _confirmed(where, models, keep_missing, filter_name, dropped, *, yes: bool, dry_run: bool, question) -> list[str] | None:
    """The samples the query names, after saying how many and (unless ``yes``) asking ``question(n)`` (n:
    the count as printed); None when there is nothing to do (none matched, or a dry run)."""
    sample_ids, said = _query_ids(where, models, keep_missing, filter_name, dropped)
    click.echo(f"{len(sample_ids):,} sample(s) {said} (excluded ones aside)")
    if dry_run or not sample_ids:
        return None
    if not yes:
        click.confirm(question(f"{len(sample_ids):,}"), abort=True)
    return sample_ids


@samples.command("exclude")
@click.argument("sample_ids", nargs=-1, metavar="[ID...]")
@click.option("--reason", required=True, help="Why they are excluded (kept with them; required).")
@click.option("--where", "where", multiple=True, metavar="COND", help="Exclude every sample these conditions match, in the filter grammar "
              "('task in counting', 'vis_attn < p10', 'ocr_chars >= 200'). Repeat: all must hold.")
@click.option("--model", "models", multiple=True, metavar="METRIC=ID", help="Which model's scores a --where metric uses, where several scored it.")
@click.option("--missing-matches", "keep_missing", is_flag=True, help="With --where: a sample without the score matches too.")
@click.option("--filter", "filter_name", metavar="NAME", help="Exclude what the saved filter keeps, or with --dropped what it drops.")
@click.option("--dropped", is_flag=True, help="With --filter: the samples the filter drops.")
@click.option("--yes", is_flag=True, help="Do not ask to confirm the count (scripts).")
@click.option("--dry-run", is_flag=True, help="Say how many samples the query matches, and exclude nothing.")
def samples_exclude(sample_ids, reason, where, models, keep_missing, filter_name, dropped, yes, dry_run) -> None:
    """Exclude samples by id, or every sample a query matches (--where conditions, or a saved filter's kept
    or --dropped samples; the count is confirmed first). Snapshots made from now on leave them out; older
    snapshots keep them. Samples excluded already are left as they are."""
    from db.lake import exclusions

    if _by_query(sample_ids, where, filter_name, dropped):
        sample_ids = _confirmed(where, models, keep_missing, filter_name, dropped, yes=yes, dry_run=dry_run,
                                question=lambda n: f"exclude these {n} sample(s) with reason {reason!r}?")
        if sample_ids is None:
            return
    elif dry_run:
        click.echo(f"{len(set(sample_ids))} sample id(s) given; nothing excluded (--dry-run)")
        return
    try:
        n = exclusions.exclude(open_lake(), sample_ids, reason=reason, by=load_settings().user)
    except exclusions.ExclusionError as exc:
        fail(str(exc))
    already = len(set(sample_ids)) - n
    click.echo(f"excluded {n:,} sample(s)" + (f"; {already} already excluded" if already else "") + " (vitpro samples excluded lists them)")


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


def _tag_command(on: bool):
    verb = "tag" if on else "untag"

    @samples.command(verb, help=f"{'Put' if on else 'Take'} free tags {'on' if on else 'off'} samples, by id or by a query (as `samples exclude`). "
                     "A filter keeps tagged samples with 'tag in a,b' (or leaves them out with 'tag not in a,b').")
    @click.argument("sample_ids", nargs=-1, metavar="[ID...]")
    @click.option("--tag", "tag_names", multiple=True, required=True, metavar="TAG",
                  help="A tag (letters, digits, _ - . :); repeat, or separate with commas.")
    @click.option("--where", "where", multiple=True, metavar="COND", help="Every sample these conditions match (the filter grammar); repeat: all must hold.")
    @click.option("--model", "models", multiple=True, metavar="METRIC=ID", help="Which model's scores a --where metric uses, where several scored it.")
    @click.option("--missing-matches", "keep_missing", is_flag=True, help="With --where: a sample without the score matches too.")
    @click.option("--filter", "filter_name", metavar="NAME", help="What the saved filter keeps, or with --dropped what it drops.")
    @click.option("--dropped", is_flag=True, help="With --filter: the samples the filter drops.")
    @click.option("--yes", is_flag=True, help="Do not ask to confirm the count (scripts).")
    def command(sample_ids, tag_names, where, models, keep_missing, filter_name, dropped, yes) -> None:
        from db.lake import tags

        by_query = _by_query(sample_ids, where, filter_name, dropped)
        try:
            names = tags.clean_tags(tag_names)
        except tags.TagError as exc:
            fail(str(exc))
        if by_query:
            sample_ids = _confirmed(where, models, keep_missing, filter_name, dropped, yes=yes, dry_run=False,
                                    question=lambda n: f"{verb} these {n} sample(s) with {', '.join(names)}?")
            if sample_ids is None:
                return
        try:
            n = (tags.add if on else tags.remove)(open_lake(), sample_ids, names, by=load_settings().user)
        except tags.TagError as exc:
            fail(str(exc))
        click.echo(f"{'tagged' if on else 'untagged'} {n:,} (sample, tag) pair(s)" + (" (the rest were already)" if n < len(set(sample_ids)) * len(names) else ""))

    return command


samples_tag = _tag_command(True)
samples_untag = _tag_command(False)


@samples.command("tags")
def samples_tags() -> None:
    """Every tag in use, with its number of samples."""
    from db.lake import tags

    rows = tags.counts(open_lake())
    if not rows:
        click.echo("no sample is tagged: vitpro samples tag ID... --tag NAME")
        return
    echo_table(rows, ("tag", "samples"))
