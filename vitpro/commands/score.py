"""`vitpro score`: CLIPScore, VisAttnScore (store-wide as a job, or one sample here and now), aux stats, summaries and thresholds."""
from __future__ import annotations

import json

import click

from config.settings import load_settings
from jobs.registry import choices

from .group import cli, demo_banner, echo_table, fail, run_job


# ---- scores ------------------------------------------------------------------------------------------
@cli.group()
def score() -> None:
    """Score the store (CLIPScore, VisAttnScore, OCR stats) as jobs; query percentiles and thresholds."""


@score.command("clip")
@click.option("--model", envvar="VITPRO_CLIP_MODEL", default="ViT-B-32", show_default=True,
              help="open_clip model name, or a local folder in open_clip's format (env VITPRO_CLIP_MODEL).")
@click.option("--pretrained", default="openai", show_default=True, help="open_clip pretrained tag (ignored for folders).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--reduce", type=click.Choice(["mean", "max", "min"]), default="mean", show_default=True,
              help="How an item's several images become its score (max and min are stored too).")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def score_clip(model, pretrained, device, precision, batch_size, reduce, wait, local) -> None:
    """CLIPScore of every item with images not yet scored by this model (gpu queue)."""
    from curation.clip_score import ClipConfig, model_ref
    from jobs.clip_score import ClipScoreJob

    ref = model_ref(model)
    if not ref.startswith(("local-dir:", "hf-hub:")):
        if "/" in model or model.startswith("."):
            fail(f"{model}: no such model folder")
        import open_clip

        if model not in open_clip.list_models():
            fail(f"{model!r} is neither a model folder nor an open_clip model name")
    demo_banner(ref)
    config = ClipConfig(model=model, pretrained=pretrained, device=device, precision=precision, batch_size=batch_size, reduce=reduce)
    run_job("clip_score", ClipScoreJob(config).params(), wait=wait, local=local)


@score.command("grounding")
@click.option("--model", envvar="VITPRO_VLM_MODEL", required=True, type=click.Path(file_okay=False),
              help="A VLM checkpoint folder of any family in `vitpro models families` (env VITPRO_VLM_MODEL).")
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
@click.option("--on", "on", type=click.Choice(choices("grounding", "on")), default="samples", show_default=True,
              help="Store-wide: score generated samples, or items with their own text.")
@click.option("--selection", help="Store-wide: only the samples of this named selection (vitpro sample --name).")
@click.option("--json", "as_json", is_flag=True, help="Single-sample form: print JSON (tokens, words, scores, input_ids, positions).")
@click.option("--check", is_flag=True, help="Single-sample form: also compute the eager output_attentions reference and print the largest difference.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def score_grounding(model, device, dtype, segment, exclude_sinks, distance_correction, batch_size, images, question, answer, ocr_text, with_ocr, on, selection, as_json, check,
                    wait, local) -> None:
    """VisAttnScore (the paper's equation 2): per text token, its attention to the image in the VLM.

    \b
    Store-wide (a job on the gpu queue):  vitpro score grounding --model DIR [--on items]
    One sample, here and now:             vitpro score grounding --model DIR --image a.jpg \\
                                            --question "What is shown?" --answer "A leaking shampoo bottle" --json
    """
    from curation.vis_attn import VisAttnConfig

    config = VisAttnConfig(segment=segment, exclude_sinks=exclude_sinks, distance_correction=distance_correction)
    demo_banner(model)
    if images or question or answer:
        if not (images and answer):
            fail("the single-sample form needs --image and --answer (and usually --question)")
        _score_one(model, device, dtype, config, list(images), question or "", answer, ocr_text, as_json, check)
        return
    from jobs.grounding import GroundingJob

    try:
        params = GroundingJob(model=model, device=device, dtype=dtype, batch_size=batch_size, config=config, ocr=with_ocr, on=on, selection=selection).params()
    except ValueError as exc:
        fail(str(exc))
    run_job("grounding", params, wait=wait, local=local)


def _score_one(model, device, dtype, config, image_paths, question, answer, ocr_text, as_json, check) -> None:
    from curation.images import ImageError
    from curation.single_sample import score_one
    from curation.vlm import SampleError

    try:
        scored = score_one(model, device, dtype, config, image_paths, question, answer, ocr_text, check=check)
    except (ImageError, SampleError) as exc:
        fail(f"{exc.code}: {exc.message}")
    except (OSError, ValueError, RuntimeError) as exc:
        fail(str(exc))
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

    run_job("aux_stats", AuxStatsJob().params(), wait=wait, local=local)


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

    echo_table(
        [(r["subject_kind"], r["metric"], _short_model(r["model_id"]), r["segment"], r["n"], r["missing"], *(fmt(r[k]) for k in ("min", "p10", "p25", "median", "p75", "p90",
                                                                                                                                 "max"))) for r in rows],
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
    from db import metrics, queries
    from db.store import open_store

    if metric in metrics.METRICS:  # a per-segment stat asked without one means its answer's
        segment = segment or metrics.default_segment(metric)
    try:
        value, n = queries.score_threshold(open_store(load_settings().store), metric, percentile, model_id=model_id, segment=segment, subject_kind=subject_kind)
    except ValueError as exc:
        fail(str(exc))
    if n == 0:
        fail(f"no {metric} scores stored" + (f" for segment {segment!r}" if segment else ""))
    click.echo(f"{metric} at the {percentile:g}th percentile of {n} value(s): {value:.6g}")
