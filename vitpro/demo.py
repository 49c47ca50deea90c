"""`vitpro demo`: make demo data, start real workers on the embedded broker, run every stage, summarise.

Each later stage (scores, generation, filters, training) adds its job and its summary lines here.
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from config.settings import load_settings


def _ocr_hits(lake, brands: list[str]) -> tuple[int, int]:
    """How many catalog photos had their printed brand read back by OCR: a real check of the OCR stage."""
    from db.demo_reads import catalog_brands_and_ocr

    rows = catalog_brands_and_ocr(lake)
    hits = sum(1 for brand, text in rows if brand and text and brand.upper() in text.upper())
    return hits, len(rows)


def _curate(s, engine, results: dict[str, int], vis_model: str | None = None):
    """Step 7: filter, pilot, snapshot, exports. Labels are left to a person (no made-up labels). Two VLMs
    scored the samples: the filter and the pilot use ``vis_model`` (the paper's IDEFICS2)."""
    from curation import snapshots
    from curation.exports import FORMATS, ExportError, verify_export
    from curation.filters import Condition, FilterConfig, FilterError, stats_for
    from db import pilots, saved_filters
    from db.store import open_store
    from jobs.export import ExportJob
    from jobs.submit import submit_job

    from .commands.group import wait_for_job

    lake = open_store(s.store)
    vis = Condition.parse("vis_attn >= p25 per task")
    vis.model_id = vis_model
    config = FilterConfig([vis, Condition.parse("clip_score >= p20 or missing")], selection="demo-balanced")
    try:
        table = stats_for(lake, config)
        config = table.resolve(config)  # saved with its models named
        report = table.report(config)
    except FilterError as exc:
        click.secho(f"    cannot filter: {exc}", fg="red")
        results["filter"] = 1
        return None
    saved_filters.save(engine, "demo", config.to_dict(), s.user)
    try:
        pilot = pilots.get(engine, "demo-pilot")
        pilot_n = len(pilots.samples(engine, pilot.id))
    except pilots.PilotError:
        vis_model = next((c.model_id for c in config.conditions if c.metric == "vis_attn"), None)
        clip_model = next((c.model_id for c in config.conditions if c.metric == "clip_score"), None)
        pilot_n = len(pilots.draw_and_create(lake, engine, name="demo-pilot", size=200, seed=0, vis_model=vis_model, clip_model=clip_model,
                                             selection="demo-balanced", created_by=s.user))
    name = f"demo-v{lake.current_version()}"
    try:
        snap = snapshots.get(engine, name)
    except snapshots.SnapshotError:
        snap = snapshots.create(lake, engine, name=name, filter_name="demo", config=FilterConfig.from_dict(config.to_dict()), created_by=s.user)
    out = s.home / "exports" / snap.name
    job = submit_job("export", ExportJob(snapshot=snap.name, formats=list(FORMATS), out=str(out), ocr=True, force=True).params(), settings=s)
    results["export"] = wait_for_job(job)
    folders = {}
    for fmt in FORMATS:
        try:
            manifest = verify_export(out / fmt)
            folders[fmt] = (out / fmt, manifest["records"])
        except ExportError as exc:
            click.secho(f"    {exc}", fg="red")
            results[f"verify {fmt}"] = 1
    return (config, report), pilot_n, snap, folders, job


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _train_and_evaluate(s, snap, model_dir: Path, results: dict[str, int]):
    """Step 8: a short LoRA run on the demo snapshot, the base model and the tuned one evaluated on the
    held-out products (the tuned one against the base, as the paper reports)."""
    from db import training
    from db.app_engine import write_engine
    from jobs.eval import EvalJob
    from jobs.submit import submit_job
    from jobs.train import TrainJob
    from trainer.config import LoraSettings, TrainConfig

    from .commands.group import wait_for_job

    engine = write_engine(s.app_url)
    tag = snap.name
    run_name, base_name, tuned_name = f"{tag}-lora", f"{tag}-base", f"{tag}-tuned"
    # the paper's settings but for a rank that suits a 64-wide model and a few steps instead of 2 epochs
    config = TrainConfig(lora=LoraSettings(r=8, alpha=16, dropout=0.1), batch_size=4, max_steps=6, checkpoint_every=3, holdout=0.25)
    known_runs = {r.name for r in training.list_runs(engine)}
    if run_name not in known_runs:
        job = submit_job("train", TrainJob(snapshot=snap.name, model=str(model_dir), name=run_name, config=config,
                                            out=str(s.home / "runs" / run_name)).params(), settings=s)
        results["train"] = wait_for_job(job)
    known_evals = {e.name for e in training.list_evals(engine)}
    for name, adapter, baseline in ((base_name, None, None), (tuned_name, run_name, base_name)):
        if name in known_evals:
            continue
        params = EvalJob(name=name, snapshot=snap.name, model=str(model_dir), adapter=adapter, config=config, baseline=baseline,
                         limit=20, out=str(s.home / "evals" / name)).params()
        results[f"eval {name}"] = wait_for_job(submit_job("eval", params, settings=s))
    try:
        return training.get_run(engine, run_name), [training.get_eval(engine, base_name), training.get_eval(engine, tuned_name)]
    except training.RunError as exc:
        click.secho(f"    {exc}", fg="red")
        return None


def _demo_users(s, engine) -> dict[str, str]:
    """An admin and an annotator with fresh random passwords (each demo run), kept in a file only the
    owner can read so they can be found again."""
    import os
    import secrets

    from db import users

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


def run_demo(*, out: Path | None, products: int, complaints: int, n_workers: int, seed: int, ui: bool, port: int = 8501, address: str = "127.0.0.1") -> int:
    from curation.clip_score import ClipConfig
    from curation.generation import HFLocalBackend
    from curation.generation.report import build_report, report_lines
    from curation.mapping import ColumnMapping
    from curation.tiny_models import is_tiny, make_tiny
    from curation.vis_attn import VisAttnConfig
    from db import demo_reads, metrics, queries, sampling
    from db import jobs as jobs_db
    from db import quality as db_quality
    from db.app_engine import write_engine
    from db.store import init_store, open_store
    from jobs.aux_stats import AuxStatsJob
    from jobs.clip_score import ClipScoreJob
    from jobs.generate import GenerateJob
    from jobs.grounding import GroundingJob
    from jobs.ingest import IngestJob
    from jobs.ocr import OcrJob
    from jobs.submit import submit_job

    from .commands.group import wait_for_job
    from .demo_data import write_demo_data
    from .local_workers import local_workers

    s = load_settings()
    out = (out or s.home / "demo-data").resolve()
    started = time.monotonic()
    click.secho("VIT-Pro Curation Studio demo", bold=True)
    click.echo(f"store: {s.describe()['catalog']}   broker: {s.describe()['broker']}")

    click.echo(f"1/8 making demo data in {out} ...")
    made = write_demo_data(out, products=products, complaints=complaints, seed=seed)
    click.echo(f"    {made['products']} product photos + catalog rows, {made['complaints']} complaint transcripts ({made['bad_rows']} with bad input on purpose)")

    models_dir = s.home / "models"
    for family in ("idefics2", "qwen2_5_vl", "clip", "llama"):
        if not is_tiny(models_dir / family):
            make_tiny(family, models_dir / family)
    click.secho(f"    demo models in {models_dir} (tiny, random weights: the scores below exercise the code, they mean nothing)", fg="yellow")

    init_store(s.store)
    engine = write_engine(s.app_url)
    results: dict[str, int] = {}
    log_path = s.home / "demo-workers.log"
    click.echo(f"2/8 starting {n_workers} worker process(es) (log: {log_path})")
    with local_workers("cpu,gpu,train", processes=n_workers, log_path=log_path):
        catalog = ColumnMapping.from_yaml(out / "catalog.yaml")
        feedback = ColumnMapping.from_yaml(out / "complaints.yaml")
        click.echo("3/8 ingest: catalog and complaint transcripts, redacted before storage")
        job_catalog = submit_job("ingest", IngestJob(source=str(out / "catalog.csv"), fmt="csv", mapping=catalog, name="demo-catalog", image_root=str(out), redact=True,
                                                     rows_per_unit=8).params(), settings=s)
        job_feedback = submit_job("ingest", IngestJob(source=str(out / "complaints.jsonl"), fmt="jsonl", mapping=feedback, name="demo-complaints", image_root=str(out),
                                                      redact=True, rows_per_unit=4).params(), settings=s)
        results["ingest catalog"] = wait_for_job(job_catalog)
        results["ingest complaints"] = wait_for_job(job_feedback)
        click.echo("4/8 OCR of every photo (rapidocr on CPU)")
        job_ocr = submit_job("ocr", OcrJob(batch_size=8).params(), settings=s)
        results["ocr"] = wait_for_job(job_ocr)
        click.echo("5/8 generation: question/answer samples for every task (template backend), and the local-model path (tiny LLM)")
        job_generate = submit_job("generate", GenerateJob(backend="template").params(), settings=s)
        results["generate"] = wait_for_job(job_generate)
        tiny_llm = HFLocalBackend(model_dir=str(models_dir / "llama"), max_new_tokens=48)
        job_generate_hf = submit_job("generate", GenerateJob(backend="hf", hf=tiny_llm, tasks=["recognition"], limit=4).params(), settings=s)
        results["generate hf"] = wait_for_job(job_generate_hf)
        sql, params, names = sampling.stratified(open_store(s.store), by=["category"], per_stratum=40, seed=seed)
        balance = sampling.balance(open_store(s.store), sql, params, names)
        selected = sampling.write_selection(open_store(s.store), "demo-balanced", sql, params, names, seed, "samples", f"demo-{seed}")
        click.echo(f"    stratified sample 'demo-balanced' (at most 40 per category): {selected} of {sum(r[-2] for r in balance)} samples")
        click.echo("6/8 scores: OCR stats, CLIPScore (open_clip) and VisAttnScore of the balanced samples by two VLMs, IDEFICS2 (the paper's) and Qwen2.5-VL, on the gpu queue")
        job_aux = submit_job("aux_stats", AuxStatsJob().params(), settings=s)
        results["aux"] = wait_for_job(job_aux)
        job_clip = submit_job("clip_score", ClipScoreJob(ClipConfig(model=str(models_dir / "clip"), batch_size=16)).params(), settings=s)
        results["clip"] = wait_for_job(job_clip)
        vis_config = VisAttnConfig(exclude_sinks=True, distance_correction=True)
        grounding = GroundingJob(model=str(models_dir / "idefics2"), batch_size=8, config=vis_config, ocr=True, on="samples", selection="demo-balanced").params()
        grounding_qwen = GroundingJob(model=str(models_dir / "qwen2_5_vl"), batch_size=8, config=vis_config, ocr=True, on="samples", selection="demo-balanced").params()
        job_grounding = submit_job("grounding", grounding, settings=s)
        job_grounding_qwen = submit_job("grounding", grounding_qwen, settings=s)
        results["grounding"] = wait_for_job(job_grounding)
        results["grounding qwen2_5_vl"] = wait_for_job(job_grounding_qwen)
        click.echo("7/8 curation: a saved filter, a pilot to label, a snapshot and its exports in every format (cpu queue)")
        curated = _curate(s, engine, results, vis_model=grounding["model_id"])
        trained = None
        if curated:
            click.echo("8/8 training: LoRA on the tiny VLM for a few steps on the demo snapshot, then the benchmarks on its held-out products (train queue)")
            trained = _train_and_evaluate(s, curated[2], models_dir / "idefics2", results)

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
    if curated:
        report, pilot_n, snap, folders, _ = curated
        click.echo(f"  filter     'demo' ({'; '.join(c.describe() for c in report[0].conditions)}): kept {report[1].kept} of {report[1].kept + report[1].dropped}")
        click.echo(f"  pilot      'demo-pilot': {pilot_n} samples to label (vitpro pilot label demo-pilot), then vitpro pilot report demo-pilot")
        click.echo(f"  snapshot   {snap.name!r}: {snap.counts['kept']} samples at DuckLake version {snap.lake_version}")
        for fmt, (folder, records) in folders.items():
            click.echo(f"  export     {fmt:<13}{records} records, verified: {folder}")
    if trained:
        run, evals = trained
        click.echo(f"  training   run {run.name!r}: {run.steps_done} steps, loss {run.summary.get('final_loss', float('nan')):.4f}; adapter {run.summary.get('adapter')}")
        for ev in evals:
            acc = (ev.results.get("objective") or {}).get("overall", {}).get("accuracy")
            attrs = (ev.results.get("attributes") or {}).get("overall", {}).get("accuracy")
            click.echo(f"  evaluation {ev.name!r}: objective accuracy {_pct(acc)}, attribute exact match {_pct(attrs)}"
                       + (f" (vs {ev.baseline!r}: `vitpro eval show {ev.name}`)" if ev.baseline else ""))
    for job_id in (job_catalog, job_feedback, job_ocr, job_generate, job_generate_hf, job_aux, job_clip, job_grounding, job_grounding_qwen, *([curated[4]] if curated else [])):
        job = jobs_db.get_job(engine, job_id)
        click.echo(f"  job        {job.id}: {job.status}  " + ", ".join(f"{k} {v}" for k, v in job.counts.items()))
    if sample:
        click.echo("  a stored transcript, as the model will see it:")
        for line in sample.splitlines()[:6]:
            click.echo(f"    | {line}")
    click.echo(f"done in {time.monotonic() - started:.1f} s. Next: `vitpro status`, `vitpro filter show demo --hist`, `vitpro pilot label demo-pilot`, "
               "`vitpro snapshot list`, `vitpro train list`, `vitpro eval list`.")
    code = 0 if all(code == 0 for code in results.values()) else 1
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
