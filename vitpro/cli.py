"""The ``vitpro`` command line: everything a user can do without the web app.

Typical session::

    vitpro worker --queues cpu &          # one or more workers (any machine that sees the store)
    vitpro ingest listings.jsonl          # ABO listings: no mapping needed
    vitpro ingest reviews.csv --kind feedback --map feedback_text=Summary,Text --pii ProfileName=NAME
    vitpro ocr
    vitpro status

Long commands wait for their job with a progress bar (``--no-wait`` returns at once); ``--local`` starts
a worker for the length of the command when none is running.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import click

from config.settings import load_settings
from jobs.registry import choices

EXIT_FAILED = 1


def _echo_table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    rows = [tuple("" if v is None else str(v) for v in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _fail(message: str) -> None:
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
    Web app:        vitpro users add NAME --role admin; vitpro ui
    Configuration:  VITPRO_HOME (default ./var), VITPRO_CATALOG, VITPRO_BROKER, ... (see the README)
    """


# ---- store -----------------------------------------------------------------------------------------------
@cli.command()
def init() -> None:
    """Create the store (DuckLake tables and app tables). Safe to run again."""
    from db.store import init_store

    s = load_settings()
    info = init_store(s.store)
    for key, value in s.describe().items():
        click.echo(f"{key:>15}: {value}")
    click.echo(
        f"lake migrations applied now: {info.lake_migrations_applied or 'none (up to date)'}; app tables at revision {info.app_revision}"
    )


# ---- waiting -----------------------------------------------------------------------------------------
def wait_for_job(job_id: str, *, quiet: bool = False, poll: float = 0.3) -> int:
    """Show a progress bar until the job ends; returns the exit code (0 when it succeeded)."""
    from tqdm import tqdm

    from db import jobs
    from db.app_engine import write_engine
    from jobs.submit import queue_has_worker

    s = load_settings()
    engine = write_engine(s.app_url)
    job = jobs.get_job(engine, job_id)
    if job is None:
        _fail(f"no job {job_id}")
    warned_at = time.monotonic()
    # disable=None: a bar on a terminal, nothing in a log file (the outcome line is printed either way)
    bar = None if quiet else tqdm(total=max(job.progress_total, 1), desc=f"{job.kind} {job.id[-6:]}", unit="row" if job.kind == "ingest" else "img", dynamic_ncols=True, disable=None)
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
    _print_job_outcome(job)
    return 0 if job.status == "succeeded" else EXIT_FAILED


def _print_job_outcome(job) -> None:
    color = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(job.status, None)
    click.secho(f"job {job.id}: {job.status}", fg=color, bold=True)
    if job.counts:
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in job.counts.items()))
    if job.error:
        click.secho(f"  {job.error}", fg="red")
    if job.counts.get("failed") or job.counts.get("images_failed"):
        click.echo(f"  details: vitpro errors --job {job.id}")


def _run_job(kind: str, params: dict, *, wait: bool, local: bool) -> None:
    from vitpro.local_workers import local_workers
    from jobs.registry import queue_of
    from jobs.submit import JobRefused, queue_has_worker, submit_job

    s = load_settings()
    queue = queue_of(kind, params)
    starts_worker = local and not queue_has_worker(queue, settings=s)
    with local_workers(queue, log_path=s.home / "local-worker.log") if starts_worker else nullcontext():
        try:
            job_id = submit_job(kind, params, settings=s)
        except JobRefused as exc:  # a device no live worker of the queue has: say so, no traceback
            _fail(str(exc))
        click.echo(f"job {job_id} queued on {queue!r}")
        if not wait:
            return
        code = wait_for_job(job_id)
    if code:
        sys.exit(code)


# ---- ingest ------------------------------------------------------------------------------------------
@cli.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "tsv", "jsonl", "parquet", "abo"]), default="auto", show_default=True, help="Source format (from the file name by default; ABO listings are recognised).")
@click.option("--kind", type=click.Choice(["catalog", "feedback"]), help="Catalog listings or customer feedback. Default: catalog, or the mapping file's.")
@click.option("--feedback-type", type=click.Choice(["transcript", "review"]), help="For feedback: chat/phone transcript or written review.")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COL[,COL]", help="Column for a field: external_id, title, description, brand, category, attributes, feedback_text, images, region, time, issue_type, product_ref. Repeat.")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="YAML file with the mapping (see the README); --map options override it.")
@click.option("--pii", multiple=True, metavar="COL=KIND", help="A column holding personal data (NAME, EMAIL, PHONE, UCI, ADDRESS, CARD): never stored, and redacted wherever its value reappears.")
@click.option("--redact-pattern", multiple=True, metavar="KIND=REGEX", help="Extra redaction rule; matches become [KIND].")
@click.option("--no-redact", is_flag=True, help="Store text as it is (only for data with no personal information).")
@click.option("--image-root", type=click.Path(file_okay=False, path_type=Path), help="Folder image paths are relative to (default: the source's folder); paths outside it are refused.")
@click.option("--lang", "languages", multiple=True, metavar="TAG", help="Preferred language tags for ABO listings, in order (default en_US, en_GB, en).")
@click.option("--name", help="Source name (default: file name without extension); re-ingesting the same name adds only new rows.")
@click.option("--delimiter", help="CSV delimiter (default , or TAB for .tsv).")
@click.option("--rows-per-unit", type=click.IntRange(1), default=200, show_default=True, help="Rows per work unit (the unit of retry and parallelism).")
@click.option("--max-text-chars", type=click.IntRange(100), default=100_000, show_default=True, help="Longer texts are refused and recorded as errors.")
@click.option("--max-image-mb", type=click.FloatRange(0.01), default=50.0, show_default=True)
@click.option("--max-megapixels", type=click.FloatRange(0.01), default=100.0, show_default=True, help="Larger images (decompression bombs) are refused from their header.")
@click.option("--fetch-timeout", type=click.FloatRange(0.1), default=15.0, show_default=True, help="Seconds for a whole image download.")
@click.option("--allow-private-urls", is_flag=True, help="Allow image URLs on private or loopback addresses.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the job with a progress bar.")
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def ingest(source, fmt, kind, feedback_type, maps, mapping_file, pii, redact_pattern, no_redact, image_root, languages, name, delimiter, rows_per_unit, max_text_chars, max_image_mb, max_megapixels, fetch_timeout, allow_private_urls, wait, local) -> None:
    """Ingest a source of catalog listings or customer feedback (CSV, JSONL, Parquet, ABO).

    \b
    Examples:
      vitpro ingest listings.jsonl
      vitpro ingest reviews.csv --kind feedback --map external_id=Id --map feedback_text=Summary,Text \\
             --map product_ref=ProductId --map time=Time --pii ProfileName=NAME --pii UserId=UCI
      vitpro ingest chats.jsonl --mapping chats.yaml --image-root /data/photos
    """
    from curation.images import ImageLimits
    from curation.ingest import TextLimits
    from curation.mapping import ABO_MAPPING, ColumnMapping, MappingError
    from curation.readers import SourceError, detect_format
    from jobs.ingest import IngestJob

    s = load_settings()
    try:
        detected = detect_format(source, fmt)
        if mapping_file:
            base = ColumnMapping.from_yaml(mapping_file)
        elif detected == "abo":
            base = ABO_MAPPING
        else:
            base = ColumnMapping(item_kind=kind or "catalog")
        mapping = base.with_options(maps, pii, redact_pattern, kind=kind, feedback_type=feedback_type, languages=languages)
        if detected != "abo" and not mapping.columns:
            raise MappingError("no column mapping: pass --map field=column (or --mapping FILE.yaml); see `vitpro ingest --help`")
        params = IngestJob(
            source=str(source),
            fmt=detected,
            mapping=mapping,
            name=name,
            image_root=str(image_root) if image_root else None,
            redact=s.redact and not no_redact,
            allowed_roots=s.image_roots,
            delimiter=delimiter,
            rows_per_unit=rows_per_unit,
            text_limits=TextLimits(max_text_chars=max_text_chars),
            image_limits=ImageLimits(
                max_bytes=int(max_image_mb * 1024 * 1024),
                max_pixels=int(max_megapixels * 1_000_000),
                fetch_timeout_s=fetch_timeout,
                allow_private_urls=allow_private_urls,
            ),
        ).params()
    except (SourceError, MappingError, ValueError) as exc:
        _fail(str(exc))
    _run_job("ingest", params, wait=wait, local=local)


# ---- OCR ---------------------------------------------------------------------------------------------
@cli.command()
@click.option("--engine", type=click.Choice(["rapidocr", "tesseract"]), default="rapidocr", show_default=True,
              help="rapidocr reads photos best (bench/ocr.py); tesseract needs `make tesseract`.")
@click.option("--limit", type=click.IntRange(1), help="Read at most N images not read yet (sha256 order).")
@click.option("--source", help="Only images of items of this source (its name, as `vitpro status` counts them).")
@click.option("--where", "where", multiple=True, metavar="COND",
              help="Only images where FIELD OP VALUE holds, e.g. 'width >= 800' or 'format = PNG'; repeat: all must hold. "
                   "Fields: width, height, pixels, bytes, format, position.")
@click.option("--side", type=click.IntRange(64, 4096), help="Short side (px) a photo is scaled up to before text is looked for "
              "[rapidocr 736, tesseract 1024]; changing it reads the images again.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Drop lines read with less [rapidocr 0.6, tesseract 0.5]; "
              "changing it reads the images again.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Threads per worker process (a worker runs one process per core).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cuda: rapidocr on onnxruntime's CUDA provider (onnxruntime-gpu), on the gpu queue.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Images per work unit.")
@click.option("--no-redact", is_flag=True, help="Keep OCR text as read (labels can show names and addresses).")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def ocr(engine, limit, source, where, side, min_confidence, threads, device, batch_size, no_redact, wait, local) -> None:
    """Read the text on the stored images not read yet with these settings (each image content once).

    \b
      vitpro ocr                                   # every image not read yet
      vitpro ocr --limit 200 --source listings     # a first look at one source (its name: the file stem or --name)
      vitpro ocr --where 'width >= 800' --where 'format = JPEG'
      vitpro ocr --engine tesseract                # the other engine; its reading replaces rapidocr's
      vitpro ocr --device cuda --local             # onnxruntime-gpu on the gpu queue
    """
    from db import batches
    from db.store import open_store
    from jobs.ocr import OcrJob

    s = load_settings()
    try:
        params = OcrJob(
            engine=engine, batch_size=batch_size, redact=s.redact and not no_redact, side=side, min_confidence=min_confidence,
            threads=threads, device=device, source=source, where=list(where), limit=limit,
        ).params()
    except ValueError as exc:
        _fail(str(exc))
    if source is not None and source not in (names := batches.source_names(open_store(s.store))):
        _fail(f"no source named {source!r}; sources: {', '.join(names) or 'none yet (vitpro ingest)'}")
    _run_job("ocr", params, wait=wait, local=local)


# ---- models ------------------------------------------------------------------------------------------
@cli.group()
def models() -> None:
    """Build tiny demo checkpoints (no model hub is reachable here) and inspect model folders."""


def _tiny_families() -> list[str]:
    from curation.tiny_models import FAMILIES

    return list(FAMILIES)


@models.command("make-tiny")
@click.option("--family", type=click.Choice(_tiny_families()), required=True,
              help="A VLM family (VisAttnScore, training; see `vitpro models families`), clip (CLIPScore) or llama (a causal LM for generation).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def models_make_tiny(family, out, seed) -> None:
    """Build a deterministic tiny checkpoint from the family's own config classes, with a tokenizer trained
    here and the family's chat template, saved with the library's own save_pretrained. Its scores mean
    nothing: it exists to run every code path offline."""
    from curation.tiny_models import make_tiny

    path = make_tiny(family, out, seed=seed)
    click.echo(f"{family} tiny checkpoint in {path} ({sum(f.stat().st_size for f in path.iterdir()) / 1e6:.1f} MB); demo model: scores mean nothing")


@models.command("families")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_families(as_json) -> None:
    """The VLM families VisAttnScore, training and evaluation run on, with the config.json model types each
    serves, a real checkpoint of it, its image limit and LLaMA-Factory's template for it."""
    from curation.tiny_models import vlm_families
    from curation.vlm import FAMILIES

    tiny = set(vlm_families())
    rows = [{"family": name, "title": cls.title, "model_types": list(cls.model_types), "example": cls.hub_example,
             "max_images": cls.max_images, "llamafactory_template": cls.llamafactory_template, "parts": sorted(cls.parts), "tiny": name in tiny}
            for name, cls in sorted(FAMILIES.items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _echo_table([(r["family"], r["title"], ", ".join(r["model_types"]), r["example"], r["max_images"] or "any",
                  r["llamafactory_template"] or "-", "yes" if r["tiny"] else "no") for r in rows],
                ("family", "name", "model types", "a real checkpoint", "images", "LLaMA-Factory", "make-tiny"))
    click.echo("point any command at a checkpoint folder of these (`--model DIR`); its config.json says the family")


# ---- scores ------------------------------------------------------------------------------------------
@cli.group()
def score() -> None:
    """Score the store (CLIPScore, VisAttnScore, OCR stats) as jobs; query percentiles and thresholds."""


def _demo_banner(model_dir: str | None) -> None:
    from curation.tiny_models import is_tiny

    if model_dir and Path(model_dir.removeprefix("local-dir:")).is_dir() and is_tiny(model_dir.removeprefix("local-dir:")):
        click.secho("demo model (random weights built from a config): its scores mean nothing", fg="yellow", err=True)


@score.command("clip")
@click.option("--model", envvar="VITPRO_CLIP_MODEL", default="ViT-B-32", show_default=True, help="open_clip model name, or a local folder in open_clip's format (env VITPRO_CLIP_MODEL).")
@click.option("--pretrained", default="openai", show_default=True, help="open_clip pretrained tag (ignored for folders).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--reduce", type=click.Choice(["mean", "max", "min"]), default="mean", show_default=True, help="How an item's several images become its score (max and min are stored too).")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def score_clip(model, pretrained, device, precision, batch_size, reduce, wait, local) -> None:
    """CLIPScore of every item with images not yet scored by this model (gpu queue)."""
    from curation.clip_score import ClipConfig, model_ref
    from jobs.clip_score import ClipScoreJob

    ref = model_ref(model)
    if not ref.startswith(("local-dir:", "hf-hub:")):
        if "/" in model or model.startswith("."):
            _fail(f"{model}: no such model folder")
        import open_clip

        if model not in open_clip.list_models():
            _fail(f"{model!r} is neither a model folder nor an open_clip model name")
    _demo_banner(ref)
    config = ClipConfig(model=model, pretrained=pretrained, device=device, precision=precision, batch_size=batch_size, reduce=reduce)
    _run_job("clip_score", ClipScoreJob(config).params(), wait=wait, local=local)


@score.command("grounding")
@click.option("--model", envvar="VITPRO_VLM_MODEL", required=True, type=click.Path(file_okay=False), help="A VLM checkpoint folder of any family in `vitpro models families` (env VITPRO_VLM_MODEL).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--segment", type=click.Choice(["answer", "question", "text"]), default="answer", show_default=True, help="Which text the segment score averages over.")
@click.option("--exclude-sinks", is_flag=True, help="Also report the score without 'attention sink' image tokens.")
@click.option("--distance-correction", is_flag=True, help="Also report the score corrected for distance from the image.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Single-sample form: score this image (repeat for several) ...")
@click.option("--question", help="... with this question ...")
@click.option("--answer", help="... and this answer, here and now (no job).")
@click.option("--ocr", "ocr_text", help="Single-sample form: OCR tokens to put in the prompt.")
@click.option("--with-ocr", is_flag=True, help="Store-wide: put each image's OCR text in the prompt (the paper's setting).")
@click.option("--on", "on", type=click.Choice(choices("grounding", "on")), default="samples", show_default=True, help="Store-wide: score generated samples, or items with their own text.")
@click.option("--selection", help="Store-wide: only the samples of this named selection (vitpro sample --name).")
@click.option("--json", "as_json", is_flag=True, help="Single-sample form: print JSON (tokens, words, scores, input_ids, positions).")
@click.option("--check", is_flag=True, help="Single-sample form: also compute the eager output_attentions reference and print the largest difference.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def score_grounding(model, device, dtype, segment, exclude_sinks, distance_correction, batch_size, images, question, answer, ocr_text, with_ocr, on, selection, as_json, check, wait, local) -> None:
    """VisAttnScore (the paper's equation 2): per text token, its attention to the image in the VLM.

    \b
    Store-wide (a job on the gpu queue):  vitpro score grounding --model DIR [--on items]
    One sample, here and now:             vitpro score grounding --model DIR --image a.jpg \\
                                            --question "What is shown?" --answer "A leaking shampoo bottle" --json
    """
    from curation.vis_attn import VisAttnConfig

    config = VisAttnConfig(segment=segment, exclude_sinks=exclude_sinks, distance_correction=distance_correction)
    _demo_banner(model)
    if images or question or answer:
        if not (images and answer):
            _fail("the single-sample form needs --image and --answer (and usually --question)")
        _score_one(model, device, dtype, config, list(images), question or "", answer, ocr_text, as_json, check)
        return
    from jobs.grounding import GroundingJob

    try:
        params = GroundingJob(model=model, device=device, dtype=dtype, batch_size=batch_size, config=config, ocr=with_ocr, on=on, selection=selection).params()
    except ValueError as exc:
        _fail(str(exc))
    _run_job("grounding", params, wait=wait, local=local)


def _score_one(model, device, dtype, config, image_paths, question, answer, ocr_text, as_json, check) -> None:
    from curation.images import ImageError
    from curation.single_sample import score_one
    from curation.vlm import SampleError

    try:
        scored = score_one(model, device, dtype, config, image_paths, question, answer, ocr_text, check=check)
    except (ImageError, SampleError) as exc:
        _fail(f"{exc.code}: {exc.message}")
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    result, payload = scored.result, scored.payload
    if scored.template_source != "checkpoint":
        click.secho(f"{model} has no chat template: the {scored.family} layout written from its documentation was used "
                    "(copy the checkpoint's chat_template.jinja into the folder to use its own)", fg="yellow", err=True)
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(f"VisAttnScore ({config.segment}): {result.segment_score:.6g}   image mass: {result.image_mass:.6g}" + ("   (context truncated)" if result.truncated else ""))
    for name, value in result.extra.items():
        click.echo(f"{name}: {value:.6g}")
    width = max(len(w) for w in result.words) if result.words else 0
    for word, value in zip(result.words, result.word_scores):
        click.echo(f"  {word:<{width}}  {value:.6g}")
    if check:
        click.echo(f"largest difference from the eager reference: {payload['eager_max_abs_diff']:.3g}")


@score.command("aux")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True)
def score_aux(wait, local) -> None:
    """Auxiliary stats from stored OCR: characters and boxes per image (cpu queue)."""
    from jobs.aux_stats import AuxStatsJob

    _run_job("aux_stats", AuxStatsJob().params(), wait=wait, local=local)


@score.command("summary")
@click.option("--metric", help="Only this metric.")
def score_summary(metric) -> None:
    """Every stored score: count, unscorable, and quantiles within the data set."""
    from db import queries
    from db.store import open_store

    rows = queries.score_summary(open_store(load_settings().store), metric)
    if not rows:
        click.echo("no scores yet: vitpro score clip / grounding / aux")
        return

    def fmt(v):
        return "" if v is None else f"{v:.4g}"

    _echo_table(
        [(r["subject_kind"], r["metric"], _short_model(r["model_id"]), r["segment"], r["n"], r["missing"], *(fmt(r[k]) for k in ("min", "p10", "p25", "median", "p75", "p90", "max"))) for r in rows],
        ("of", "metric", "model", "segment", "n", "missing", "min", "p10", "p25", "median", "p75", "p90", "max"),
    )


def _short_model(model_id: str) -> str:
    return model_id if len(model_id) <= 40 else "…" + model_id[-39:]


@score.command("threshold")
@click.option("--metric", required=True)
@click.option("--percentile", type=click.FloatRange(0, 100), required=True, help="0-100: the value below which this share of the data set lies.")
@click.option("--model", "model_id", help="The model id, when the metric comes from several.")
@click.option("--segment", default="", help="answer | question | text for VisAttnScore.")
@click.option("--of", "subject_kind", type=click.Choice(["item", "image", "sample"]), help="Subjects (default: all).")
def score_threshold(metric, percentile, model_id, segment, subject_kind) -> None:
    """The value of a score at a percentile: a threshold that carries across models."""
    from db import queries
    from db.store import open_store

    if metric.startswith("vis_attn") or metric == "text_tokens":
        segment = segment or "answer"
    try:
        value, n = queries.score_threshold(open_store(load_settings().store), metric, percentile, model_id=model_id, segment=segment, subject_kind=subject_kind)
    except ValueError as exc:
        _fail(str(exc))
    if n == 0:
        _fail(f"no {metric} scores stored" + (f" for segment {segment!r}" if segment else ""))
    click.echo(f"{metric} at the {percentile:g}th percentile of {n} value(s): {value:.6g}")


# ---- generation ----------------------------------------------------------------------------------------
@cli.group(invoke_without_command=True)
@click.option("--backend", type=click.Choice(choices("generate", "backend")), help="openai: any OpenAI-compatible server (vLLM, TGI, hosted); hf: a local causal LM (gpu queue); template: no LLM, from catalog fields.")
@click.option("--tasks", default=",".join(["recognition", "damage_detection", "matching", "attribute_extraction", "counting", "condition_packaging", "comparison", "refusal"]), show_default=True, help="Comma-separated tasks.")
@click.option("--model", help="openai: the served model's name; hf: a local model folder.")
@click.option("--base-url", envvar="VITPRO_LLM_BASE_URL", help="openai: the server's base URL, e.g. http://localhost:8000/v1 (env VITPRO_LLM_BASE_URL).")
@click.option("--api-key-env", default="VITPRO_LLM_API_KEY", show_default=True, help="openai: the environment variable holding the API key (never logged).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True, help="openai: requests in flight at once, per worker process.")
@click.option("--rate-limit", type=click.FloatRange(0.01), help="openai: at most this many requests per second, per worker process.")
@click.option("--timeout", type=click.FloatRange(1), default=60.0, show_default=True, help="openai: seconds per request.")
@click.option("--max-retries", type=click.IntRange(0, 20), default=4, show_default=True)
@click.option("--max-tokens", type=click.IntRange(16), default=768, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="hf: cpu or cuda.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--n-pairs", type=click.IntRange(1, 20), default=3, show_default=True, help="Pairs asked for per item and task.")
@click.option("--template", "template_path", type=click.Path(exists=True, dir_okay=False), help="Your own prompt template file.")
@click.option("--examples", "examples_path", type=click.Path(exists=True, dir_okay=False), help="Your own few-shot examples (JSON, per task).")
@click.option("--kind", "kinds", type=click.Choice(["catalog", "feedback"]), multiple=True, help="Only items of this kind.")
@click.option("--limit", type=click.IntRange(1), help="At most this many items.")
@click.option("--items-per-unit", type=click.IntRange(1), default=25, show_default=True)
@click.option("--dry-run", type=click.IntRange(1), metavar="N", help="Print the rendered prompts for N items (and the template backend's pairs) without a job.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
@click.pass_context
def generate(ctx, backend, tasks, model, base_url, api_key_env, concurrency, rate_limit, timeout, max_retries, max_tokens, device, dtype, n_pairs, template_path, examples_path, kinds, limit, items_per_unit, dry_run, wait, local) -> None:
    """Generate question/answer samples for the paper's tasks from every item not yet done.

    \b
    Examples:
      vitpro generate --backend template
      vitpro generate --backend openai --base-url http://localhost:8000/v1 --model mistral-7b-instruct --concurrency 16
      vitpro generate --backend hf --model models/llama --device cuda --tasks recognition,refusal
      vitpro generate --backend openai --base-url ... --model ... --dry-run 2
      vitpro generate report            (how varied the answers are, per task)
    """
    if ctx.invoked_subcommand is not None:
        return
    if backend is None:
        _fail("choose a backend: --backend template|openai|hf (or `vitpro generate report` for the quality report)")
    from curation.generation import HFLocalBackend, OpenAIChatBackend
    from jobs.generate import GenerateJob

    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    openai = hf = None
    if backend == "openai":
        if not (base_url and model):
            _fail("the openai backend needs --base-url and --model")
        try:
            openai = OpenAIChatBackend(base_url=base_url, model=model, api_key_env=api_key_env, concurrency=concurrency, timeout_s=timeout, max_retries=max_retries, rate_limit=rate_limit, max_tokens=max_tokens)
        except ValueError as exc:
            _fail(str(exc))
    elif backend == "hf":
        if not model or not Path(model).is_dir():
            _fail("the hf backend needs --model, a local causal LM folder (vitpro models make-tiny --family llama builds a demo one)")
        hf = HFLocalBackend(model_dir=str(Path(model).resolve()), device=device, dtype=dtype, max_new_tokens=max_tokens)
        _demo_banner(model)
    try:
        params = GenerateJob(backend=backend, tasks=task_list, openai=openai, hf=hf, n_pairs=n_pairs, items_per_unit=items_per_unit, template_path=template_path, examples_path=examples_path, kinds=list(kinds) or None, limit=limit).params()
    except ValueError as exc:
        _fail(str(exc))
    if dry_run:
        _generate_dry_run(params, dry_run)
        return
    _run_job("generate", params, wait=wait, local=local)


def _generate_dry_run(params: dict, n: int) -> None:
    from curation.generation import PromptTemplate, TemplateBackend, build_requests
    from db import batches
    from curation.item_contexts import contexts_for
    from db.store import open_store

    lake = open_store(load_settings().store)
    items = batches.items_to_generate(lake, params["tasks"], params["backend"], params["model_id"], params["prompt_version"], params.get("kinds"))[:n]
    if not items:
        click.echo("no items to generate for (ingest first, or everything is done for this backend and prompt)")
        return
    template = PromptTemplate.load(params.get("template_path"), params.get("examples_path"))
    requests = build_requests(contexts_for(lake, items), params["tasks"], template, params["n_pairs"])
    # the version the samples will carry (for the template backend, its templates' version, not the prompt file's)
    click.echo(f"prompt version {params['prompt_version']}; {len(requests)} request(s) for {len(items)} item(s)")
    for request in requests:
        click.secho(f"\n=== item {request.key[0]}  task {request.key[1]} ===", bold=True)
        if params["backend"] == "template":
            from curation.generation.templates import template_pairs

            made = template_pairs(request.context, request.task)
            if not made:
                click.echo("(no pair: nothing in the item's fields supports one)")
            for pair in made:
                click.echo(f"Q: {pair.question}\nA: {pair.answer}\n   evidence: " + "; ".join(f"{e['field']}: {e['text'][:60]!r}" for e in pair.evidence))
        else:
            for message in request.messages:
                click.echo(f"[{message['role']}]\n{message['content']}")


@generate.command("report")
@click.option("--backend", "only_backend", type=click.Choice(["openai", "hf", "template"]), help="Only samples of this backend.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def generate_report(only_backend, as_json) -> None:
    """Per task: the share of distinct answers, of "Unanswerable", the most repeated answers, and fact
    coverage (the share of each item's own attribute values that appear in some answer of that item).

    Exits with status 1 when a task breaks the repetition rule (one answer other than yes/no for more
    than 2% of the task's samples)."""
    from curation.generation.report import build_report, report_lines
    from db import quality
    from db.store import open_store

    lake = open_store(load_settings().store)
    report = build_report(quality.task_rows(lake, only_backend), quality.coverage_rows(lake, only_backend))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in report_lines(report):
            click.echo(line)
    if not report.within_rule:
        sys.exit(1)


@cli.command()
@click.option("--by", required=True, help="Comma-separated strata: category, brand, region, issue_type, time.")
@click.option("--per-stratum", type=click.IntRange(1), required=True, help="At most this many per stratum.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--of", "of", type=click.Choice(["samples", "items"]), default="samples", show_default=True)
@click.option("--time-bucket", type=click.Choice(["month", "quarter", "year"]), default="month", show_default=True)
@click.option("--task", "tasks", multiple=True, help="Only samples of this task (repeat).")
@click.option("--name", default="balanced", show_default=True, help="Name of the selection written (replaced if it exists).")
@click.option("--dry-run", is_flag=True, help="Print the balance table, write nothing.")
def sample(by, per_stratum, seed, of, time_bucket, tasks, name, dry_run) -> None:
    """Stratified sampling: at most N per stratum, deterministic for a seed; prints before/after balance."""
    from db import sampling
    from db.store import open_store

    lake = open_store(load_settings().store)
    strata = [b.strip() for b in by.split(",") if b.strip()]
    try:
        sql, params, names = sampling.stratified(lake, by=strata, per_stratum=per_stratum, seed=seed, of=of, time_bucket=time_bucket, tasks=list(tasks) or None)
    except ValueError as exc:
        _fail(str(exc))
    rows = sampling.balance(lake, sql, params, names)
    if not rows:
        _fail(f"no {of} to sample" + (" (generate some first: vitpro generate)" if of == "samples" else ""))
    shown = rows[:40]
    _echo_table([(*r[:-2], r[-2], r[-1]) for r in shown], (*names, "before", "after"))
    if len(rows) > len(shown):
        click.echo(f"... {len(rows) - len(shown)} more strata")
    before, after = sum(r[-2] for r in rows), sum(r[-1] for r in rows)
    click.echo(f"{len(rows)} strata: {before} {of} before, {after} after (at most {per_stratum} each, seed {seed})")
    if dry_run:
        return
    import uuid

    written = sampling.write_selection(lake, name, sql, params, names, seed, of, f"sample-{uuid.uuid4().hex[:8]}")
    click.echo(f"selection {name!r}: {written} {of}")


# ---- worker ------------------------------------------------------------------------------------------
@cli.command()
@click.option("--queues", "-Q", default="cpu,gpu,train", show_default=True, help="Comma-separated queues: cpu, gpu, train.")
@click.option("--concurrency", "-c", type=click.IntRange(1), default=None, help="Worker processes (default: CPU count for cpu, 1 when gpu/train are served).")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(queues, concurrency, pool, loglevel) -> None:
    """Run a Celery worker (foreground). Start as many as you like, on any machine that sees the store."""
    import os

    from jobs.broker import QUEUES
    from vitpro.local_workers import worker_command
    from workers.app import app

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        _fail(f"unknown queue(s) {', '.join(unknown)}; queues are {', '.join(QUEUES)}")
    if concurrency is None:
        concurrency = 1 if ({"gpu", "train"} & set(names)) else (os.cpu_count() or 1)
    s = load_settings()
    click.echo(f"worker on {','.join(names)} x{concurrency} ({pool}); broker {s.describe()['broker']}")
    argv = worker_command(",".join(names), concurrency, pool, loglevel)
    app.worker_main(argv[argv.index("worker"):])


# ---- jobs --------------------------------------------------------------------------------------------
@cli.group()
def jobs() -> None:
    """List, inspect, cancel and retry jobs."""


def _engine():
    from db.app_engine import write_engine
    from db.store import open_store

    s = load_settings()
    open_store(s.store)
    return write_engine(s.app_url)


def _find_job(job_id: str):
    """The job with this id (or the only one starting with it); exits with a message if none."""
    from db import jobs as jobs_db

    job = jobs_db.get_job(_engine(), job_id)
    if job is None:
        _fail(f"no job {job_id}")
    return job


def _fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


@jobs.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]))
@click.option("--kind")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
def jobs_list(status, kind, limit) -> None:
    """Recent jobs, newest first."""
    from db import jobs as jobs_db

    rows = jobs_db.list_jobs(_engine(), limit=limit, status=status, kind=kind)
    _echo_table(
        [(j.id, j.kind, j.status, f"{j.progress_done}/{j.progress_total}", j.launched_by, _fmt_time(j.created_at)) for j in rows],
        ("job", "kind", "status", "progress", "by", "created (UTC)"),
    )


@jobs.command("show")
@click.argument("job_id")
@click.option("--units", is_flag=True, help="List the work units too.")
@click.option("--log", "log_lines", type=click.IntRange(0), default=15, show_default=True, help="Log lines to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs_show(job_id, units, log_lines, as_json) -> None:
    """One job: parameters, progress, counts, error, log tail."""
    from db import jobs as jobs_db

    engine = _engine()
    job = _find_job(job_id)
    tail = jobs_db.log_tail(engine, job.id, log_lines) if log_lines else []
    if as_json:
        click.echo(json.dumps({
            "id": job.id, "kind": job.kind, "queue": job.queue, "status": job.status, "params": job.params,
            "progress": [job.progress_done, job.progress_total], "counts": job.counts, "error": job.error,
            "launched_by": job.launched_by, "created_at": _fmt_time(job.created_at), "started_at": _fmt_time(job.started_at),
            "finished_at": _fmt_time(job.finished_at), "log": [f"{_fmt_time(l.ts)} {l.level} {l.message}" for l in tail],
        }, indent=2, default=str))
        return
    click.echo(f"job       {job.id}\nkind      {job.kind} on {job.queue!r}\nstatus    {job.status}")
    click.echo(f"progress  {job.progress_done}/{job.progress_total}\nby        {job.launched_by}")
    click.echo(f"created   {_fmt_time(job.created_at)}  started {_fmt_time(job.started_at)}  finished {_fmt_time(job.finished_at)}")
    click.echo(f"params    {json.dumps(job.params, default=str)[:600]}")
    if job.counts:
        click.echo("counts    " + ", ".join(f"{k} {v}" for k, v in job.counts.items()))
    if job.error:
        click.secho(f"error     {job.error}", fg="red")
    if units:
        rows = jobs_db.job_units(engine, job.id)
        _echo_table([(u.id.rsplit(".", 1)[1], u.phase, u.status, u.attempts, f"{u.done}/{u.size}", (u.error or "")[:60]) for u in rows], ("unit", "phase", "status", "tries", "done", "error"))
    if tail:
        click.echo("log:")
        for line in tail:
            click.echo(f"  {_fmt_time(line.ts)} {line.level:<7} {line.message}")


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id) -> None:
    """Cancel a job: pending units are dropped, running ones stop after their current batch."""
    from jobs.submit import cancel_job

    job = _find_job(job_id)
    click.echo(f"job {job.id}: {cancel_job(job.id)}")


@jobs.command("retry")
@click.argument("job_id")
def jobs_retry(job_id) -> None:
    """Run the failed and cancelled units of a finished job again (writes are idempotent)."""
    from jobs.submit import retry_job

    job = _find_job(job_id)
    n = retry_job(job.id)
    click.echo(f"job {job.id}: {n} unit(s) sent again" if n else f"job {job.id} has nothing to retry ({job.status})")


@jobs.command("wait")
@click.argument("job_id")
def jobs_wait(job_id) -> None:
    """Wait for a job with a progress bar; exit code 0 only if it succeeded."""
    sys.exit(wait_for_job(_find_job(job_id).id))


@jobs.command("reap")
def jobs_reap() -> None:
    """Take back units of dead workers and resend lost messages now (workers also do this on a timer)."""
    from jobs.broker import client_for, reap_once

    _engine()
    click.echo(f"{reap_once(load_settings(), client_for())} unit(s) sent again")


# ---- errors and status -------------------------------------------------------------------------------
@cli.command()
@click.option("--job", "job_id", help="Only this job's errors.")
@click.option("--stage", type=click.Choice(["row", "image", "ocr"]))
@click.option("--limit", type=click.IntRange(1), default=30, show_default=True)
def errors(job_id, stage, limit) -> None:
    """Rows and images that were refused, with the reason (source rows shown redacted)."""
    from db import queries
    from db.store import open_store

    s = load_settings()
    lake = open_store(s.store)
    if job_id:
        job_id = _find_job(job_id).id
    summary = queries.error_summary(lake, job_id)
    if not summary:
        click.echo("no errors recorded")
        return
    _echo_table(summary, ("stage", "code", "count"))
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
    from db import batches
    from db import jobs as jobs_db
    from db import queries
    from db.store import open_store

    s = load_settings()
    lake = open_store(s.store)
    engine = _engine()
    counts = queries.stage_counts(lake)
    redactions = queries.redaction_totals(lake)
    ocr_redactions = batches.ocr_redaction_totals(lake)
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
    click.echo("redacted  " + (", ".join(f"{k} {v}" for k, v in redactions.items()) or "nothing") + " in item text; "
               + (", ".join(f"{k} {v}" for k, v in ocr_redactions.items()) or "nothing") + " in OCR text")
    click.echo(f"errors    {counts['errors']} recorded (vitpro errors)")
    click.echo("jobs      " + (", ".join(f"{k} {v}" for k, v in sorted(job_counts.items())) or "none"))
    click.echo(f"workers   {len(workers)} live" + (f": {', '.join(w.id + ' [' + w.queues + ']' for w in workers)}" if workers else ""))


# ---- demo --------------------------------------------------------------------------------------------
@cli.command()
@click.option("--no-ui", is_flag=True, help="Run the pipeline and print the summary; do not serve the web app after it.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the demo data (default: $VITPRO_HOME/demo-data).")
@click.option("--products", type=click.IntRange(4, 2000), default=24, show_default=True, help="Synthetic products (one catalog row and photo each).")
@click.option("--complaints", type=click.IntRange(2, 2000), default=16, show_default=True, help="Customer complaint transcripts (with damaged-product photos).")
@click.option("--workers", "n_workers", type=click.IntRange(1, 8), default=2, show_default=True, help="Worker processes to start.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="Port of the web app.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address the web app listens on (0.0.0.0: every interface).")
def demo(no_ui, out, products, complaints, n_workers, seed, port, address) -> None:
    """Build demo data, run every stage end to end through real workers (embedded defaults), then serve the
    web app on the result (Ctrl+C stops it; --no-ui stops after the pipeline)."""
    from .demo import run_demo

    sys.exit(run_demo(out=out, products=products, complaints=complaints, n_workers=n_workers, seed=seed, ui=not no_ui, port=port, address=address))


from . import cli_curate  # noqa: E402,F401  (registers filter, pilot and snapshot on the group)
from . import cli_samples  # noqa: E402,F401  (registers samples)
from . import cli_train  # noqa: E402,F401  (registers train, eval and ablate)
from . import cli_app  # noqa: E402,F401  (registers users and ui)


def main() -> None:
    cli(prog_name="vitpro")


if __name__ == "__main__":
    # `python -m vitpro.cli`: run the group of the imported module, on which cli_curate registered its commands
    from vitpro.cli import main as _main

    _main()
