"""`vitpro train`, `vitpro eval` and `vitpro ablate`: LoRA fine-tuning, the benchmarks and the ablation grid,
each launched as a job on the train queue (--local starts a worker for the command when none serves it)."""
from __future__ import annotations

import json

import click

from config.settings import load_settings
from db.storage.locations import Location
from jobs.ablate import AblateJob
from jobs.eval import EvalJob

from ..spec_options import job_params, spec_option
from .group import cli, echo_table, fail, open_engine, run_job


def _model_options(fn):
    """Options that decide how the model is loaded and fed, shared by train, eval and ablate."""
    for option in reversed([
        click.option("--model", required=True, type=click.Path(exists=True, file_okay=False), help="Base VLM checkpoint folder, of any family in `vitpro models families`."),
        click.option("--ocr/--no-ocr", default=None, help="OCR tokens in the prompt (default: on, as the paper)."),
        click.option("--resolution", type=int, help="Longest image edge in pixels (IDEFICS2/3, Qwen, Mistral 3; default: the model's own)."),
        click.option("--splitting/--no-splitting", default=None, help="Image splitting: IDEFICS2/3 crops, Gemma 3 pan-and-scan, InternVL tiles (default: the checkpoint's)."),
        click.option("--4bit", "load_4bit", is_flag=True, default=None, help="Load the base model in 4 bits (bitsandbytes; CUDA only)."),
        click.option("--flash-attention", is_flag=True, default=None, help="FlashAttention-2 (CUDA with flash-attn only)."),
        click.option("--device", help="cpu, cuda, cuda:1 ... (default: cpu)."),
        click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Weights' dtype (default float32; bfloat16 on a GPU)."),
        click.option("--holdout", type=float, help="Share of products held out of training for evaluation (default 0.1). Use the same value for train and eval."),
        click.option("--seed", type=int, help="Seed of the split, the data order and LoRA's initial weights (default 0)."),
    ]):
        fn = option(fn)
    return fn


def _config(preset_name: str = "paper", config_file=None, **overrides):
    """The training settings: the preset, then what the config file sets, then the command's options."""
    from trainer.config import preset

    try:
        base = preset(preset_name)
    except ValueError as exc:
        fail(str(exc))
    if config_file:
        base = config_from_file(base, config_file)
    try:
        return base.with_overrides(**overrides)
    except (ValueError, TypeError) as exc:
        fail(str(exc))


def config_from_file(base, path):
    """``base`` (a TrainConfig) with the settings of a YAML file of TrainConfig's fields over it: ``lora``
    and ``images`` as nested mappings (as TrainConfig.from_dict reads them), each key checked and typed.
    What the file leaves out keeps the base's value, within ``lora`` and ``images`` too."""
    from pathlib import Path

    import yaml

    from config.fields import FieldError, build
    from trainer.config import TrainConfig

    from ..recipes import read_yaml

    try:
        data = read_yaml(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML: {exc}")
    if data is None:
        return base
    if not isinstance(data, dict):
        fail(f"{path}: a mapping of training settings (TrainConfig's fields: lora, images, epochs, learning_rate, ...), not {type(data).__name__}")
    merged = base.to_dict()
    for key, value in data.items():
        if key in ("lora", "images") and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        return build(TrainConfig, merged)
    except FieldError as exc:
        fail(f"{path}: {exc.field}: {exc.message}" if exc.field else f"{path}: {exc.message}")


# ---- train --------------------------------------------------------------------------------------------
@cli.group()
def train() -> None:
    """LoRA fine-tuning of a VLM on a snapshot (the paper's settings by default)."""


def _training_options(fn):
    """What a run is: shared by `train run` (a job) and `train spec` (a run started by hand on several machines)."""
    for option in reversed([
        click.option("--name", help="Run name (default train-<time>)."),
        click.option("--preset", "preset_name", type=click.Choice(["paper", "multi_image"]), default="paper", show_default=True,
                     help="paper: r=256, alpha=32, lr 2e-4, batch 8. multi_image: r=8, alpha=16, lr 1e-5, batch 16, accumulation 8, 2-5 images."),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                     help="A YAML file of training settings (TrainConfig's fields; lora and images nested) over the preset; the options here override it."),
        click.option("--r", "r", type=int, help="LoRA rank."),
        click.option("--alpha", type=int, help="LoRA alpha."),
        click.option("--dropout", type=float, help="LoRA dropout."),
        click.option("--parts", help="Comma-separated parts that get LoRA: vision, connector, language (default: all three)."),
        click.option("--epochs", type=float),
        click.option("--lr", "learning_rate", type=float, help="Learning rate."),
        click.option("--batch-size", type=int),
        click.option("--grad-accum", type=int, help="Gradient accumulation steps."),
        click.option("--max-steps", type=int, help="Stop after this many optimiser steps (default: what the epochs give)."),
        click.option("--gradient-checkpointing", is_flag=True, default=None, help="Recompute activations: less memory, slower."),
        click.option("--checkpoint-every", type=int, help="Optimiser steps between checkpoints (default 50)."),
        click.option("--nproc", type=click.IntRange(1), help="Data-parallel processes on the worker: one per GPU (NCCL), or gloo processes on a CPU (default 1). "
                     "Each takes batch-size samples of every micro-batch."),
        click.option("--loader-workers", type=click.IntRange(0), help="Processes per training process that read and encode examples ahead (default 2)."),
        click.option("--out", help="Run folder or s3://bucket/prefix (default $VITPRO_OUT_PATH/runs/NAME; $VITPRO_OUT_PATH is $VITPRO_HOME unless set)."),
    ]):
        fn = option(fn)
    return fn


def _training_params(snapshot, model, name, preset_name, parts, out, overrides, config_file=None):
    """The run's name, config and job parameters from the command's options (refusals as usage errors)."""
    from db.app import snapshots, training
    from jobs.train import TrainJob

    engine = open_engine()
    name = name or training.default_name("train")
    try:
        snapshots.get(engine, snapshot)
        training.check_new_name(engine, run=name)
    except (snapshots.SnapshotError, training.RunError) as exc:
        fail(str(exc))
    overrides["longest_edge"] = overrides.pop("resolution")
    if parts:
        overrides["parts"] = [p.strip() for p in parts.split(",") if p.strip()]
    config = _config(preset_name, config_file, **overrides)
    out = out or load_settings().output("runs", name)
    try:
        params = TrainJob(snapshot=snapshot, model=model, name=name, config=config, out=str(out)).params()
    except ValueError as exc:
        fail(str(exc))
    return name, config, params


@train.command("run")
@click.argument("snapshot")
@_model_options
@_training_options
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the train queue.")
def train_run(snapshot, model, name, preset_name, config_file, parts, out, wait, local, **overrides) -> None:
    """Train on SNAPSHOT's training products; the final adapter lands in OUT/adapter with its config.

    The settings are the preset's, then a --config file's, then the options given here."""
    name, config, params = _training_params(snapshot, model, name, preset_name, parts, out, overrides, config_file)
    click.echo(f"run {name!r}: LoRA r={config.lora.r} alpha={config.lora.alpha} dropout={config.lora.dropout} on {', '.join(config.lora.parts)}; "
               f"{config.epochs:g} epoch(s), lr {config.learning_rate:g}, batch {config.batch_size} x {config.grad_accum}"
               + (f" on each of {config.nproc} processes" if config.nproc > 1 else ""))
    run_job("train", params, wait=wait, local=local)
    if wait:
        _show_run(name)


@train.command("spec")
@click.argument("snapshot")
@_model_options
@_training_options
@click.option("--output", "-o", "spec_file", required=True, type=click.Path(dir_okay=False), help="Where to write the run's spec (JSON).")
def train_spec(snapshot, model, name, preset_name, config_file, parts, out, spec_file, **overrides) -> None:
    """Write a run's spec for torchrun on several machines, and register the run (no job is queued).

    \b
    On every machine (the same spec, the model folder and VITPRO_* settings of a worker):
      torchrun --nnodes M --nproc-per-node G --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id NAME -m trainer.ranks SPEC
    --nproc is then the processes per machine; its batch size is per process.
    """
    from pathlib import Path

    from db.app import training
    from trainer.ranks import RunSpec

    name, config, params = _training_params(snapshot, model, name, preset_name, parts, out, overrides, config_file)
    # a run into S3 trains in each machine's scratch folder and sends its checkpoints there
    work_dir = str(Location.of(params["out"]).workspace(load_settings().home / "scratch" / "runs" / name).path)
    training.create_run(open_engine(), name=name, snapshot=snapshot, base_model=params["model"], config=params["config"], out_dir=params["out"],
                        created_by=load_settings().user)
    RunSpec(name=name, snapshot=snapshot, model=params["model"], config=params["config"], work_dir=work_dir, out=params["out"]).save(Path(spec_file))
    click.echo(f"run {name!r} registered; spec in {spec_file}. On each machine:")
    click.echo(f"  torchrun --nnodes NODES --nproc-per-node {config.nproc} --rdzv-backend c10d --rdzv-endpoint HOST:29400 --rdzv-id {name} "
               f"-m trainer.ranks {spec_file}")
    click.echo(f"then: vitpro train show {name}")


@train.command("list")
def train_list() -> None:
    """Training runs with their status and last loss."""
    from db.app import training

    rows = []
    for r in training.list_runs(open_engine()):
        rows.append((r.name, r.snapshot, training.run_status(open_engine(), r), f"{r.steps_done}/{r.total_steps or '?'}", _fmt(r.summary.get("final_loss")), r.out_dir))
    echo_table(rows, ("name", "snapshot", "status", "steps", "final loss", "folder"))


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _show_run(name: str) -> None:
    from curation.svg_plots import sparkline
    from db.app import training

    try:
        run = training.get_run(open_engine(), name)
    except training.RunError as exc:
        fail(str(exc))
    steps = training.steps(open_engine(), run.id)
    click.secho(f"training run {run.name!r}: {training.run_status(open_engine(), run)}", bold=True)
    click.echo(f"  snapshot {run.snapshot}, base model {run.base_model}, job {run.job_id}")
    lora = run.config["lora"]
    click.echo(f"  LoRA r={lora['r']} alpha={lora['alpha']} dropout={lora['dropout']} on {', '.join(lora['parts'])}; lr {run.config['learning_rate']:g}, "
               f"batch {run.config['batch_size']} x {run.config['grad_accum']}, OCR {'on' if run.config['ocr'] else 'off'}")
    click.echo(f"  steps {run.steps_done}/{run.total_steps or '?'}")
    if steps:
        losses = [s.loss for s in steps]
        top, low = max(losses), min(losses)
        scaled = [int(round(1000 * (v - low) / (top - low))) if top > low else 1 for v in losses[-60:]]
        click.echo(f"  loss  |{sparkline(scaled)}|  first {losses[0]:.4f}, last {losses[-1]:.4f}, lowest {low:.4f}")
        click.echo(f"  lr    {steps[0].learning_rate:.3g} -> {steps[-1].learning_rate:.3g};  "
                   f"{sum(s.tokens for s in steps) / max(1e-9, sum(s.seconds for s in steps)):.0f} tokens/s")
    if run.summary.get("processes"):
        wait = run.summary.get("data_wait_share")
        click.echo(f"  {run.summary['processes']} process(es), {run.summary.get('examples')} training samples"
                   + (f"; {wait:.1%} of step time waiting for data" if wait is not None else ""))
    if run.summary.get("adapter"):
        click.echo(f"  adapter {run.summary['adapter']}")
    if run.summary.get("skipped"):
        click.echo("  left out " + ", ".join(f"{k} {v}" for k, v in run.summary["skipped"].items()))


@train.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Steps (loss, learning rate) as JSON lines.")
def train_show(name, as_json) -> None:
    """A run's settings, progress and loss curve."""
    from db.app import training

    if as_json:
        try:
            run = training.get_run(open_engine(), name)
        except training.RunError as exc:
            fail(str(exc))
        for s in training.steps(open_engine(), run.id):
            click.echo(json.dumps({"step": s.step, "epoch": s.epoch, "loss": s.loss, "learning_rate": s.learning_rate, "tokens": s.tokens, "seconds": s.seconds}))
        return
    _show_run(name)


# ---- eval ---------------------------------------------------------------------------------------------
def _eval_running_options(spec):
    """How evaluation items are run, shared by eval and ablate (each from its own spec's fields)."""

    def add(fn):
        fn = spec_option(spec, "objective_mode", help="Objective yes/no benchmark: generate an answer and parse it (the paper's), or logprob: "
                         "P(yes) against P(no) of the first answer token, one forward pass (p_yes per item in the JSONL).")(fn)
        return spec_option(spec, "batch_size", help="Items generated at once (left-padded prompts; greedy answers are the same as one at a time).")(fn)

    return add


@cli.group("eval")
def eval_group() -> None:
    """Benchmarks on a snapshot's held-out products: objective yes/no, generative (LLM judge), attributes."""


@eval_group.command("run")
@click.argument("snapshot")
@_model_options
@click.option("--adapter", help="A training run's name or an adapter folder (none: the base model alone).")
@click.option("--name", help="Evaluation name (default eval-<time>).")
@spec_option(EvalJob, "benchmarks", "--benchmark", "benchmarks", help="Repeat for several (default: objective and attributes; generative needs --judge-url).")
@click.option("--judge-url", help="OpenAI-compatible base URL of the judge LLM (…/v1); its key from VITPRO_LLM_API_KEY.")
@click.option("--judge-model", default="judge", show_default=True)
@spec_option(EvalJob, "k_shot", "--k", "k_shot", help="In-context examples per question, random from the same category.")
@spec_option(EvalJob, "examples", "--example", "examples", help="A hand-picked in-context example (a training sample id); repeat. Overrides --k.")
@spec_option(EvalJob, "baseline", help="Another evaluation to report this one against (percentage points).")
@spec_option(EvalJob, "limit", help="At most this many items per task (objective) or in all (others).")
@_eval_running_options(EvalJob)
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the train queue.")
def eval_run(snapshot, model, adapter, name, benchmarks, judge_url, judge_model, k_shot, examples, baseline, limit, batch_size, objective_mode, wait, local,
             **overrides) -> None:
    """Evaluate a model (with a trained adapter or without) on SNAPSHOT's held-out products."""
    from db.app import snapshots, training

    engine = open_engine()
    name = name or training.default_name("eval")
    try:
        snapshots.get(engine, snapshot)
        if baseline:
            training.get_eval(engine, baseline)
        training.check_new_name(engine, evaluation=name)
    except (snapshots.SnapshotError, training.RunError) as exc:
        fail(str(exc))
    judge = None
    if judge_url:
        from curation.generation.backends import OpenAIChatBackend

        judge = {"base_url": judge_url, "model": judge_model, "temperature": 0.0, "max_tokens": 256}
        try:
            OpenAIChatBackend(**judge)
        except ValueError as exc:
            fail(str(exc))
    config = _config(**{k: v for k, v in overrides.items() if k in ("ocr", "longest_edge", "splitting", "load_4bit", "flash_attention", "device", "dtype", "holdout", "seed")},
                     longest_edge=overrides.get("resolution"))
    params = job_params(EvalJob, name=name, snapshot=snapshot, model=model, adapter=adapter, benchmarks=list(benchmarks) or None, config=config,
                        k_shot=k_shot, examples=list(examples), judge=judge, baseline=baseline, limit=limit,
                        batch_size=batch_size, objective_mode=objective_mode, out=load_settings().output("evals", name))
    run_job("eval", params, wait=wait, local=local)
    if wait:
        _show_eval(name, baseline)


@eval_group.command("list")
def eval_list() -> None:
    """Evaluations and ablations."""
    from db.app import training

    rows = [(e.name, e.snapshot, "ablation" if e.config.get("kind") == "ablation" else ",".join(e.config.get("benchmarks", [])),
             e.adapter or "(base)", e.baseline or "", "yes" if e.results else "no") for e in training.list_evals(open_engine())]
    echo_table(rows, ("name", "snapshot", "benchmarks", "adapter", "baseline", "results"))


def _show_eval(name: str, baseline: str | None = None) -> None:
    from db.app import training
    from trainer.evaluate import accuracies
    from trainer.metrics import relative_to

    engine = open_engine()
    try:
        ev = training.get_eval(engine, name)
        base = training.get_eval(engine, baseline or ev.baseline) if (baseline or ev.baseline) else None
    except training.RunError as exc:
        fail(str(exc))
    click.secho(f"evaluation {ev.name!r} of {ev.model}" + (f" + {ev.adapter}" if ev.adapter else " (no adapter)"), bold=True)
    if not ev.results:
        click.echo("  no results yet (see `vitpro jobs show " + str(ev.job_id) + "`)")
        return
    if "table" in ev.results:
        click.echo(ev.results["table"])
        return
    rel = relative_to(accuracies(ev.results), accuracies(base.results)) if base is not None else {}
    for bench in ("objective", "generative", "attributes"):
        scores = ev.results.get(bench)
        if scores is None:
            continue
        m = ev.results.get("measures", {}).get(bench, {})
        how = (f", batch {m['batch_size']}" if "batch_size" in m else "") + (f", {m['objective_mode']} mode" if "objective_mode" in m else "")
        click.secho(f"  {bench}: {m.get('items', 0)} item(s), {m.get('seconds_per_item', 0):.3f} s/item{how}, peak {m.get('peak_memory_gb', 0):.2f} GB", bold=True)
        if bench == "objective":
            rows = [(t, v["n"], f"{100 * v['accuracy']:.1f}", f"{100 * v['precision']:.1f}", f"{100 * v['recall']:.1f}", f"{100 * v['f1']:.1f}",
                     f"{100 * v['yes_ratio']:.1f}", v["unparsed"], _rel(rel, f"objective/{t}")) for t, v in scores.items()]
            echo_table(rows, ("task", "n", "acc %", "prec %", "rec %", "F1 %", "yes %", "unparsed", "vs baseline"))
        elif bench == "generative":
            rows = [(t, v["n"], f"{100 * v['accuracy']:.1f}", v["unparsed"], _rel(rel, f"generative/{t}")) for t, v in scores.items()]
            echo_table(rows, ("task", "n", "judged match %", "judge unparsed", "vs baseline"))
        else:
            rows = [(k, v["n"], v["correct"], f"{100 * v['accuracy']:.1f}", _rel(rel, f"attributes/{k}")) for k, v in scores.items()]
            echo_table(rows, ("attribute", "n", "exact", "acc %", "vs baseline"))
    if base is not None:
        click.echo(f"  (vs baseline: points against evaluation {base.name!r}, as the paper reports results)")


def _rel(rel: dict, key: str) -> str:
    return f"{rel[key]:+.1f}" if key in rel else ""


@eval_group.command("show")
@click.argument("name")
@click.option("--baseline", help="Report against this evaluation instead of the one it was run against.")
def eval_show(name, baseline) -> None:
    """An evaluation's tables (accuracy, precision, recall, F1, yes-ratio per task; attributes; judge)."""
    _show_eval(name, baseline)


# ---- ablate -------------------------------------------------------------------------------------------
@cli.command()
@click.argument("snapshot")
@_model_options
@click.option("--adapter", help="A training run's name or an adapter folder (needed for the adapter factor).")
@click.option("--grid", "grid_specs", multiple=True, required=True, metavar="FACTOR=V1,V2",
              help="ocr=on,off  resolution=native,224,378,512,980  splitting=on,off  4bit=off,on  flash=off,on  adapter=on,off. Repeat.")
@click.option("--full", is_flag=True, help="Every combination instead of one factor at a time.")
@click.option("--name", help="Name (default ablate-<time>).")
@click.option("--limit", type=int, help="At most this many items per task in each cell.")
@_eval_running_options(AblateJob)
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the train queue.")
def ablate(snapshot, model, adapter, grid_specs, full, name, limit, batch_size, objective_mode, wait, local, **overrides) -> None:
    """Evaluate a grid of settings on the objective benchmark; writes a table like the paper's Tables 5-8
    (accuracy per task, change against the default, s/item, peak memory)."""
    from db.app import training
    from trainer.ablation import parse_grid

    try:
        grid = parse_grid(list(grid_specs))
    except ValueError as exc:
        fail(str(exc))
    name = name or training.default_name("ablate")
    try:  # an ablation is an evaluation row and folder of its own: never one already made
        training.check_new_name(open_engine(), evaluation=name)
    except training.RunError as exc:
        fail(str(exc))
    config = _config(**{k: v for k, v in overrides.items() if k in ("ocr", "splitting", "load_4bit", "flash_attention", "device", "dtype", "holdout", "seed")},
                     longest_edge=overrides.get("resolution"))
    out = load_settings().output("evals", name)
    params = job_params(AblateJob, name=name, snapshot=snapshot, model=model, adapter=adapter, grid=grid, full=full, config=config, limit=limit, out=str(out),
                        batch_size=batch_size, objective_mode=objective_mode)
    click.echo(f"ablation {name!r}: {len(params['cells'])} cell(s)")
    run_job("ablate", params, wait=wait, local=local)
    if wait:
        _show_eval(name)
        click.echo(f"  table: {Location.of(out).join('ablation.md')}")
