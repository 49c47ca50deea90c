"""``vitpro filter``, ``vitpro pilot`` and ``vitpro snapshot``: what a curator decides, from the terminal.

The engine lives in curation/ (filters, pilot statistics, export formats) and db/ (saved filters, pilots,
snapshots); these commands only read options, call it and print. Registered on the main group
(vitpro/commands/group.py).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import click

from config.settings import load_settings
from curation.pilot_stats import AUC_CI_METHOD, MIN_MEANINGFUL, PAPER_RELATIVE_IMPROVEMENT  # the paper's +36%
from db.blobs import open_blobs
from db.objects import is_remote, join
from jobs.registry import choices

from .group import cli, echo_table, fail, open_engine, open_lake, run_job


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _num(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


# ---- filters ------------------------------------------------------------------------------------------
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
            click.echo(f"  threshold of {described}: " + ", ".join(f"{t} {_num(v)}" for t, v in value.items()))
        else:
            click.echo(f"  threshold of {described}: {_num(value)}")
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
            click.echo(f"{cond.metric} ({_num(rows[0][0])} .. {_num(rows[-1][0] + width)}), {bins} bins, max {max(counts)} per bin:")
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
    from db import saved_filters

    config = _config_from_options(where, models, per_task, keep_missing, selection, segment, config_file)
    table, report = _evaluate(config)
    config = table.resolve(config)  # each metric's model named: what is shown and saved
    _print_report(name, config, table, report, hist=hist)
    if dry_run:
        click.echo("dry run: nothing saved")
        return
    replaced = saved_filters.save(open_engine(), name, config.to_dict(), load_settings().user)
    click.echo(f"{'replaced' if replaced else 'saved'} filter {name!r}; `vitpro snapshot create NAME --filter {name}` freezes what it keeps")


def _load_filter(name):
    from curation.filters import FilterConfig, FilterError
    from db import saved_filters

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
    row, config = _load_filter(name)
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
    from db import saved_filters

    rows = saved_filters.list_all(open_engine())
    if not rows:
        click.echo("no saved filters yet: vitpro filter save NAME --where 'vis_attn >= p25'")
        return
    echo_table([(r.name, "; ".join(FilterConfig.from_dict(r.config).describe()), r.created_by, f"{r.updated_at:%Y-%m-%d %H:%M}") for r in rows],
                ("name", "conditions", "by", "changed"))


@filter_group.command("delete")
@click.argument("name")
def filter_delete(name) -> None:
    """Delete a saved filter (snapshots made with it keep their own copy)."""
    from db import saved_filters

    try:
        saved_filters.delete(open_engine(), name)
    except saved_filters.UnknownFilter as exc:
        fail(str(exc.args[0]))
    click.echo(f"deleted filter {name!r}")


# ---- pilot ------------------------------------------------------------------------------------------
@cli.group()
def pilot() -> None:
    """The human pilot: label N samples grounded / not grounded, then measure the scores against them."""


def _pick_model(lake, metric, segment, given, *, required: bool):
    from curation.filters import stored_models

    models = stored_models(lake, metric, segment=segment, scored_only=True)
    if given:
        if given not in models:
            fail(f"no {metric} scores from {given!r}" + (f"; there are: {', '.join(models)}" if models else ""))
        return given
    if len(models) == 1:
        return models[0]
    if not models:
        if required:
            fail(f"no {metric} scores stored" + (f" for segment {segment!r}" if segment else "") + ": run `vitpro score grounding` first")
        return None
    fail(f"{metric} comes from {len(models)} models; name one with --{'vis' if metric == 'vis_attn' else 'clip'}-model: {', '.join(models)}")


def _get_pilot(name):
    from db import pilots

    try:
        return pilots.get(open_engine(), name)
    except pilots.PilotError as exc:
        fail(str(exc))


@pilot.command("create")
@click.argument("name")
@click.option("--size", type=click.IntRange(2, 100_000), default=200, show_default=True, help="Samples to draw (the paper: 200).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vis-model", help="VisAttnScore model id (default: the only one stored).")
@click.option("--clip-model", help="CLIPScore model id (default: the only one stored).")
@click.option("--segment", type=click.Choice(["answer", "question", "text"]), default="answer", show_default=True)
@click.option("--selection", help="Draw only from this named selection.")
def pilot_create(name, size, seed, vis_model, clip_model, segment, selection) -> None:
    """Draw a pilot: N scored samples spread evenly over tasks and VisAttnScore deciles, fixed by the seed."""
    from collections import Counter

    from db import pilots

    lake = open_lake()
    vis_model = _pick_model(lake, "vis_attn", segment, vis_model, required=True)
    clip_model = _pick_model(lake, "clip_score", "", clip_model, required=False)
    try:
        rows = pilots.draw_and_create(lake, open_engine(), name=name, size=size, seed=seed, vis_model=vis_model, clip_model=clip_model,
                                      segment=segment, selection=selection, created_by=load_settings().user)
    except pilots.PilotError as exc:
        fail(str(exc))
    click.echo(f"pilot {name!r}: {len(rows)} sample(s) (asked for {size}, seed {seed})" + ("" if len(rows) == size else " - every scored sample there is"))
    click.echo("  per task:   " + ", ".join(f"{t} {n}" for t, n in sorted(Counter(r["task"] for r in rows).items())))
    click.echo("  per decile: " + " ".join(f"{d}:{n}" for d, n in sorted(Counter(r["decile"] for r in rows).items())))
    if clip_model is None:
        click.secho("  no CLIPScore stored: the report will measure VisAttnScore alone (vitpro score clip adds it)", fg="yellow")
    click.echo(f"label it: vitpro pilot label {name}   (or import a CSV: vitpro pilot import {name} labels.csv)")


@pilot.command("list")
def pilot_list() -> None:
    """Pilots with how far labelling has come."""
    from db import pilots

    rows = pilots.list_pilots(open_engine())
    if not rows:
        click.echo("no pilots yet: vitpro pilot create NAME")
        return
    echo_table([(n, size, f"{done}", annotators) for n, size, done, annotators in rows], ("name", "size", "labelled", "annotators"))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]")


def _clean(text) -> str:
    """Stored text as it may be printed to a terminal: no escape sequences from customer text."""
    return _CONTROL.sub(" ", str(text or ""))


def _one_line(text) -> str:
    return " ".join(_clean(text).split())


HELP_LINE = "g = grounded, n [word ...] = not grounded (optionally the ungrounded words), s = skip, o = open image(s), b = back, q = quit; '// text' adds a note"


def _parse_answer(line: str):
    """('grounded' | 'not_grounded' | 'skip' | 'open' | 'back' | 'quit' | 'help', words, note)."""
    text, _, note = line.partition("//")
    parts = text.strip().split()
    if not parts:
        return "help", [], None
    head, words = parts[0].lower(), [w.strip(",.;") for w in parts[1:] if w.strip(",.;")]
    action = {"g": "grounded", "y": "grounded", "n": "not_grounded", "s": "skip", "o": "open", "b": "back", "q": "quit", "?": "help", "h": "help"}.get(head)
    if action is None:
        return "help", [], None
    return action, words, (note.strip() or None)


@pilot.command("label")
@click.argument("name")
@click.option("--annotator", default=None, help="Your name (default: VITPRO_USER or the login name).")
@click.option("--open", "open_images", is_flag=True, help="Open each sample's image(s) in the default viewer.")
@click.option("--redo", is_flag=True, help="Go through samples you already labelled too.")
def pilot_label(name, annotator, open_images, redo) -> None:
    """Label the pilot in the terminal: the question, answer, scores, OCR text and image paths, one sample at a time.
    Every answer is saved at once; run it again to resume where you stopped."""
    from db import pilots

    s = load_settings()
    annotator = annotator or s.user
    engine = open_engine()
    lake = open_lake()
    p = _get_pilot(name)
    chosen = pilots.samples(engine, p.id)
    done = {lab.sample_id: lab for lab in pilots.labels(engine, p.id, annotator)}
    queue = [x for x in chosen if redo or x.sample_id not in done]
    if not queue:
        click.echo(f"all {len(chosen)} sample(s) of {name!r} are labelled by {annotator} (--redo goes through them again)")
        return
    details = pilots.sample_details(lake, [x.sample_id for x in queue], vis_model=p.config.get("vis_model"), segment=p.config.get("segment", "answer"), blob_root=open_blobs(s))
    click.echo(f"pilot {name!r}: {len(done)} of {len(chosen)} labelled by {annotator}; {len(queue)} to go")
    click.echo(HELP_LINE)
    k = 0
    labelled_now = 0
    while 0 <= k < len(queue):
        x = queue[k]
        d = details.get(x.sample_id, {})
        click.echo()
        click.secho(f"[{k + 1}/{len(queue)}] {x.sample_id[:16]}  task {x.task}  VisAttnScore decile {x.decile}", bold=True)
        click.echo(f"  item      {_one_line(d.get('title'))[:160]}" + (f"  ({_clean(d.get('category'))})" if d.get("category") else ""))
        click.echo(f"  question  {_clean(d.get('question'))}")
        click.echo(f"  answer    {_clean(d.get('answer'))}")
        click.echo(f"  scores    VisAttnScore {_num(x.vis_attn)}   CLIPScore {_num(x.clip_score)}")
        for n, path in enumerate(d.get("images", []), start=1):
            click.echo(f"  image [{n}] {path}")
        texts = [t for t in d.get("ocr", []) if t]
        if texts:
            click.echo(f"  OCR       {_one_line(' | '.join(texts))[:200]}")
        if d.get("weakest"):
            click.echo("  least looked-at words: " + ", ".join(f"{_clean(w)} ({v:.3g})" for w, v in d["weakest"]))
        if x.sample_id in done:
            prev = done[x.sample_id]
            click.echo(f"  your label: {prev.label}" + (f" {' '.join(prev.ungrounded_words)}" if prev.ungrounded_words else ""))
        if open_images:
            for path in d.get("images", []):
                click.launch(path)
        line = sys.stdin.readline()
        if not line:  # end of input: everything answered so far is saved
            break
        action, words, note = _parse_answer(line)
        if action == "quit":
            break
        if action == "help":
            click.echo(HELP_LINE)
            continue
        if action == "open":
            for path in d.get("images", []):
                click.launch(path)
            continue
        if action == "back":
            k = max(0, k - 1)
            continue
        pilots.set_label(engine, p.id, x.sample_id, annotator, action, words if action == "not_grounded" else [], note)
        done[x.sample_id] = SimpleNamespace(label=action, ungrounded_words=words if action == "not_grounded" else [])
        labelled_now += 1
        k += 1
    total_done = len(pilots.labels(engine, p.id, annotator))
    click.echo(f"\n{labelled_now} label(s) saved; {total_done} of {len(chosen)} labelled by {annotator}. "
               + ("Resume with the same command." if total_done < len(chosen) else f"Done: vitpro pilot report {name}"))


@pilot.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--annotator", help="Annotator for rows without one.")
def pilot_import(name, file, annotator) -> None:
    """Import labels from CSV (columns sample_id, label, optional annotator, ungrounded_words as a JSON list, note).
    One bad row refuses the whole file and nothing changes; rows with the label left blank are left out."""
    from db import pilots

    p = _get_pilot(name)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    try:
        result = pilots.import_csv(open_engine(), p, text, default_annotator=annotator)
    except pilots.PilotError as exc:
        fail(str(exc))
    click.echo(f"imported {result.written} label(s) from {', '.join(result.annotators) or 'no one'} into pilot {name!r}"
               + (f"; {result.blank} row(s) with no label left out" if result.blank else ""))


@pilot.command("export")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="CSV file (default: print).")
def pilot_export(name, out) -> None:
    """Every annotator's labels as CSV (the import format). Before any label: every sample id with the label
    left blank, to label in a spreadsheet and bring back with `vitpro pilot import`."""
    from db import pilots

    engine = open_engine()
    p = _get_pilot(name)
    text = pilots.export_csv(engine, p)
    rows = max(0, text.count(chr(10)) - 1)
    template = not pilots.labels(engine, p.id)
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {rows} sample id(s) with blank labels to {out}" if template else f"wrote {rows} label(s) to {out}", err=True)
    else:
        click.echo(text, nl=False)
    if template:
        click.echo(f"no labels yet: fill in label ({', '.join(pilots.LABEL_VALUES)}) and annotator, then "
                   f"vitpro pilot import {name} {out or 'FILE'} (blank rows are left out)", err=True)


@pilot.command("report")
@click.argument("name")
@click.option("--filter", "filter_name", help="A saved filter: accuracy of its current thresholds too (default: the only saved filter, if there is one).")
@click.option("--roc", "roc_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the ROC curves as an SVG file.")
@click.option("--json", "as_json", is_flag=True)
def pilot_report(name, filter_name, roc_path, as_json) -> None:
    """How VisAttnScore and CLIPScore agree with the human labels: accuracy, ROC/AUC, best thresholds, kappa."""
    from dataclasses import asdict

    from curation import pilot_results
    from curation.filters import FilterError
    from curation.svg_plots import roc_svg
    from db import saved_filters

    _get_pilot(name)
    try:
        found = pilot_results.results(open_lake(), open_engine(), name, filter_name)
    except (FilterError, saved_filters.UnknownFilter) as exc:
        fail(f"filter {filter_name!r}: {exc}")
    if found is None:
        fail(f"pilot {name!r} has no labels yet: vitpro pilot label {name}")
    report, filter_name = found.report, found.filter_name
    words = dict(found.ungrounded_words)
    if roc_path and report.scores:
        curves = {r.name: (r.roc["fpr"], r.roc["tpr"], r.auc) for r in report.scores.values()}
        roc_path.write_text(roc_svg(curves, title=f"pilot {name}: {report.labelled} labelled samples"), encoding="utf-8")
    if as_json:
        click.echo(json.dumps({"pilot": name, "filter": filter_name, **asdict(report), "ungrounded_words": found.ungrounded_words}, indent=2))
        return
    click.secho(f"pilot {name!r}: {found.samples} sample(s), {report.labelled} with a label "
                f"({report.grounded} grounded, {report.not_grounded} not grounded), annotators: {', '.join(report.annotators)}", bold=True)
    click.echo(f"  {report.settled} settled by an adjudicator, {report.without_majority} without a majority (left out"
               + (f": vitpro pilot disagreements {name}" if report.without_majority else "") + ")"
               + (f", {report.skipped_only} skipped by everyone" if report.skipped_only else ""))
    if report.labelled < MIN_MEANINGFUL:
        click.secho(f"only {report.labelled} labelled sample(s): results at n={report.labelled} are not meaningful "
                    f"(label at least {MIN_MEANINGFUL}; the paper labels 200)", fg="yellow")
    if not report.scores:
        click.secho("the labels need both grounded and not-grounded samples before a score can be measured against them", fg="yellow")
    rows = []
    for r in report.scores.values():
        rows.append((r.name, r.n, f"{r.auc:.3f} [{_interval(r.auc_ci)}]", f"{r.best_accuracy:.3f} [{_interval(r.best_accuracy_ci)}] at {r.best_accuracy_threshold:.4g}",
                     f"{r.youden_j:.3f} at {r.youden_threshold:.4g}",
                     "" if r.current_accuracy is None else f"{r.current_accuracy:.3f} [{_interval(r.current_accuracy_ci)}] ({r.current_threshold})"))
    if rows:
        echo_table(rows, ("score", "n", "AUC [95% CI]", "best accuracy [95% CI]", "Youden's J",
                          "accuracy at " + (f"filter {filter_name!r}" if filter_name else "current (--filter)")))
        click.echo(f"95% intervals: Wilson for accuracies, {AUC_CI_METHOD} (1982) for AUC; the best accuracy's threshold is fitted on these labels (optimistic)")
    if report.relative_improvement is not None:
        line = f"VisAttnScore over CLIPScore: {report.relative_improvement:+.1%} relative accuracy at the best thresholds"
        if report.relative_improvement_current is not None:
            line += f", {report.relative_improvement_current:+.1%} at the filter's"
        click.echo(line + f" (the paper reports {PAPER_RELATIVE_IMPROVEMENT:+.0%})")
    for pair, kappa in report.kappa.items():
        a, b = pair.split("|")
        click.echo(f"Cohen's kappa {a} / {b}: {kappa:.3f}")
    if len(report.annotators) < 2:
        click.echo("one annotator so far: kappa needs a second (vitpro pilot label NAME --annotator OTHER)")
    if words:
        click.echo("words marked ungrounded most often: " + ", ".join(f"{w} ({n})" for w, n in found.ungrounded_words[:10]))
    if roc_path and report.scores:
        click.echo(f"ROC curves: {roc_path}")


def _interval(pair) -> str:
    return "" if pair is None else f"{pair[0]:.3f}-{pair[1]:.3f}"


@pilot.command("disagreements")
@click.argument("name")
@click.option("--all", "every", is_flag=True, help="Also samples with a majority that are not unanimous.")
def pilot_disagreements(name, every) -> None:
    """Samples the annotators disagree on (by default those split evenly, which the report leaves out until settled)."""
    from curation import pilot_results

    p = _get_pilot(name)
    found = [d for d in pilot_results.disagreements(open_engine(), p.id) if every or d.majority is None]
    if not found:
        click.echo(f"pilot {name!r}: no sample " + ("with disagreeing annotators" if every else "without a majority (--all: any disagreement)"))
        return
    echo_table([(d.position + 1, d.sample_id, "; ".join(f"{a}: {r.label}" + (f" ({', '.join(r.ungrounded_words)})" if r.ungrounded_words else "")
                                                          for a, r in sorted(d.labels.items())),
                  d.majority or "none", d.settled.label if d.settled else "") for d in found], ("#", "sample", "labels", "majority", "settled"))
    click.echo(f"settle one: vitpro pilot adjudicate {name} SAMPLE_ID grounded|not_grounded [--note TEXT]")


@pilot.command("adjudicate")
@click.argument("name")
@click.argument("sample_id")
@click.argument("verdict", type=click.Choice(["grounded", "not_grounded"]))
@click.option("--note", help="Why (kept with the verdict).")
def pilot_adjudicate(name, sample_id, verdict, note) -> None:
    """Settle a sample the annotators disagree on; the verdict replaces their labels in the report. Again to change it."""
    from db import pilots

    p = _get_pilot(name)
    engine = open_engine()
    before = pilots.adjudications(engine, p.id).get(sample_id)
    try:
        pilots.adjudicate(engine, p.id, sample_id, verdict, load_settings().user, note)
    except pilots.PilotError as exc:
        fail(f"{exc} {name!r}")
    click.echo(f"pilot {name!r}: sample {sample_id} settled as {verdict}" + (f" (was {before.label})" if before else ""))


# ---- snapshots and exports ----------------------------------------------------------------------------
@cli.group()
def snapshot() -> None:
    """Snapshots: a saved filter frozen at one DuckLake version; export them for training."""


def _get_snapshot(name):
    from curation import snapshots

    try:
        return snapshots.get(open_engine(), name)
    except snapshots.SnapshotError as exc:
        fail(str(exc))


@snapshot.command("create")
@click.argument("name")
@click.option("--filter", "filter_name", required=True, help="The saved filter to freeze.")
def snapshot_create(name, filter_name) -> None:
    """Freeze what a saved filter keeps now: DuckLake version, filter, counts, model and prompt ids, author."""
    from curation import snapshots
    from curation.filters import FilterError

    _, config = _load_filter(filter_name)
    try:
        snap = snapshots.create(open_lake(), open_engine(), name=name, filter_name=filter_name, config=config, created_by=load_settings().user)
    except (snapshots.SnapshotError, FilterError) as exc:
        fail(str(exc))
    counts = snap.counts
    click.echo(f"snapshot {name!r}: {counts['kept']} sample(s) kept of {counts['kept'] + counts['dropped']} at DuckLake version {snap.lake_version}")
    click.echo("  per task: " + ", ".join(f"{t} {c['kept']}" for t, c in counts["per_task"].items() if c["kept"]))
    click.echo(f"export it: vitpro snapshot export {name} --format llava --format llamafactory --out exports/{name}")


@snapshot.command("list")
def snapshot_list() -> None:
    """Snapshots, oldest first."""
    from curation import snapshots

    rows = snapshots.list_all(open_engine())
    if not rows:
        click.echo("no snapshots yet: vitpro snapshot create NAME --filter FILTER")
        return
    echo_table([(r.name, r.filter_name or "", r.lake_version, r.counts.get("kept"), r.created_by, f"{r.created_at:%Y-%m-%d %H:%M}") for r in rows],
                ("name", "filter", "version", "samples", "by", "created"))


@snapshot.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def snapshot_show(name, as_json) -> None:
    """Everything a snapshot records."""
    from curation.filters import FilterConfig

    snap = _get_snapshot(name)
    record = {"name": snap.name, "filter": snap.filter_name, "filter_config": snap.filter_config, "lake_version": snap.lake_version,
              "counts": snap.counts, "model_ids": snap.model_ids, "prompt_versions": snap.prompt_versions,
              "created_by": snap.created_by, "created_at": str(snap.created_at)}
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    click.secho(f"snapshot {snap.name!r}", bold=True)
    click.echo(f"  made by {snap.created_by} at {snap.created_at:%Y-%m-%d %H:%M}, DuckLake version {snap.lake_version}, filter {snap.filter_name!r}")
    for line in FilterConfig.from_dict(snap.filter_config).describe():
        click.echo(f"  where {line}")
    click.echo(f"  {snap.counts['kept']} kept, {snap.counts['dropped']} dropped; sha256 of the ids {snap.counts['kept_sha256'][:16]}…")
    echo_table([(t, c["kept"], c["dropped"]) for t, c in snap.counts["per_task"].items()], ("task", "kept", "dropped"))
    for m in snap.model_ids:
        click.echo(f"  model {m['metric']}: {m['model_id']}" + (f" [{m['segment']}]" if m.get("segment") else ""))
    for pr in snap.prompt_versions:
        click.echo(f"  prompts {pr['backend']}/{pr['model_id'] or '-'} version {pr['prompt_version']}: {pr['samples']} sample(s)")


@snapshot.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
def snapshot_diff(a, b, as_json) -> None:
    """Samples added and removed per task from snapshot A to snapshot B."""
    from curation import snapshots

    left, right = _get_snapshot(a), _get_snapshot(b)
    try:
        result = snapshots.diff(open_lake(), left, right)
    except snapshots.SnapshotError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{a} (version {left.lake_version}) -> {b} (version {right.lake_version})")
    rows = [(t, f"+{c['added']}", f"-{c['removed']}", c["unchanged"]) for t, c in result.items()]
    totals = [sum(c[k] for c in result.values()) for k in ("added", "removed", "unchanged")]
    echo_table(rows + [("total", f"+{totals[0]}", f"-{totals[1]}", totals[2])], ("task", "added", "removed", "unchanged"))


@snapshot.command("backfill")
def snapshot_backfill() -> None:
    """List the samples of every snapshot made before snapshots listed them (each rebuilt from its filter
    once, checked against its recorded hash). Safe to run again; a snapshot read first is listed then anyway."""
    from curation import snapshots

    def report(snap, result) -> None:
        if isinstance(result, snapshots.SnapshotError):
            click.echo(f"snapshot {snap.name!r}: {result}", err=True)
        else:
            click.echo(f"snapshot {snap.name!r}: listed {result} sample(s) of DuckLake version {snap.lake_version}")

    try:
        done = snapshots.backfill_members(open_lake(), open_engine(), progress=report)
    except snapshots.SnapshotError as exc:
        fail(str(exc))
    click.echo(f"{len(done)} snapshot(s) listed" if done else "every snapshot lists its samples already")


@snapshot.command("export")
@click.argument("name")
@click.option("--format", "formats", multiple=True, required=True, type=click.Choice([*choices("export", "formats"), "all"]), help="Repeat for several; 'all' for every format.")
@click.option("--out", help="Folder or s3://bucket/prefix; each format goes to OUT/<format>/ (default: $VITPRO_OUT_PATH/exports/NAME, "
                             "$VITPRO_OUT_PATH being $VITPRO_HOME unless set).")
@click.option("--ocr", is_flag=True, help="Put each image's OCR text in the prompt ('OCR Tokens: ...').")
@click.option("--link", is_flag=True, help="Hard-link images instead of copying them (same file system).")
@click.option("--force", is_flag=True, help="Replace a non-empty OUT/<format>/ from another export.")
@click.option("--dataset-name", help="Name of the LLaMA-Factory dataset_info.json entry (default: the snapshot's name).")
@click.option("--base-model", envvar="VITPRO_BASE_MODEL", help="The model you will tune on the export, a hub id or a checkpoint folder: "
              "LLaMA-Factory's train_lora.yaml and the ms-swift command are written for it (default: Qwen/Qwen2.5-VL-7B-Instruct).")
@click.option("--family", help="The base model's family (see `vitpro models families`), when its id does not tell it.")
@click.option("--absolute-paths", is_flag=True, help="Name each image by its absolute path in OUT/<format>/ (for a trainer started elsewhere; "
              "moving the folder breaks them). Default: paths relative to OUT/<format>/.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def snapshot_export(name, formats, out, ocr, link, force, dataset_name, base_model, family, absolute_paths, wait, local) -> None:
    """Export a snapshot (a job on the cpu queue): validated records, images, manifest with sha256 of every
    file and how the image paths resolve; beside the LLaMA-Factory export a ready train_lora.yaml, and in
    the ms-swift manifest the matching `swift sft` command, both with the paper's LoRA settings."""
    from curation.exports import FORMATS, image_paths_note
    from jobs.export import ExportJob

    _get_snapshot(name)
    chosen = list(FORMATS) if "all" in formats else list(dict.fromkeys(formats))
    out = out or load_settings().output("exports", name)
    try:
        params = ExportJob(snapshot=name, formats=chosen, out=str(out), ocr=ocr, link=link, force=force, dataset_name=dataset_name,
                           base_model=base_model, family=family, absolute_paths=absolute_paths).params()
    except ValueError as exc:
        fail(str(exc))
    run_job("export", params, wait=wait, local=local)
    for fmt in chosen:
        click.echo(f"{join(params['out'], fmt)}: image paths {image_paths_note(fmt, absolute_paths)}")
    if wait:
        for fmt in chosen:
            click.echo(f"  {fmt:<13} {join(params['out'], fmt)}")
        if not is_remote(params["out"]):
            _echo_trainer_settings(Path(params["out"]), chosen)


def _echo_trainer_settings(out: Path, formats: list[str]) -> None:
    """Where the LLaMA-Factory config is (or why there is none) and the ms-swift command."""
    for fmt in ("llamafactory", "swift"):
        if fmt not in formats:
            continue
        try:
            trainer = json.loads((out / fmt / "manifest.json").read_text()).get("trainer") or {}
        except (OSError, ValueError):
            continue
        if trainer.get("config_file"):
            click.echo(f"LLaMA-Factory ({trainer['family']}, template {trainer['llamafactory_template']}): cd {out / fmt} && llamafactory-cli train {trainer['config_file']}")
        elif trainer.get("note"):
            click.echo(f"LLaMA-Factory: {trainer['note']}")
        if trainer.get("command"):
            click.echo(f"ms-swift ({trainer['family']}): cd {out / fmt} && {trainer['command']}")


@snapshot.command("verify")
@click.argument("folder")
def snapshot_verify(folder) -> None:
    """Check an export folder (or s3:// prefix, copied here first): records valid for the format, every image present, every
    sha256 as in the manifest."""
    import tempfile

    from curation.exports import ExportError, verify_export
    from db import objects

    try:
        if is_remote(folder):
            url = objects.ObjectURL.parse(folder)
            if objects.head(url.as_prefix().child("manifest.json")) is None:
                fail(f"{folder}: no manifest.json there (no export, or one still uploading)")
            with tempfile.TemporaryDirectory(prefix="vitpro-verify-") as tmp:
                objects.download_folder(url, Path(tmp) / "export")
                manifest = verify_export(Path(tmp) / "export")
        elif not Path(folder).is_dir():
            fail(f"{folder}: no such folder")
        else:
            manifest = verify_export(Path(folder))
    except ExportError as exc:
        fail(str(exc))
    except (objects.ObjectStoreError, ValueError) as exc:
        fail(str(exc))
    click.echo(f"{folder}: valid {manifest['format']} export of snapshot {manifest.get('snapshot')!r}: {manifest['records']} record(s), "
               f"{manifest['images']} image(s), {len(manifest['files'])} file(s) match the manifest")


@snapshot.command("rename")
@click.argument("old")
@click.argument("new")
def snapshot_rename(old, new) -> None:
    """Rename a snapshot; its export folder $VITPRO_HOME/exports/OLD moves to .../NEW with it (the
    manifests inside keep the name they were exported under)."""
    from curation import snapshots

    exports_root = load_settings().home / "exports"
    try:
        snap = snapshots.rename(open_engine(), old, new, exports_root=exports_root)
    except snapshots.SnapshotError as exc:
        fail(str(exc))
    moved = (exports_root / snap.name).exists()
    click.echo(f"snapshot {old!r} is now {snap.name!r}" + (f"; its exports are in {exports_root / snap.name}" if moved else ""))
