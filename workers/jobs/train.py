"""The training job (train queue): LoRA fine-tuning of a VLM on a snapshot's training products.

One unit. The lease makes sure one worker holds it; a lock file in the run's folder makes doubly sure two
processes never write the same checkpoints. A killed worker's unit comes back after its lease and the
next worker resumes from the last checkpoint (trainer/loop.py); the step rows it redoes are rewritten,
never doubled. Cancel is honoured between steps, after a checkpoint of the steps done.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from db import objects, training
from db.jobs import UnitSpec
from trainer.config import TrainConfig

from .. import models
from ..runtime import Cancelled, PermanentError, UnitContext
from .registry import register


def _meta(params: dict[str, Any], snap, result, counts: dict[str, Any]) -> dict[str, Any]:
    import peft
    import transformers

    return {
        "run": params["name"], "base_model": params["model"], "snapshot": snap.name, "snapshot_lake_version": snap.lake_version,
        "snapshot_kept_sha256": snap.counts.get("kept_sha256"), "config": params["config"], "steps": result.steps,
        "total_steps": result.total_steps, "final_loss": result.final_loss, **counts,
        "versions": {"transformers": transformers.__version__, "peft": peft.__version__},
    }


@contextmanager
def _run_lock(out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / ".lock", os.O_CREAT | os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another process is training into {out_dir}; this attempt waits for it") from None
        yield
    finally:
        os.close(fd)


def _fetch_checkpoints(out: str, out_dir: Path) -> None:
    """The checkpoints already in the store, into the scratch folder (one cut short lacks its state.json,
    which is uploaded last, and is ignored by the loop)."""
    from trainer.loop import CHECKPOINTS

    shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)  # only what reached the store counts
    objects.download_folder(objects.ObjectURL.parse(objects.join(out, CHECKPOINTS)), out_dir / CHECKPOINTS)


def _push_checkpoint(folder: Path, out: str, keep: int) -> None:
    """A checkpoint just written, to the store (state.json last), then the older ones beyond ``keep`` out."""
    from trainer.loop import CHECKPOINTS

    root = objects.ObjectURL.parse(objects.join(out, CHECKPOINTS)).as_prefix()
    objects.upload_folder(folder, root.child(folder.name), last=("state.json",))
    steps = sorted({rel.split("/", 1)[0] for rel, _ in objects.listing(root) if rel.startswith("step-") and "/" in rel})
    for old in steps[:-keep] if keep > 0 else []:
        objects.delete_prefix(root.child(old))


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    from curation import snapshots
    from trainer.benchmarks import split_rows

    p = ctx.params
    try:
        snapshots.get(ctx.engine, p["snapshot"])
        config = TrainConfig.from_dict(p["config"])
    except (snapshots.SnapshotError, ValueError, TypeError) as exc:
        raise PermanentError(str(exc)) from exc
    if not objects.is_remote(p["model"]) and not Path(p["model"]).exists():
        raise PermanentError(f"model folder {p['model']} does not exist")
    try:
        run = training.get_run(ctx.engine, p["name"])
        if run.job_id and run.job_id != ctx.job_id:
            raise PermanentError(f"training run {p['name']!r} belongs to job {run.job_id}; pick another --name")
    except training.RunError:
        training.create_run(ctx.engine, name=p["name"], snapshot=p["snapshot"], base_model=p["model"], config=p["config"], out_dir=p["out"],
                            created_by=ctx.settings.user)
    training.update_run(ctx.engine, p["name"], job_id=ctx.job_id)
    rows = snapshots.snapshot_rows(ctx.lake, ctx.engine, p["snapshot"])
    train_rows, held_out = split_rows(rows, config.holdout, config.seed)
    ctx.log(f"run {p['name']!r}: {len(train_rows)} training samples, {len(held_out)} held out for evaluation "
            f"({config.holdout:.0%} of products); LoRA r={config.lora.r} alpha={config.lora.alpha} on {', '.join(config.lora.parts)}")
    if not train_rows:
        raise PermanentError("the snapshot has no samples left for training after the held-out products")
    return [UnitSpec({}, len(train_rows))], {"set": {"samples": len(train_rows), "held_out": len(held_out)}}


def run(ctx: UnitContext) -> dict[str, Any]:
    from curation import snapshots
    from trainer.benchmarks import split_rows
    from trainer.data import build_examples
    from trainer.loop import StopTraining, checkpoint_dirs, plan_steps, save_final, train
    from trainer.lora import AcceleratorError, apply_lora, load_for_training

    class CancelTraining(StopTraining, Cancelled):
        """Cancel seen between steps: the loop checkpoints (StopTraining), the runtime records it (Cancelled)."""

    p = ctx.params
    config = TrainConfig.from_dict(p["config"])
    remote = objects.is_remote(p["out"])
    # A run in S3 trains in this worker's scratch folder: its checkpoints go up as they are written, and a
    # worker that takes the unit over after a crash starts from the last one that reached the store.
    out_dir = ctx.settings.home / "scratch" / "runs" / p["name"] if remote else Path(p["out"])
    run_row = training.get_run(ctx.engine, p["name"])
    snap = snapshots.get(ctx.engine, p["snapshot"])
    with _run_lock(out_dir):
        if remote:
            _fetch_checkpoints(p["out"], out_dir)
        rows, _ = split_rows(snapshots.snapshot_rows(ctx.lake, ctx.engine, p["snapshot"]), config.holdout, config.seed)
        try:
            adapter = load_for_training(models.local(p["model"]), config)
        except AcceleratorError as exc:
            raise PermanentError(str(exc)) from exc
        examples, skipped = build_examples(adapter, rows, ctx.blobs, ocr=config.ocr,
                                           min_images=config.images.min_images, max_images=config.images.max_images)
        if skipped:
            ctx.log("samples left out of training: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
        if not examples:
            raise PermanentError(f"no sample of the snapshot can be trained on ({', '.join(f'{k} {v}' for k, v in skipped.items())})")
        apply_lora(adapter, config.lora, seed=config.seed, gradient_checkpointing=config.gradient_checkpointing, quantized=config.load_4bit)
        _, total = plan_steps(len(examples), config)
        done = checkpoint_dirs(out_dir)
        start = int(done[-1].name.split("-")[1]) if done else 0
        training.start_steps_at(ctx.engine, run_row.id, start)
        training.update_run(ctx.engine, p["name"], status="running", total_steps=total, steps_done=start)
        ctx.log(f"resuming from the checkpoint at step {start} of {total}" if start else f"training {total} step(s) on {len(examples)} examples")

        def on_step(entry) -> None:
            training.record_steps(ctx.engine, run_row.id, [{"step": entry.step, "epoch": entry.epoch, "loss": entry.loss,
                                                            "learning_rate": entry.learning_rate, "tokens": entry.tokens, "seconds": entry.seconds}])
            training.update_run(ctx.engine, p["name"], steps_done=entry.step)
            ctx.progress(int(ctx.claimed.size * entry.step / total))  # the unit's size is in samples

        def should_stop() -> None:
            try:
                ctx.check()
            except Cancelled as exc:
                raise CancelTraining(str(exc)) from exc

        try:
            result = train(adapter, examples, config, out_dir, on_step=on_step, should_stop=should_stop,
                           on_checkpoint=(lambda folder: _push_checkpoint(folder, p["out"], config.keep_checkpoints)) if remote else None)
        except Cancelled:
            training.update_run(ctx.engine, p["name"], status="cancelled")
            raise
        counts = {"examples": len(examples), "skipped": skipped}
        final = save_final(adapter, out_dir, _meta(p, snap, result, counts))
        if remote:
            # training_config.json last: evaluation takes an adapter in S3 as whole once that file is there
            final_url = objects.join(p["out"], "adapter")
            objects.delete_prefix(objects.ObjectURL.parse(final_url))
            objects.upload_folder(final, objects.ObjectURL.parse(final_url), last=("training_config.json",))
            final = final_url
    summary = {"final_loss": result.final_loss, "steps": result.steps, "resumed_from": result.resumed_from, "adapter": str(final), **counts}
    training.update_run(ctx.engine, p["name"], status="succeeded", steps_done=result.steps, summary=summary)
    ctx.log(f"done: {result.steps} steps, final loss {result.final_loss:.4f}; adapter in {final}")
    return {"steps": result.steps - result.resumed_from, "examples": len(examples)}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}


register("train", plan=plan, run=run, finalize=finalize)
