"""The ablation job (train queue): the objective benchmark over a grid of settings (OCR, resolution,
image splitting, 4-bit, FlashAttention-2, adapter on/off), one unit per cell; finalize writes the table
(markdown and JSON) like the paper's Tables 5-8, with latency and peak memory per cell.

A cell this machine cannot run (4-bit without a GPU) is reported as not run, with the reason; the other
cells still give their figures.
"""
from __future__ import annotations

import json
from typing import Any

from db.app import training
from db.app.jobs import UnitSpec, work_results
from jobs.ablate import AblateJob
from trainer import ablation

from .. import models, outputs
from ..runtime import UnitContext
from .evaluate import claim_eval, evaluate_benchmark, resolve_adapter
from .registry import add_handler


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    job: AblateJob = ctx.spec
    adapter = resolve_adapter(ctx.engine, job.adapter)
    claim_eval(ctx, job.name, snapshot=job.snapshot, model=job.model, adapter=adapter, config={**ctx.params, "kind": "ablation"}, baseline=None)
    ctx.log(f"ablation {job.name!r}: {len(job.cells)} cell(s)")
    return [UnitSpec({"cell": c, "index": i, "adapter": adapter}, 1) for i, c in enumerate(job.cells)], {}


def run(ctx: UnitContext) -> dict[str, Any]:
    from trainer.lora import AcceleratorError, check_accelerator_options

    job: AblateJob = ctx.spec
    cell = ctx.payload["cell"]
    settings, adapter_on = ablation.overrides(cell)
    config = job.config.with_overrides(**{k: v for k, v in settings.items() if k != "longest_edge"})
    if "longest_edge" in settings:
        from dataclasses import replace

        config = replace(config, images=replace(config.images, longest_edge=settings["longest_edge"]))
    row = {"index": ctx.payload["index"], "label": ablation.label(cell, job.defaults), "cell": cell}
    try:
        check_accelerator_options(config)
    except AcceleratorError as exc:
        ctx.log(f"cell {row['label']}: not run ({exc})", level="warning")
        return {"cell": {**row, "unavailable": str(exc)}}
    trained = models.local(ctx.payload["adapter"])  # an adapter in S3: copied to this worker once
    adapter_dir = trained if adapter_on else None
    predictions = outputs.folder(ctx) / f"cell-{ctx.payload['index']:02d}.jsonl"
    result = evaluate_benchmark(ctx, job, "objective", adapter_dir, config, predictions, split_from=trained)
    outputs.publish(ctx, predictions)
    ctx.log(f"cell {row['label']}: {result['items']} item(s), {result.get('seconds_per_item', 0):.3f} s/item")
    return {"cell": {**row, **result}, "items": result["items"]}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    rows = sorted((r["cell"] for r in work_results(ctx.engine, ctx.job_id) if "cell" in r), key=lambda r: r["index"])
    text = ablation.table(rows)
    out = outputs.folder(ctx)
    (out / "ablation.md").write_text(text + "\n")
    (out / "ablation.json").write_text(json.dumps(rows, indent=2))
    where = outputs.publish(ctx, out / "ablation.md")
    outputs.publish(ctx, out / "ablation.json")
    training.set_eval(ctx.engine, ctx.spec.name, results={"ablation": rows, "table": text})
    ctx.log(f"table written to {where}")
    return {}


add_handler("ablate", plan=plan, run=run, finalize=finalize)
