"""`vitpro score`: CLIPScore, VisAttnScore (store-wide as a job, or one sample here and now), aux stats, summaries and thresholds."""
from __future__ import annotations

import json

import click

from config.settings import load_settings
from jobs.clip_score import ClipScoreJob
from jobs.grounding import GroundingJob

from ..spec_options import job_params, spec_option
from .group import cli, demo_banner, echo_table, fail, run_job


# ---- scores ------------------------------------------------------------------------------------------
@cli.group()
def score() -> None:
    """Score the store (CLIPScore, VisAttnScore, OCR stats) as jobs; query percentiles and thresholds."""


@score.command("clip")
@spec_option(ClipScoreJob, "config.model", envvar="VITPRO_CLIP_MODEL",
             help="open_clip model name, or a local folder in open_clip's format (env VITPRO_CLIP_MODEL).")
@spec_option(ClipScoreJob, "config.pretrained")
@spec_option(ClipScoreJob, "config.device")
@spec_option(ClipScoreJob, "config.precision")
@spec_option(ClipScoreJob, "config.batch_size")
@spec_option(ClipScoreJob, "config.reduce")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def score_clip(model, pretrained, device, precision, batch_size, reduce, wait, local) -> None:
    """CLIPScore of every item with images not yet scored by this model (gpu queue)."""
    from curation.clip_score import ClipConfig, model_ref

    demo_banner(model_ref(model))
    config = ClipConfig(model=model, pretrained=pretrained, device=device, precision=precision, batch_size=batch_size, reduce=reduce)
    run_job("clip_score", job_params(ClipScoreJob, config=config), wait=wait, local=local)


@score.command("grounding")
@spec_option(GroundingJob, "model", envvar="VITPRO_VLM_MODEL", type=click.Path(file_okay=False),
             help="A VLM checkpoint folder of any family in `vitpro models families` (env VITPRO_VLM_MODEL).")
@spec_option(GroundingJob, "device")
@spec_option(GroundingJob, "dtype")
@spec_option(GroundingJob, "config.segment")
@spec_option(GroundingJob, "config.exclude_sinks")
@spec_option(GroundingJob, "config.distance_correction")
@spec_option(GroundingJob, "batch_size")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Single-sample form: score this image (repeat for several) ...")
@click.option("--question", help="... with this question ...")
@click.option("--answer", help="... and this answer, here and now (no job).")
@click.option("--ocr", "ocr_text", help="Single-sample form: OCR tokens to put in the prompt.")
@spec_option(GroundingJob, "ocr", "--with-ocr/--without-ocr", "with_ocr")
@spec_option(GroundingJob, "signals", comma=True)
@spec_option(GroundingJob, "blind_ocr")
@spec_option(GroundingJob, "on")
@spec_option(GroundingJob, "selection")
@click.option("--json", "as_json", is_flag=True, help="Single-sample form: print JSON (tokens with their A(t) and gain, words, scores, "
                                                      "input_ids, positions, and the prompt without the images).")
@click.option("--check", is_flag=True, help="Single-sample form: also compute the eager output_attentions reference and print the largest difference.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def score_grounding(model, device, dtype, segment, exclude_sinks, distance_correction, batch_size, images, question, answer, ocr_text, with_ocr, signals,
                    blind_ocr, on, selection, as_json, check, wait, local) -> None:
    """VisAttnScore (the paper's equation 2): per text token, its attention to the image in the VLM; and the
    visual information gain: per token, log p with the image minus log p without it; and the VLM judge's p(yes)
    that the image shows what the answer says (--signals).

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
        if "attention" not in signals:
            fail("--signals: attention is always computed (the with-image pass is its forward); e.g. --signals attention,gain")
        _score_one(model, device, dtype, config, list(images), question or "", answer, ocr_text, as_json, check, "gain" in signals, blind_ocr,
                   "judge" in signals)
        return
    params = job_params(GroundingJob, model=model, device=device, dtype=dtype, batch_size=batch_size, config=config, ocr=with_ocr, on=on,
                        selection=selection, signals=list(signals), blind_ocr=blind_ocr)
    run_job("grounding", params, wait=wait, local=local)


def _score_one(model, device, dtype, config, image_paths, question, answer, ocr_text, as_json, check, gain=True, blind_ocr=True, judge=True) -> None:
    from curation.images import ImageError
    from curation.single_sample import score_one
    from curation.vlm import SampleError

    try:
        scored = score_one(model, device, dtype, config, image_paths, question, answer, ocr_text, check=check, gain=gain, blind_ocr=blind_ocr, judge=judge)
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
    if result.judge_yes is not None:
        click.echo(f"VLM judge, p(yes) to \"does the image show what the answer says?\": {result.judge_yes:.4g}   "
                   f"(p(yes) + p(no) = {result.judge_mass:.3g} of the next-token mass)")
    found = getattr(result, "gain", None)
    if found is not None:
        m = found.metrics()
        click.echo(f"visual information gain: {m['vis_gain']:.6g}   log p with the image: {m['with_logp']:.6g}   without: {m['blind_logp']:.6g}")
    width = max(len(w) for w in result.words) if result.words else 0
    if found is not None and found.words == result.words:
        click.echo(f"  {'word':<{width}}  {'A(t)':>12}  {'gain':>10}")
        for word, value, g in zip(result.words, result.word_scores, found.word_gain):
            click.echo(f"  {word:<{width}}  {value:12.6g}  {g:10.4g}")
    else:
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
    from db.reads import queries
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
    from db.lake import metrics
    from db.reads import queries
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
