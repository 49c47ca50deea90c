"""`vitpro demo`: make demo data and tiny models, start real workers on the embedded broker, run every stage
of examples/demo.yaml (a recipe, as `vitpro run` runs it), summarise, then serve the web app.

A new stage of the demo is a new entry of examples/demo.yaml; its summary lines, if any, are added here
(from the stage's outputs, by its label).
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from config.settings import load_settings

DEMO_RECIPE = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"
DEMO_MODELS = ("idefics2", "qwen2_5_vl", "clip", "llama")  # the tiny models the recipe names ($VITPRO_HOME/models/<family>)
DEMO_SEED = 7  # the recipe's default seed (its vars)


def _ocr_hits(lake, brands: list[str]) -> tuple[int, int]:
    """How many catalog photos had their printed brand read back by OCR: a real check of the OCR stage."""
    from db.reads.demo_reads import catalog_brands_and_ocr

    rows = catalog_brands_and_ocr(lake)
    hits = sum(1 for brand, text in rows if brand and text and brand.upper() in text.upper())
    return hits, len(rows)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _curation_summary(outputs: dict[str, dict]) -> None:
    """The filter, the pilot, the snapshot and each export verified, from the stages' outputs."""
    from curation.exports import ExportError, verify_export

    if "filter" in outputs and "kept" in outputs["filter"]:
        f = outputs["filter"]
        click.echo(f"  filter     {f['name']!r} ({'; '.join(f['conditions'])}): kept {f['kept']} of {f['kept'] + f['dropped']}")
    if "pilot" in outputs and "drawn" in outputs["pilot"]:
        name = outputs["pilot"]["name"]
        click.echo(f"  pilot      {name!r}: {outputs['pilot']['drawn']} samples to label (vitpro pilot label {name}), then vitpro pilot report {name}")
    if "snapshot" in outputs and "lake_version" in outputs["snapshot"]:
        snap = outputs["snapshot"]
        click.echo(f"  snapshot   {snap['name']!r}: {snap['kept']} samples at DuckLake version {snap['lake_version']}")
    export = outputs.get("export")
    if export:
        for fmt in export["formats"]:
            folder = Path(export["out"]) / fmt
            try:
                click.echo(f"  export     {fmt:<13}{verify_export(folder)['records']} records, verified: {folder}")
            except ExportError as exc:
                click.secho(f"  export     {fmt:<13}{exc}", fg="red")


def _training_summary(engine, outputs: dict[str, dict]) -> None:
    """The training run and the two evaluations (the tuned one against the base), from the store."""
    from db.app import training

    try:
        run = training.get_run(engine, outputs["train"]["name"]) if "train" in outputs else None
        evals = [training.get_eval(engine, outputs[label]["name"]) for label in ("eval-base", "eval-tuned") if label in outputs]
    except training.RunError as exc:
        click.secho(f"  {exc}", fg="red")
        return
    if run is not None:
        click.echo(f"  training   run {run.name!r}: {run.steps_done} steps, loss {run.summary.get('final_loss', float('nan')):.4f}; adapter {run.summary.get('adapter')}")
    for ev in evals:
        acc = (ev.results.get("objective") or {}).get("overall", {}).get("accuracy")
        attrs = (ev.results.get("attributes") or {}).get("overall", {}).get("accuracy")
        click.echo(f"  evaluation {ev.name!r}: objective accuracy {_pct(acc)}, attribute exact match {_pct(attrs)}"
                   + (f" (vs {ev.baseline!r}: `vitpro eval show {ev.name}`)" if ev.baseline else ""))


def _demo_users(s, engine) -> dict[str, str]:
    """An admin and an annotator with fresh random passwords (each demo run), kept in a file only the
    owner can read so they can be found again."""
    import os
    import secrets

    from db.app import users

    made = {"admin": "admin", "annotator": "annotator"}
    passwords = {}
    for name, role in made.items():
        passwords[name] = secrets.token_urlsafe(9)
        users.add(engine, name, passwords[name], role, replace=True)
    path = s.home / "demo-users.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{name} ({made[name]}): {pw}\n" for name, pw in passwords.items()))
    return passwords


def make_demo_data(out: Path, *, products: int, complaints: int, seed: int) -> dict:
    """The demo data (photos, catalog rows, complaint transcripts and their mappings) in ``out`` and the tiny
    models in $VITPRO_HOME/models: what examples/demo.yaml reads."""
    from curation.tiny_models import is_tiny, make_tiny

    from .demo_data import write_demo_data

    s = load_settings()
    click.echo(f"making demo data in {out} ...")
    made = write_demo_data(out, products=products, complaints=complaints, seed=seed)
    click.echo(f"    {made['products']} product photos + catalog rows, {made['complaints']} complaint transcripts ({made['bad_rows']} with bad input on purpose)")
    models_dir = s.home / "models"
    for family in DEMO_MODELS:
        if not is_tiny(models_dir / family):
            make_tiny(family, models_dir / family)
    click.secho(f"    demo models in {models_dir} (tiny, random weights: the scores below exercise the code, they mean nothing)", fg="yellow")
    return made


def _shown(path: Path) -> str:
    """A path as a user types it here: relative to the working folder when within it."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def demo_recipe(out: Path, seed: int):
    """examples/demo.yaml, read with the demo data's folder and seed."""
    from .recipes import load_recipe

    if not DEMO_RECIPE.is_file():
        raise click.ClickException(f"the demo's recipe is missing: {DEMO_RECIPE} (examples/ of the repository)")
    return load_recipe(DEMO_RECIPE, [f"data={out}", f"seed={seed}"])


def run_demo(*, out: Path | None, products: int, complaints: int, n_workers: int, seed: int, ui: bool, port: int = 8501, address: str = "127.0.0.1",
             data_only: bool = False) -> int:
    from curation.generation.report import build_report, report_lines
    from db.app import jobs as jobs_db
    from db.app.engine import write_engine
    from db.lake import metrics
    from db.reads import demo_reads, queries
    from db.reads import quality as db_quality
    from db.store import init_store, open_store

    from .local_workers import local_workers
    from .recipes import RecipeError, run_recipe

    s = load_settings()
    out = (out or s.home / "demo-data").resolve()
    started = time.monotonic()
    if data_only:
        make_demo_data(out, products=products, complaints=complaints, seed=seed)
        hint = "" if out == (s.home / "demo-data").resolve() else f" --var data={out}"
        hint += "" if seed == DEMO_SEED else f" --var seed={seed}"
        click.echo(f"run the demo's pipeline on it: vitpro run {_shown(DEMO_RECIPE)}{hint}")
        return 0
    click.secho("VIT-Pro Curation Studio demo", bold=True)
    click.echo(f"store: {s.describe()['catalog']}   broker: {s.describe()['broker']}")
    click.echo("1/3 the demo data and the tiny models")
    made = make_demo_data(out, products=products, complaints=complaints, seed=seed)
    try:
        recipe = demo_recipe(out, seed)
    except RecipeError as exc:
        raise click.ClickException("; ".join(exc.messages)) from None

    init_store(s.store)
    engine = write_engine(s.app_url)
    log_path = s.home / "demo-workers.log"
    click.echo(f"2/3 starting {n_workers} worker process(es) (log: {log_path}), then every stage of {_shown(DEMO_RECIPE)} "
               f"(`vitpro run {_shown(DEMO_RECIPE)}` runs the same)")
    with local_workers("cpu,gpu,train", processes=n_workers, log_path=log_path):
        result = run_recipe(recipe, local=False, explain=False, check_workers=False)
    outputs = result.outputs
    click.echo("3/3 the summary")

    lake = open_store(s.store)
    counts = queries.stage_counts(lake)
    redactions = queries.redaction_totals(lake)
    hits, read = _ocr_hits(lake, made["brands"])
    sample = demo_reads.first_feedback_text(lake, "demo-complaints")
    click.echo()
    click.secho("summary", bold=True)
    click.echo(f"  items      {counts['items']} ({counts['items_catalog']} catalog, {counts['items_feedback']} feedback)")
    click.echo(f"  images     {counts['images']} stored, {counts['images_ocr']} read by OCR, {counts['images_with_text']} with text")
    click.echo(f"  OCR check  brand printed on the package read back on {hits} of {read} catalog photos")
    click.echo("  redacted   " + ", ".join(f"{k} {v}" for k, v in redactions.items()))
    errs = queries.error_summary(lake)
    click.echo("  refused    " + (", ".join(f"{stage}/{code} {n}" for stage, code, n in errs) or "nothing"))
    from curation.model_ids import public_model_id

    scores: dict[tuple, list] = {}
    for r in queries.score_summary(lake):
        scores.setdefault((r["metric"], r["subject_kind"]), []).append(r)
    for metric in ("clip_score", "vis_attn", "vis_attn_mass", "ocr_chars"):  # the summary's stats, as the registry names them
        kind, label = metrics.get(metric).subject, metrics.label(metric)
        for r in scores.get((metric, kind), []):
            by = f" by {public_model_id(r['model_id'])}" if metrics.get(metric).has_segment else ""  # the VLM's scores: which VLM
            unscorable = f" ({r['missing']} unscorable)" if r["missing"] else ""
            click.echo(f"  {label:<12} {r['n'] - r['missing']} {kind}(s){by}: p10 {r['p10']:.4g}, median {r['median']:.4g}, p90 {r['p90']:.4g}{unscorable}")
    worst = demo_reads.least_grounded_words(lake)
    if worst:
        pairs = worst[:8]
        click.echo("  least grounded text, word by word: " + " ".join(f"{w}({v:.3g})" for w, v in pairs))
    click.secho("  (demo models: these scores show the pipeline works, not what the data is worth)", fg="yellow")
    tasks = demo_reads.samples_per_task(lake)
    click.echo("  samples    " + ", ".join(f"{t} {n}" for t, n in tasks))
    rejects = demo_reads.rejects_per_reason(lake)
    click.echo("  rejected   " + (", ".join(f"{b}/{r} {n}" for b, r, n in rejects) or "nothing"))
    quality = build_report(db_quality.task_rows(lake, "template"), db_quality.coverage_rows(lake, "template"))
    click.echo("  quality of the template samples (vitpro generate report):")
    for line in report_lines(quality):
        click.echo("    " + line)
    _curation_summary(outputs)
    _training_summary(engine, outputs)
    for label, out in outputs.items():  # the pipeline's jobs (training and evaluations have their lines above)
        job = jobs_db.get_job(engine, out["job"]) if label in result.ran and isinstance(out.get("job"), str) else None
        if job is not None and job.kind not in ("train", "eval"):
            click.echo(f"  job        {job.id}: {job.status}  " + ", ".join(f"{k} {v}" for k, v in job.counts.items()))
    if sample:
        click.echo("  a stored transcript, as the model will see it:")
        for line in sample.splitlines()[:6]:
            click.echo(f"    | {line}")
    click.echo(f"done in {time.monotonic() - started:.1f} s. Next: `vitpro status`, `vitpro filter show demo --hist`, `vitpro pilot label demo-pilot`, "
               "`vitpro snapshot list`, `vitpro train list`, `vitpro eval list`.")
    code = 0 if result.code == 0 else 1
    if not ui:
        return code
    from .commands.app import serve

    passwords = _demo_users(s, engine)
    click.echo()
    click.secho("the web app, on the demo data (workers keep running behind it, so its Jobs page can launch work):", bold=True)
    for name, pw in passwords.items():
        click.echo(f"  sign in as {name:<10} password {pw}   (also in {s.home / 'demo-users.txt'})")
    with local_workers("cpu,gpu,train", processes=n_workers, log_path=log_path):
        serve(port, address)
    return code
