"""One process of a training run, as torchrun's machinery starts it: N on one machine for the train job
(trainer/launch.py), or N per machine on several machines, by hand:

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 --rdzv-id RUN \\
        -m trainer.ranks run.json

``run.json`` is a :class:`RunSpec` (``vitpro train spec`` writes one). Every process reads the snapshot's
member list and computes the same plan (trainer/plan.py); each trains on its share of every micro-batch;
rank 0 alone checks the stop file, writes checkpoints (and sends them to S3 for a run there), records
the steps in the run's rows and writes the final adapter. A checkpoint is read by rank 0 and handed to
the others, so machines share no disk. Each process takes its settings (store, blobs) from the same
``VITPRO_*`` environment as a worker.

What a process that fails knows about why goes into ``errors/rank-N.json`` in the run's work folder:
``permanent`` errors (no trainable sample, a device the machine lacks) are not retried by the job.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

RESULT = "result.json"
STOP = "STOP"
ERRORS = "errors"


@dataclass(frozen=True)
class RunSpec:
    name: str  # the run's name (its rows in the app tables)
    snapshot: str
    model: str  # base checkpoint folder on every machine
    config: dict[str, Any]  # TrainConfig.to_dict()
    work_dir: str  # this machine's folder for checkpoints, the adapter, the stop file, results
    out: str  # where the run goes: work_dir itself, or s3://... (checkpoints and the adapter are sent there)
    job_id: str | None = None  # the train job whose log gets rank 0's lines
    # what the held-out split goes by (snapshot_set.split_basis), fixed at launch: {"by": "product"} or
    # {"by": "dup_group", "grouping": "phash:12", "version": V}; None (a spec written before) is the products alone
    split: dict[str, Any] | None = None

    def save(self, path: Path) -> None:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "RunSpec":
        return cls(**json.loads(Path(path).read_text()))


class PermanentTrainingError(Exception):
    """What retrying cannot fix: the job fails at once with this message."""


# ---- the run's files where ``out`` is: the work folder itself, or S3 ------------------------------------
def fetch_checkpoints(work) -> None:
    """The checkpoints already in the store, into the work folder (one cut short lacks its state.json,
    which is uploaded last, and is ignored by the loop); nothing to do for a run written in place."""
    from .loop import CHECKPOINTS

    work.pull(CHECKPOINTS)  # only what reached the store counts


def push_checkpoint(work, folder: Path, keep: int) -> None:
    """A checkpoint just written in a scratch work folder, to the store (state.json last), then the older
    ones beyond ``keep`` out of it (the loop keeps the work folder's own)."""
    from .loop import CHECKPOINTS

    work.push(f"{CHECKPOINTS}/{folder.name}", last=("state.json",))
    root = work.location.join(CHECKPOINTS)
    steps = sorted({rel.split("/", 1)[0] for rel, _ in root.files() if rel.startswith("step-") and "/" in rel})
    for old in steps[:-keep] if keep > 0 else []:
        root.join(old).remove()


def push_adapter(work) -> str:
    """The final adapter (``adapter/`` of the work folder) where the run goes, training_config.json last:
    evaluation takes an adapter in S3 as whole once that file is there. Returns where it is."""
    return str(work.push("adapter", replace=True, last=("training_config.json",)))


@contextmanager
def run_lock(work_dir: Path) -> Iterator[None]:
    """One writer per work folder: a second process (an orphan of a killed worker, a unit taken over too
    early) is refused instead of writing the same checkpoints."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / ".lock", os.O_CREAT | os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another process is training into {work_dir}; this attempt waits for it") from None
        yield
    finally:
        os.close(fd)


# ---- one process ---------------------------------------------------------------------------------------
def _meta(spec: RunSpec, snap, result, config_dict: dict) -> dict[str, Any]:
    import peft
    import transformers

    return {
        "run": spec.name, "base_model": spec.model, "snapshot": snap.name, "snapshot_lake_version": snap.lake_version,
        "snapshot_kept_sha256": snap.counts.get("kept_sha256"), "config": config_dict, "steps": result.steps,
        "total_steps": result.total_steps, "final_loss": result.final_loss, "examples": result.examples, "skipped": result.skipped,
        "processes": int(os.environ.get("WORLD_SIZE", "1")), "micro_size": result.micro_size,
        "versions": {"transformers": transformers.__version__, "peft": peft.__version__},
        # an adapter without this key was trained before splits by near-duplicate group: evaluation reports it as possibly leaking
        "split": spec.split or {"by": "product"},
    }


class _Recorder:
    """Rank 0's reports: step rows and the run's row in the app tables, lines in the job's log."""

    def __init__(self, spec: RunSpec, engine):
        from db.app import training

        self.spec, self.engine = spec, engine
        self.run_id = training.get_run(engine, spec.name).id

    def log(self, message: str, level: str = "info") -> None:
        print(f"[rank 0] {message}", flush=True)
        if self.spec.job_id:
            from db.app import jobs

            jobs.add_log(self.engine, self.spec.job_id, message, level=level)

    def start(self, plan, step: int) -> None:
        from db.app import training

        training.start_steps_at(self.engine, self.run_id, step)
        training.update_run(self.engine, self.spec.name, status="running", total_steps=plan.total_steps, steps_done=step)

    def finish(self, summary: dict) -> None:
        from db.app import training

        training.update_run(self.engine, self.spec.name, status="succeeded", steps_done=summary["steps"], summary=summary)

    def step(self, entry) -> None:
        from db.app import training

        training.record_steps(self.engine, self.run_id, [{"step": entry.step, "epoch": entry.epoch, "loss": entry.loss,
                                                          "learning_rate": entry.learning_rate, "tokens": entry.tokens, "seconds": entry.seconds}])
        training.update_run(self.engine, self.spec.name, steps_done=entry.step)


def run(spec: RunSpec) -> dict[str, Any]:
    from config.settings import load_settings
    from curation import snapshots
    from db.app.engine import write_engine
    from db.storage.blobs import open_blobs
    from db.storage.locations import Location
    from db.store import open_store

    from . import snapshot_set
    from .config import TrainConfig
    from .distributed import check_processes, from_environment, rank_device, shutdown
    from .loop import NoTrainableSamples, StopTraining, checkpoint_dirs, save_final, train
    from .lora import AcceleratorError, apply_lora, load_for_training

    config = TrainConfig.from_dict(spec.config)
    dist = from_environment(config.device)
    work_dir = Path(spec.work_dir)
    work = Location.of(spec.out).workspace(work_dir)  # out is work_dir itself, or where its files are sent
    try:
        try:  # this machine's share of the processes (all of them, started by the job's launcher)
            check_processes(config.device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        except ValueError as exc:
            raise PermanentTrainingError(str(exc)) from exc
        settings = load_settings()
        engine = write_engine(settings.app_url)
        lake = open_store(settings.store)
        try:
            snap = snapshots.get(engine, spec.snapshot)
            members = snapshots.members_sql(lake, snap)
        except snapshots.SnapshotError as exc:
            raise PermanentTrainingError(str(exc)) from exc
        parts = snapshot_set.split(lake, members, snap.lake_version, config, spec.split)
        if not parts.ids:
            raise PermanentTrainingError("the snapshot has no sample left for training after the held-out products"
                                         + (f" ({', '.join(f'{k} {v}' for k, v in parts.skipped.items())})" if parts.skipped else ""))
        device = rank_device(config.device, dist)
        try:
            adapter = load_for_training(spec.model, replace(config, device=device))
        except AcceleratorError as exc:
            raise PermanentTrainingError(str(exc)) from exc
        apply_lora(adapter, config.lora, seed=config.seed, gradient_checkpointing=config.gradient_checkpointing, quantized=config.load_4bit)
        data = snapshot_set.training_set(parts, snapshot_set.LakeReader(settings.store, snap.lake_version), open_blobs(settings), config,
                                         snapshot_set.image_tokens(adapter))
        recorder = _Recorder(spec, engine) if dist.main else None
        lock = run_lock(work_dir) if dist.main else nullcontext()
        with lock:
            if dist.main:
                fetch_checkpoints(work)
            # a stop file is never removed here: one written while the processes were loading the model is a
            # stop asked of this attempt (the launcher clears an earlier attempt's before it starts one)

            def on_start(plan, step: int) -> None:
                if recorder is None:
                    return
                recorder.start(plan, step)
                where = f"{dist.world} processes" if dist.world > 1 else "1 process"
                recorder.log(f"resuming from the checkpoint at step {step} of {plan.total_steps}" if step else
                             f"training {plan.total_steps} step(s) on {plan.samples} examples ({where}, global micro-batch {plan.micro_size})")

            def should_stop() -> None:
                if (work_dir / STOP).exists():
                    raise StopTraining((work_dir / STOP).read_text().strip() or "stopped")

            result = train(adapter, data, config, work_dir, dist=dist, device=device,
                           on_step=recorder.step if recorder else None, should_stop=should_stop if dist.main else None, on_start=on_start,
                           on_checkpoint=(lambda folder: push_checkpoint(work, folder, config.keep_checkpoints)) if work.staged and dist.main else None)
            skipped = {k: parts.skipped.get(k, 0) + result.skipped.get(k, 0) for k in {**parts.skipped, **result.skipped}}
            result.skipped = dict(sorted(skipped.items()))
            summary: dict[str, Any] = {"steps": result.steps, "total_steps": result.total_steps, "resumed_from": result.resumed_from,
                                       "final_loss": result.final_loss, "examples": result.examples, "skipped": result.skipped,
                                       "processes": dist.world, "held_out": parts.held_out,
                                       "data_wait_share": _data_wait_share(result.logs)}
            if dist.main:
                if skipped:
                    recorder.log("samples left out of training: " + ", ".join(f"{k} {v}" for k, v in result.skipped.items()))
                save_final(adapter, work_dir, _meta(spec, snap, result, spec.config))  # into work_dir/adapter
                summary["adapter"] = push_adapter(work)
                recorder.finish(summary)
                _write_json(work_dir / RESULT, summary)
            return summary
    except StopTraining as exc:
        if dist.main:
            latest = checkpoint_dirs(work_dir)
            _write_json(work_dir / RESULT, {"stopped": str(exc), "steps": int(latest[-1].name.split("-")[1]) if latest else 0})
        return {"stopped": str(exc)}
    except (PermanentTrainingError, NoTrainableSamples) as exc:
        _write_error(work_dir, dist.rank, str(exc), permanent=True)
        raise
    except BaseException as exc:
        _write_error(work_dir, dist.rank, f"{exc.__class__.__name__}: {exc}", permanent=False)
        raise
    finally:
        shutdown(dist)


def _data_wait_share(logs) -> float | None:
    total = sum(x.seconds for x in logs)
    return round(sum(x.data_seconds for x in logs) / total, 4) if total else None


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def _write_error(work_dir: Path, rank: int, message: str, *, permanent: bool) -> None:
    try:
        _write_json(work_dir / ERRORS / f"rank-{rank}.json", {"rank": rank, "message": message[:4000], "permanent": permanent, "at": time.time()})
    except OSError:  # the error itself matters more than its file
        pass


def main(argv: list[str] | None = None) -> int:
    from .agent import die_with_parent

    # torchrun's agent starts each process in a session of its own: killing the worker's process group
    # kills the agent, not us. Die with the agent, or with the worker that started a lone process directly
    # (trainer/launch.py) (SIGKILL: a rank's own handlers must not delay it).
    die_with_parent(0, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the signal was set: this process was handed to init
        return 1
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: torchrun ... -m trainer.ranks RUN.json", file=sys.stderr)
        return 2
    run(RunSpec.load(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
