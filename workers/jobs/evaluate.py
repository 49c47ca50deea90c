"""The evaluation job (train queue): a model, or a model plus a trained adapter, on the held-out products
of a snapshot. One unit per benchmark (objective, generative, attributes); finalize gathers the scores
into the evaluation's row, with the latency per item, the batch size and the peak memory. Items run
``batch_size`` at a time and their predictions are written to the benchmark's JSONL as they come.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from curation import snapshots
from db.app import training
from db.app.jobs import UnitSpec, work_results
from db.storage.locations import Location
from jobs.ablate import AblateJob
from jobs.eval import EvalJob
from trainer import snapshot_set
from trainer.config import TrainConfig

from .. import models, outputs
from ..runtime import PermanentError, UnitContext
from .registry import add_handler


def resolve_adapter(engine, adapter: str | None) -> str | None:
    """A training run's name or an adapter folder, as the folder."""
    if not adapter:
        return None
    given = Location.of(adapter)
    if not given.is_local:  # a URL: each unit copies it to its own worker (models.local)
        return str(given)
    if given.exists():
        return str(given.absolute())
    try:
        run = training.get_run(engine, adapter)
    except training.RunError as exc:
        raise PermanentError(f"{exc}; or give an adapter folder") from exc
    folder = Location.of(run.out_dir).join("adapter")
    # whole once its last file is there: training_config.json is uploaded last to S3; on disk the folder
    # appears by a rename, with peft's adapter_config.json in it
    if not folder.join("adapter_config.json" if folder.is_local else "training_config.json").is_file():
        raise PermanentError(f"training run {adapter!r} has no final adapter yet (status {run.status})")
    return str(folder)


def claim_eval(ctx: UnitContext, name: str, **values: Any) -> None:
    """The evaluation row this job writes into, made on its first plan and found again on a retry; an
    evaluation of the name that another job made is refused, never taken over (its results would be
    overwritten): the launch checks guard the command line and the page, not every way a job is sent."""
    try:
        owner = training.get_eval(ctx.engine, name).job_id
    except training.RunError:
        owner = None
    if owner not in (None, ctx.job_id):
        raise PermanentError(f"an evaluation named {name!r} belongs to job {owner}; pick another --name")
    try:
        training.ensure_eval(ctx.engine, name=name, job_id=ctx.job_id, created_by=ctx.settings.user, **values)
    except training.RunError as exc:  # made by another job between the two reads
        raise PermanentError(str(exc)) from exc


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    job: EvalJob = ctx.spec
    adapter = resolve_adapter(ctx.engine, job.adapter)
    claim_eval(ctx, job.name, snapshot=job.snapshot, model=job.model, adapter=adapter, config=ctx.params, baseline=job.baseline)
    return [UnitSpec({"benchmark": b, "adapter": adapter}, 1) for b in job.benchmarks], {}


def training_split(adapter_dir: str | None, config: TrainConfig) -> tuple[float, int, dict[str, Any] | None]:
    """The held-out share, seed and split basis (trainer.snapshot_set.split_basis) that split a snapshot's
    products: those the adapter was trained with (its training_config.json), since other values would evaluate
    it on products it was trained on. An adapter split by product (trained before splits went by near-duplicate
    group, which recorded no basis, or before any grouping was made) is marked ``possibly_leaking``. The evaluation's own holdout and seed and
    no basis (the store's current one) for the base model, or for an adapter trained elsewhere."""
    meta = Path(adapter_dir) / "training_config.json" if adapter_dir else None
    if meta is None or not meta.is_file():
        return config.holdout, config.seed, None
    try:
        found = json.loads(meta.read_text())
        trained = TrainConfig.from_dict(found["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"cannot read the adapter's training settings ({meta}): {exc}") from exc
    basis = found.get("split") if isinstance(found.get("split"), dict) else {"by": "product"}
    if basis.get("by") != "dup_group":  # trained before splits by group, or before any grouping was made
        basis = {**basis, "possibly_leaking": True}
    return trained.holdout, trained.seed, basis


def split_keys_of(ctx: UnitContext, snapshot: str, rows: list[dict[str, Any]], basis: dict[str, Any]) -> dict[str, str]:
    """The rows' split keys under ``basis`` (products tied by near-duplicate photos share one)."""
    from trainer import benchmarks as bm

    if basis.get("by") != "dup_group":
        return {}
    members = snapshots.members_sql(ctx.lake, snapshots.get(ctx.engine, snapshot))
    return snapshot_set.split_keys(ctx.lake, members, {r["sample_id"]: bm.split_key(r) for r in rows}, basis)


def evaluate_benchmark(ctx: UnitContext, job: EvalJob | AblateJob, benchmark: str, adapter_dir: str | None, config: TrainConfig,
                       out_file: Path | None, *, split_from: str | None = None) -> dict[str, Any]:
    """Build the benchmark's items from the held-out products, run the model, score; one benchmark.
    ``split_from``: the adapter whose training split picks the held-out products (an ablation's cells
    without the adapter are evaluated on the same products as those with it)."""
    from trainer import benchmarks as bm
    from trainer.evaluate import JUDGE_PROMPT_VERSION, AnswerTokensError, PeakMemory, batch_size_for, judge, predict, score_attributes, score_objective
    from trainer.lora import AcceleratorError

    from .. import models

    try:
        rows = snapshots.eval_rows(ctx.lake, ctx.engine, job.snapshot)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    holdout, seed, basis = training_split(split_from, config)
    if (holdout, seed) != (config.holdout, config.seed):
        ctx.log(f"{benchmark}: held-out products as the adapter was trained ({holdout:.0%} of products, seed {seed}), "
                f"not the evaluation's own holdout {config.holdout:.0%} and seed {config.seed}")
    if basis is None:
        basis = snapshot_set.split_basis(ctx.lake)
    if basis.get("possibly_leaking"):
        ctx.log(f"{benchmark}: the adapter's held-out products were split by product, not by near-duplicate group: near-duplicate "
                "photos may be on both sides, so its scores may be too high (`vitpro snapshot leaks --by product` lists them)", level="warning")
    keys = split_keys_of(ctx, job.snapshot, rows, basis)
    train_rows, held_out = bm.split_rows(rows, holdout, seed, keys)
    limit = job.limit
    brands = bm.brand_index(rows)  # the whole snapshot's brands, to find one in a held-out product's title
    items = {"objective": lambda: bm.objective_items(held_out, config.seed, limit, known_brands=brands),
             "generative": lambda: bm.generative_items(held_out, limit),
             "attributes": lambda: bm.attribute_items(held_out, limit, known_brands=brands)}[benchmark]()
    if not items:
        ctx.log(f"{benchmark}: the held-out products give no items; nothing to evaluate", level="warning")
        return {"items": 0, "scores": {}}
    try:
        bm.add_examples(items, train_rows, job.k_shot, picked=list(job.examples) or None, seed=config.seed)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    try:
        adapter = models.eval_vlm(job.model, adapter_dir, config)
    except (AcceleratorError, FileNotFoundError) as exc:
        raise PermanentError(str(exc)) from exc
    asked = job.batch_size
    batch_size = batch_size_for(adapter, asked)
    if batch_size != asked:
        ctx.log(f"{benchmark}: {adapter.family} generates one item at a time, not {asked} ({adapter.batched_generation_note})")
    mode = job.objective_mode
    # the predictions go to ``<name>.partial`` as they come; the JSONL is written when the benchmark is done
    partial = out_file.with_name(out_file.name + ".partial") if out_file is not None else None
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
    with PeakMemory(config.device) as memory, (partial.open("w", encoding="utf-8") if partial else nullcontext()) as sink:
        def write(prediction) -> None:
            if sink is not None:
                sink.write(json.dumps(prediction.to_dict(), ensure_ascii=False) + "\n")
                sink.flush()

        try:
            predictions = predict(adapter, items, benchmark, ctx.blobs, ocr=config.ocr, batch_size=batch_size, objective_mode=mode,
                                  progress=ctx.progress, check=ctx.check, on_prediction=write)
        except AnswerTokensError as exc:  # the logprob mode on a tokenizer whose "yes" and "no" start alike
            raise PermanentError(str(exc)) from exc
    failed = sum(1 for x in predictions if x.error)
    result: dict[str, Any] = {
        "items": len(items), "failed_items": failed, "seconds_per_item": sum(x.seconds for x in predictions) / len(predictions),
        "batch_size": batch_size, "peak_memory_gb": round(memory.peak / 2**30, 4), "held_out_products": len({r.get("product") for r in held_out}),
        "split": {k: v for k, v in basis.items() if k != "possibly_leaking"},
    }
    if basis.get("possibly_leaking"):
        result["possibly_leaking"] = True
    if benchmark == "objective":
        result["objective_mode"] = mode
    records = [x.to_dict() for x in predictions]
    if benchmark == "objective":
        result["scores"] = score_objective(predictions)
    elif benchmark == "attributes":
        result["scores"] = score_attributes(predictions)
    else:
        from curation.generation.backends import OpenAIChatBackend

        backend = OpenAIChatBackend(**job.judge)
        result["scores"], verdicts = judge(predictions, backend)
        result["judge"] = {"model": backend.model_id, "prompt_version": JUDGE_PROMPT_VERSION}
        for rec, verdict in zip(records, verdicts):
            rec["judge"] = verdict
    if failed:
        ctx.log(f"{benchmark}: {failed} item(s) could not be run (counted wrong), e.g. {next(x.error for x in predictions if x.error)}", level="warning")
    if out_file is not None:  # written again in the items' order (the batches ran by size), with the judge's verdicts
        partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        partial.replace(out_file)
    return result


def run(ctx: UnitContext) -> dict[str, Any]:
    job: EvalJob = ctx.spec
    benchmark = ctx.payload["benchmark"]
    config = job.config
    adapter = models.local(ctx.payload["adapter"])  # an adapter in S3: copied to this worker once
    predictions = outputs.folder(ctx) / f"{benchmark}.jsonl"
    result = evaluate_benchmark(ctx, job, benchmark, adapter, config, predictions, split_from=adapter)
    outputs.publish(ctx, predictions)
    ctx.log(f"{benchmark}: {result['items']} item(s), {result.get('seconds_per_item', 0):.3f} s/item")
    return {"benchmark": benchmark, "result": result, "items": result["items"]}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for r in work_results(ctx.engine, ctx.job_id):
        if "benchmark" in r:
            results[r["benchmark"]] = r["result"]["scores"]
            results.setdefault("measures", {})[r["benchmark"]] = {k: v for k, v in r["result"].items() if k != "scores"}
    training.set_eval(ctx.engine, ctx.spec.name, results=results)
    path = outputs.folder(ctx) / "results.json"
    path.write_text(json.dumps(results, indent=2))
    outputs.publish(ctx, path)
    return {}


add_handler("eval", plan=plan, run=run, finalize=finalize)
