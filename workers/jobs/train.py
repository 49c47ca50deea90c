"""The training job (train queue): LoRA fine-tuning of a VLM on a snapshot's training products.

One unit. The lease makes sure one worker holds it. The unit starts the run's processes with torchrun's
launcher (trainer/launch.py: ``--nproc`` processes, one per GPU, or gloo processes on a CPU) and watches
them: rank 0 records the steps and writes the checkpoints (trainer/ranks.py), and takes a lock on the
run's folder so two attempts never write the same checkpoints. A killed worker's unit comes back after
its lease and the next worker resumes from the last checkpoint, on as many processes as it is told; the
step rows it redoes are rewritten, never doubled. Cancel is honoured between steps, after a checkpoint of
the steps done.
"""
from __future__ import annotations

import time
from typing import Any

from db.app import training
from db.app.jobs import UnitSpec
from db.storage.locations import Location
from jobs.train import TrainJob
from trainer.config import TrainConfig

from .. import models
from ..runtime import Cancelled, PermanentError, UnitContext
from .registry import add_handler


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    from curation import snapshots
    from trainer import snapshot_set

    job: TrainJob = ctx.spec
    config = job.config
    try:
        snap = snapshots.get(ctx.engine, job.snapshot)
        members = snapshots.members_sql(ctx.lake, snap)
    except (snapshots.SnapshotError, ValueError, TypeError) as exc:
        raise PermanentError(str(exc)) from exc
    model = Location.of(job.model)
    if model.is_local and not model.exists():  # on this worker's disk (one in S3 is copied when training starts)
        raise PermanentError(f"model folder {job.model} does not exist")
    try:
        run = training.get_run(ctx.engine, job.name)
        if run.job_id and run.job_id != ctx.job_id:
            raise PermanentError(f"training run {job.name!r} belongs to job {run.job_id}; pick another --name")
    except training.RunError:
        training.create_run(ctx.engine, name=job.name, snapshot=job.snapshot, base_model=job.model, config=config.to_dict(), out_dir=job.out,
                            created_by=ctx.settings.user)
    training.update_run(ctx.engine, job.name, job_id=ctx.job_id)
    # fixed here, once: the unit trains with the split counted now, even if a grouping is made meanwhile
    basis = snapshot_set.split_basis(ctx.lake)
    parts = snapshot_set.split(ctx.lake, members, snap.lake_version, config, basis)
    by = (f"products split by near-duplicate group ({basis['grouping']}): no group on both sides" if basis["by"] == "dup_group"
          else "products split by product: no near-duplicate grouping yet (`vitpro dedup images`)")
    ctx.log(f"run {job.name!r}: {len(parts.ids)} training samples, {parts.held_out} held out for evaluation "
            f"({config.holdout:.0%} of products; {by}); LoRA r={config.lora.r} alpha={config.lora.alpha} on {', '.join(config.lora.parts)}; "
            f"{config.nproc} process(es)")
    if not parts.ids:
        detail = f" ({', '.join(f'{k} {v}' for k, v in parts.skipped.items())})" if parts.skipped else ""
        raise PermanentError(f"the snapshot has no samples left for training after the held-out products{detail}")
    return [UnitSpec({"split": basis}, len(parts.ids))], {"set": {"samples": len(parts.ids), "held_out": parts.held_out}}


def _check_processes(config: TrainConfig) -> None:
    """A clear refusal before anything starts: more processes than this worker has GPUs (or cores)."""
    from trainer.distributed import check_processes

    try:
        check_processes(config.device, config.nproc)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc


def run(ctx: UnitContext) -> dict[str, Any]:
    from trainer.launch import StopRequested, launch
    from trainer.ranks import RunSpec

    job: TrainJob = ctx.spec
    config = job.config
    _check_processes(config)
    released = models.release_scoring_models()
    if released:
        ctx.log(f"released the scoring models this worker had cached before training: {', '.join(released)}")
    # A run in S3 trains in this worker's scratch folder: its checkpoints go up as they are written, and a
    # worker that takes the unit over after a crash starts from the last one that reached the store.
    work_dir = Location.of(job.out).workspace(ctx.settings.home / "scratch" / "runs" / job.name).path
    spec = RunSpec(name=job.name, snapshot=job.snapshot, model=models.local(job.model), config=config.to_dict(), work_dir=str(work_dir),
                   out=job.out, job_id=ctx.job_id, split=ctx.payload.get("split"))
    last = [0.0]

    def watch() -> None:
        try:
            ctx.check()
        except Cancelled as exc:
            raise StopRequested(f"job {exc} cancelled") from exc
        now = time.monotonic()
        if now - last[0] >= 1.0:  # the unit's progress from the run's row, which rank 0 keeps
            last[0] = now
            run_row = training.get_run(ctx.engine, job.name)
            if run_row.total_steps:
                ctx.progress(int(ctx.claimed.size * run_row.steps_done / run_row.total_steps))

    outcome = launch(spec, config.nproc, watch=watch)
    if outcome.stopped:
        training.update_run(ctx.engine, job.name, status="cancelled")
        raise Cancelled(ctx.job_id)
    if outcome.returncode != 0 or outcome.result is None:
        if outcome.permanent:
            training.update_run(ctx.engine, job.name, status="failed")
            raise PermanentError(outcome.permanent)
        raise RuntimeError(outcome.failure())  # retried: the next attempt resumes from the last checkpoint
    summary = outcome.result  # rank 0 marked the run succeeded with it
    ctx.log(f"done: {summary['steps']} steps, final loss {summary['final_loss']:.4f}; adapter in {summary['adapter']}")
    return {"steps": summary["steps"] - summary["resumed_from"], "examples": summary["examples"]}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}


add_handler("train", plan=plan, run=run, finalize=finalize)
