"""``vitpro filter``: thresholds over stored scores and fields, saved by name, and what they keep.

The engine is curation/filters/ (and db/ for saved filters); these commands read options, call it and print.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from config.settings import load_settings

from .group import cli, echo_table, fail, open_engine, open_lake


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def fmt_number(value) -> str:
    """A score or threshold as printed (4 significant digits; '' for none): the pilot's lines use it too."""
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


@cli.group("filter")
def filter_group() -> None:
    """Filters: thresholds over stored scores and fields, saved by name (nothing is recomputed)."""


def _config_from_options(where, models, per_task, keep_missing, selection, segment, config_file):
    from curation.filters import Condition, FilterConfig, FilterError

    conditions = []
    if config_file:
        import yaml

        try:
            data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            fail(f"cannot read {config_file}: {exc}")
        if not isinstance(data, dict):
            fail(f"{config_file}: expected a mapping with 'where' (a list of conditions)")
        where = list(data.get("where") or []) + list(where)
        selection = selection or data.get("selection")
        segment = segment or data.get("segment")
        models = [f"{k}={v}" for k, v in (data.get("models") or {}).items()] + list(models)
    if not where:
        fail("give at least one condition, e.g. --where 'vis_attn >= p25' --where 'clip_score >= p20'")
    by_metric = {}
    for text in models:
        metric, sep, model_id = text.partition("=")
        if not sep or not metric.strip() or not model_id.strip():
            fail(f"--model takes METRIC=MODEL_ID, not {text!r}")
        by_metric[metric.strip()] = model_id.strip()
    try:
        for text in where:
            cond = Condition.parse(str(text))
            if per_task and cond.percentile is not None:
                cond.per_task = True
            if keep_missing and not cond.is_field:
                cond.keep_missing = True
            if cond.metric in by_metric:
                cond.model_id = by_metric[cond.metric]
            conditions.append(cond)
    except FilterError as exc:
        fail(str(exc))
    unused = set(by_metric) - {c.metric for c in conditions}
    if unused:
        fail(f"--model names {', '.join(sorted(unused))}, which no condition uses")
    return FilterConfig(conditions, selection, segment or "answer")


def _evaluate(config, version=None):
    """(stats table, report); a filter that cannot be applied ends the command with its message."""
    import duckdb

    from curation.filters import FilterError, stats_for

    lake = open_lake()
    if version is not None and version > lake.current_version():
        fail(f"the store is at DuckLake version {lake.current_version()}; there is no version {version} yet")
    try:
        table = stats_for(lake, config, version=version)
        return table, table.report(config)
    except FilterError as exc:
        fail(str(exc))
    except duckdb.Error as exc:
        if version is None:
            raise
        fail(f"DuckLake version {version} cannot be read (was its history expired?): {exc}")


def _print_report(name, config, table, report, *, hist: bool, bins: int = 50) -> None:
    from curation.filters import TEXT_FIELDS
    from curation.svg_plots import sparkline

    total = report.kept + report.dropped
    click.secho(f"filter {name!r}" if name else "filter (not saved)", bold=True)
    for cond in config.conditions:
        click.echo(f"  {cond.describe()}" + (f"   [segment {cond.segment}]" if cond.segment else ""))
    if config.selection:
        click.echo(f"  only selection {config.selection!r}")
    for described, value in report.thresholds.items():
        if isinstance(value, dict):
            click.echo(f"  threshold of {described}: " + ", ".join(f"{t} {fmt_number(v)}" for t, v in value.items()))
        else:
            click.echo(f"  threshold of {described}: {fmt_number(value)}")
    click.secho(f"kept {report.kept} of {total} sample(s) ({_pct(report.kept, total)}), dropped {report.dropped}", fg="green" if report.kept else "yellow")
    if report.per_task:
        click.echo("per task:")
        echo_table([(t, k, d, _pct(k, k + d)) for t, k, d in report.per_task], ("task", "kept", "dropped", "kept %"))
    if report.per_category:
        click.echo("per category:")
        shown = report.per_category[:25]
        echo_table([(c, k, d, _pct(k, k + d)) for c, k, d in shown], ("category", "kept", "dropped", "kept %"))
        if len(report.per_category) > len(shown):
            click.echo(f"... {len(report.per_category) - len(shown)} more categories (--json shows all)")
    if hist:
        for cond in config.conditions:
            if cond.metric in TEXT_FIELDS:
                continue
            rows = table.histogram(cond, config, bins)
            if not rows:
                continue
            counts, kept = [n for _, n, _ in rows], [k for _, _, k in rows]
            width = rows[1][0] - rows[0][0] if len(rows) > 1 else 0.0
            click.echo(f"{cond.metric} ({fmt_number(rows[0][0])} .. {fmt_number(rows[-1][0] + width)}), {bins} bins, max {max(counts)} per bin:")
            click.echo(f"  all  |{sparkline(counts)}|")
            # both rows on the scale of "all", so the dropped part shows as the gap
            click.echo(f"  kept |{sparkline(kept, top=max(counts))}|")


@filter_group.command("save")
@click.argument("name")
@click.option("--where", "where", multiple=True, metavar="COND", help="A condition: 'vis_attn >= p25', 'clip_score >= 20', 'ocr_chars >= 5 or missing', "
                   "'task in recognition,matching', 'vis_attn >= p30 per task'. Repeat (all must hold).")
@click.option("--model", "models", multiple=True, metavar="METRIC=ID", help="Which model's scores a metric uses, where several models scored it.")
@click.option("--per-task", is_flag=True, help="Percentiles within each task instead of the whole data set.")
@click.option("--keep-missing", is_flag=True, help="A sample without a score passes that condition (default: it is dropped).")
@click.option("--selection", help="Only the samples of this named selection (vitpro sample --name).")
@click.option("--segment", type=click.Choice(["answer", "question", "text"]), help="VisAttnScore segment (default answer).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="YAML with 'where' (list), optional 'models', 'selection', 'segment'.")
@click.option("--dry-run", is_flag=True, help="Show what it keeps; save nothing.")
@click.option("--hist", is_flag=True, help="Also draw each score's histogram with what is kept.")
def filter_save(name, where, models, per_task, keep_missing, selection, segment, config_file, dry_run, hist) -> None:
    """Save (or replace) a named filter and show what it keeps, overall, per task and per category."""
    from db.app import saved_filters

    config = _config_from_options(where, models, per_task, keep_missing, selection, segment, config_file)
    table, report = _evaluate(config)
    config = table.resolve(config)  # each metric's model named: what is shown and saved
    _print_report(name, config, table, report, hist=hist)
    if dry_run:
        click.echo("dry run: nothing saved")
        return
    replaced = saved_filters.save(open_engine(), name, config.to_dict(), load_settings().user)
    click.echo(f"{'replaced' if replaced else 'saved'} filter {name!r}; `vitpro snapshot create NAME --filter {name}` freezes what it keeps")


def load_filter(name):
    """(saved row, its FilterConfig); a saved filter that is missing or unreadable ends the command (also
    ``vitpro snapshot create``'s)."""
    from curation.filters import FilterConfig, FilterError
    from db.app import saved_filters

    try:
        row = saved_filters.get(open_engine(), name)
        return row, FilterConfig.from_dict(row.config)
    except saved_filters.UnknownFilter as exc:
        fail(str(exc.args[0]))
    except (FilterError, TypeError) as exc:
        fail(f"saved filter {name!r} cannot be read: {exc}")


@filter_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option("--hist", is_flag=True, help="Draw each score's histogram (50 bins) with what is kept.")
@click.option("--at-version", type=click.IntRange(0), help="Apply it to an earlier DuckLake version of the store.")
def filter_show(name, as_json, hist, at_version) -> None:
    """What a saved filter keeps now (or at a DuckLake version)."""
    row, config = load_filter(name)
    table, report = _evaluate(config, at_version)
    config = table.resolve(config)
    if as_json:
        out = {"name": name, "config": config.to_dict(), **report.to_dict()}
        if hist:
            out["histograms"] = {c.metric: table.histogram(c, config, 50) for c in config.metrics()}
        click.echo(json.dumps(out, indent=2, default=str))
        return
    _print_report(name, config, table, report, hist=hist)
    click.echo(f"saved by {row.created_by}, last changed {row.updated_at:%Y-%m-%d %H:%M}")


@filter_group.command("list")
def filter_list() -> None:
    """Saved filters."""
    from curation.filters import FilterConfig
    from db.app import saved_filters

    rows = saved_filters.list_all(open_engine())
    if not rows:
        click.echo("no saved filters yet: vitpro filter save NAME --where 'vis_attn >= p25'")
        return
    echo_table([(r.name, "; ".join(FilterConfig.from_dict(r.config).describe()), r.created_by, r.updated_by or r.created_by,
                 f"{r.updated_at:%Y-%m-%d %H:%M}") for r in rows],
                ("name", "conditions", "created by", "last saved by", "changed"))


@filter_group.command("history")
@click.argument("name")
def filter_history(name) -> None:
    """Every save of a filter, oldest first: who changed it to which conditions, and when."""
    from curation.filters import FilterConfig
    from db.app import saved_filters

    load_filter(name)  # an unknown name: said, with the names there are
    rows = saved_filters.history(open_engine(), name)
    if not rows:
        click.echo(f"no history of {name!r}: it was last saved before saves were recorded")
        return
    echo_table([(f"{r.saved_at:%Y-%m-%d %H:%M:%S}", r.saved_by, "; ".join(FilterConfig.from_dict(r.config).describe())) for r in rows],
               ("saved (UTC)", "by", "conditions"))


@filter_group.command("delete")
@click.argument("name")
def filter_delete(name) -> None:
    """Delete a saved filter (snapshots made with it keep their own copy)."""
    from db.app import saved_filters

    try:
        saved_filters.delete(open_engine(), name)
    except saved_filters.UnknownFilter as exc:
        fail(str(exc.args[0]))
    click.echo(f"deleted filter {name!r}")
