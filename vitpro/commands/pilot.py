"""``vitpro pilot``: the human pilot, labelled in the terminal or imported, and how the scores agree with it.

The statistics are curation/pilot_stats.py and curation/pilot_results.py, the pilots db/app/pilots.py; these
commands read options, call them and print.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import click

from config.settings import load_settings
from curation.pilot_stats import AUC_CI_METHOD, MIN_INTERVAL_N, MIN_MEANINGFUL, PAPER_RELATIVE_IMPROVEMENT  # the paper's +36%
from db.storage.blobs import open_blobs
from jobs.calibrate import CalibrateJob

from ..spec_options import job_params, spec_option
from .filters import fmt_number
from .group import cli, echo_table, fail, open_engine, open_lake, run_job


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
    from db.app import pilots

    try:
        return pilots.get(open_engine(), name)
    except pilots.PilotError as exc:
        fail(str(exc))


@pilot.command("calibrate")
@click.argument("name")
@spec_option(CalibrateJob, "signals", comma=True)
@spec_option(CalibrateJob, "folds")
@spec_option(CalibrateJob, "seed")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def pilot_calibrate(name, signals, folds, seed, wait, local) -> None:
    """Fit a logistic regression over the grounding signals on this pilot's labels and write the calibrated
    probability ``grounded_p`` for every sample with the signals (a job on the cpu queue). Its log and result
    give the cross-validated AUC and the weights; cut on it with `vitpro filter save F --where 'grounded_p >= 0.7'`."""
    from db.app import jobs as jobs_db

    _get_pilot(name)  # a mistyped name fails here, not on a worker
    job_id = run_job("calibrate", job_params(CalibrateJob, pilot=name, signals=list(signals), folds=folds, seed=seed), wait=wait, local=local)
    if wait:  # the fit itself (signals, weights, cross-validated AUC) and what was left out, from the job's log
        for entry in jobs_db.log_tail(open_engine(), job_id, 20):
            if "logistic regression" in entry.message or "left out" in entry.message or "labels:" in entry.message:
                click.echo(("warning: " if entry.level == "warning" else "") + entry.message)


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

    from db.app import pilots

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
    from db.app import pilots

    rows = pilots.list_pilots(open_engine())
    if not rows:
        click.echo("no pilots yet: vitpro pilot create NAME")
        return
    echo_table([(n, size, f"{done}", annotators) for n, size, done, annotators in rows], ("name", "samples", "labelled", "annotators"))


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
    from db.app import pilots

    s = load_settings()
    annotator = annotator or s.user
    engine = open_engine()
    lake = open_lake()
    p = _get_pilot(name)
    mine = set(pilots.queue(engine, p.id, annotator))  # the samples assigned to this annotator (all, without assignments)
    chosen = [x for x in pilots.samples(engine, p.id) if x.sample_id in mine]
    if not chosen:
        fail(f"no sample of {name!r} is assigned to {annotator} (vitpro pilot progress {name})")
    done = {lab.sample_id: lab for lab in pilots.labels(engine, p.id, annotator)}
    queue = [x for x in chosen if redo or x.sample_id not in done]
    if not queue:
        click.echo(f"all {len(chosen)} sample(s) of {name!r} are labelled by {annotator} (--redo goes through them again)")
        return
    if (p.config or {}).get("guidelines"):
        click.secho("guidelines:", bold=True)
        for line in p.config["guidelines"].splitlines():
            click.echo(f"  {line}")
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
        click.echo(f"  scores    VisAttnScore {fmt_number(x.vis_attn)}   CLIPScore {fmt_number(x.clip_score)}")
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
    from db.app import pilots

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
    from db.app import pilots

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


@pilot.command("assign")
@click.argument("name")
@click.option("--annotators", required=True, help="Who labels, comma-separated (user names of the web app, or any name for the CLI).")
@click.option("--overlap", type=click.IntRange(1), default=1, show_default=True,
              help="How many of them label each sample (2 or more: agreement can be measured on every sample).")
def pilot_assign(name, annotators, overlap) -> None:
    """Spread a pilot's samples over annotators, each sample to --overlap of them; each then sees only their
    own queue (web app and `pilot label`). Replaces earlier assignments; labels given stay."""
    from db.app import pilots

    p = _get_pilot(name)
    try:
        given = pilots.assign(open_engine(), p.id, annotators.split(","), overlap)
    except pilots.PilotError as exc:
        fail(str(exc))
    click.echo(f"pilot {name!r}: each of {p.size} sample(s) assigned to {overlap} annotator(s): "
               + ", ".join(f"{a} {n}" for a, n in given.items()))


@pilot.command("progress")
@click.argument("name")
def pilot_progress(name) -> None:
    """Each annotator's queue and how much of it is labelled."""
    from db.app import pilots

    p = _get_pilot(name)
    rows = pilots.progress(open_engine(), p.id)
    if not rows:
        click.echo(f"nobody has labelled {name!r} yet, and nobody is assigned (vitpro pilot assign {name} --annotators ...)")
        return
    echo_table([(a, n, done, f"{100 * done / n:.0f}%" if n else "-") for a, n, done in rows], ("annotator", "to label", "labelled", "done"))


@pilot.command("guidelines")
@click.argument("name")
@click.option("--set", "text", help="The guidelines' text (replaces them).")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Read the text from a file (Markdown).")
def pilot_guidelines(name, text, path) -> None:
    """What annotators read before labelling a pilot: shown on the Pilot page and by `pilot label`. Without
    --set or --file, prints them."""
    from db.app import pilots

    p = _get_pilot(name)
    if text is None and path is None:
        click.echo((p.config or {}).get("guidelines") or f"no guidelines for {name!r} yet (--set TEXT or --file FILE)")
        return
    pilots.set_guidelines(open_engine(), p.id, path.read_text(encoding="utf-8") if path else text)
    click.echo(f"guidelines of {name!r} saved")


@pilot.command("report")
@click.argument("name")
@click.option("--filter", "filter_name", help="A saved filter: accuracy of its current thresholds too (default: the only saved filter, if there is one).")
@click.option("--roc", "roc_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the ROC curves as an SVG file.")
@click.option("--json", "as_json", is_flag=True)
def pilot_report(name, filter_name, roc_path, as_json) -> None:
    """How VisAttnScore, the visual information gain, the blind log-probability and CLIPScore agree with the human
    labels (accuracy, ROC/AUC, best thresholds, kappa), and a logistic regression over them (cross-validated AUC)."""
    from dataclasses import asdict

    from curation import pilot_results
    from curation.filters import FilterError
    from curation.svg_plots import roc_svg
    from db.app import saved_filters

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
        click.echo(json.dumps({"pilot": name, "filter": filter_name, **asdict(report), "ungrounded_words": found.ungrounded_words,
                               "agreement": found.agreement.to_dict(), "agreement_by_task": {t: a.to_dict() for t, a in found.agreement_by_task.items()},
                               "combined": found.combined.to_dict() if found.combined else None},
                              indent=2))
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
        rows.append((r.name, r.n, f"{r.auc:.3f} [{_interval(r.auc_ci, r.n)}]", f"{r.best_accuracy:.3f} [{_interval(r.best_accuracy_ci, r.n)}] at {r.best_accuracy_threshold:.4g}",
                     f"{r.youden_j:.3f} at {r.youden_threshold:.4g}",
                     "" if r.current_accuracy is None else f"{r.current_accuracy:.3f} [{_interval(r.current_accuracy_ci, r.current_n)}] ({r.current_threshold})"))
    if rows:
        echo_table(rows, ("score", "n", "AUC [95% CI]", "best accuracy [95% CI]", "Youden's J",
                          "accuracy at " + (f"filter {filter_name!r}" if filter_name else "current (--filter)")))
        click.echo(f"95% intervals: Wilson for accuracies, {AUC_CI_METHOD} (1982) for AUC; the best accuracy's threshold is fitted on these labels (optimistic)")
    if found.combined is not None:
        click.echo(f"combined: {found.combined.describe()}")
        for warning in found.combined.warnings:
            click.secho(f"combined: {warning}", fg="yellow")
        click.echo(f"  write it as grounded_p for every sample: vitpro pilot calibrate {name}")
    if report.relative_improvement is not None:
        line = f"VisAttnScore over CLIPScore: {report.relative_improvement:+.1%} relative accuracy at the best thresholds"
        if report.relative_improvement_current is not None:
            line += f", {report.relative_improvement_current:+.1%} at the filter's"
        click.echo(line + f" (the paper reports {PAPER_RELATIVE_IMPROVEMENT:+.0%})")
    if len(report.annotators) < 2:
        click.echo("one annotator so far: agreement needs a second (vitpro pilot label NAME --annotator OTHER)")
    else:
        _print_agreement(found.agreement, found.agreement_by_task)
    if words:
        click.echo("words marked ungrounded most often: " + ", ".join(f"{w} ({n})" for w, n in found.ungrounded_words[:10]))
    if roc_path and report.scores:
        click.echo(f"ROC curves: {roc_path}")


def _measure(m) -> str:
    return f"{'-' if m.value is None else f'{m.value:.3f}'} (n={m.n})"


def _print_agreement(overall, per_task) -> None:
    """Agreement between the annotators (skips are not ratings): Cohen's kappa per pair, Fleiss' kappa and
    Krippendorff's alpha, overall and per task, each with the samples it rests on."""
    click.secho("agreement between annotators (n: samples it rests on; skips are not ratings):", bold=True)
    for pair, m in overall.pairwise.items():
        a, b = pair.split("|")
        click.echo(f"  Cohen's kappa {a} / {b}: {_measure(m)}")
    rows = [("all", _measure(overall.fleiss), overall.fleiss_raters or "", _measure(overall.alpha))]
    rows += [(task, _measure(a.fleiss), a.fleiss_raters or "", _measure(a.alpha)) for task, a in per_task.items()]
    echo_table(rows, ("task", "Fleiss' kappa", "raters", "Krippendorff's alpha"))
    small = overall.alpha.n
    if small < MIN_MEANINGFUL:
        click.secho(f"  agreement on {small} sample(s) is not meaningful yet (label at least {MIN_MEANINGFUL} with two people or more)", fg="yellow")


def _interval(pair, n: int) -> str:
    """A 95% interval as printed; at a handful of samples (or where it collapses to a point, as the AUC's
    does at 1.0) it would read as certainty: "too few" instead."""
    if pair is None:
        return ""
    if n < MIN_INTERVAL_N or pair[0] == pair[1]:
        return f"too few (n={n})"
    return f"{pair[0]:.3f}-{pair[1]:.3f}"


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
    from db.app import pilots

    p = _get_pilot(name)
    engine = open_engine()
    before = pilots.adjudications(engine, p.id).get(sample_id)
    try:
        pilots.adjudicate(engine, p.id, sample_id, verdict, load_settings().user, note)
    except pilots.PilotError as exc:
        fail(f"{exc} {name!r}")
    click.echo(f"pilot {name!r}: sample {sample_id} settled as {verdict}" + (f" (was {before.label})" if before else ""))
