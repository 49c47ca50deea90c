"""The training loop, top to bottom: data order, optimiser, schedule, steps, checkpoints, resume.

Everything a resumed run needs to continue exactly where a killed one stopped is in a checkpoint: the
LoRA weights, the optimiser and schedule state, the random state (LoRA dropout) and the step. The data
order is a pure function of (seed, epoch), so step ``s`` always trains on the same micro-batches; a resumed
run therefore takes the same steps, none twice, and ends with the same weights as one never stopped.

A checkpoint is written to ``step-N.tmp`` and renamed into place, so a kill mid-write leaves the previous
checkpoint as the latest complete one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import TrainConfig
from .data import TrainExample, collate

CHECKPOINTS = "checkpoints"


class StopTraining(Exception):
    """Raised by ``should_stop`` (a cancelled job, a lost lease): the loop saves a checkpoint and stops."""


@dataclass
class StepLog:
    step: int  # optimiser steps done, from 1
    epoch: float
    loss: float
    learning_rate: float
    tokens: int  # non-padding tokens in the step
    seconds: float


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    resumed_from: int
    final_loss: float | None
    logs: list[StepLog] = field(default_factory=list)


def plan_steps(n_examples: int, config: TrainConfig) -> tuple[int, int]:
    """(optimiser steps per epoch, total optimiser steps)."""
    if n_examples == 0:
        raise ValueError("no training examples")
    micro_per_epoch = math.ceil(n_examples / config.batch_size)
    per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total = max(1, math.ceil(per_epoch * config.epochs))
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return per_epoch, total


def micro_batches(n_examples: int, config: TrainConfig, per_epoch: int, total: int) -> list[list[int]]:
    """Example indices of every micro-batch of the run, in order: a fresh permutation per epoch, seeded by
    (seed, epoch), so any step's batches can be found again after a restart."""
    out: list[list[int]] = []
    need = total * config.grad_accum
    epoch = 0
    while len(out) < need:
        order = np.random.default_rng([config.seed, epoch]).permutation(n_examples)
        epoch_batches = [order[i : i + config.batch_size].tolist() for i in range(0, n_examples, config.batch_size)]
        # an epoch has per_epoch * grad_accum micro-batches; the last step of an epoch may take fewer
        out.extend(epoch_batches[: per_epoch * config.grad_accum])
        epoch += 1
    return out[:need]


def lr_lambda(total: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = int(round(total * warmup_ratio))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


# ---- checkpoints --------------------------------------------------------------------------------------
def checkpoint_dirs(out_dir: Path) -> list[Path]:
    root = out_dir / CHECKPOINTS
    if not root.exists():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and not p.name.endswith(".tmp") and (p / "state.json").exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(out_dir: Path, step: int, model, optimizer, scheduler, keep: int, extra: dict) -> Path:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    root = out_dir / CHECKPOINTS
    final = root / f"step-{step:07d}"
    tmp = root / f"step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in get_peft_model_state_dict(model).items()}
    save_file(weights, str(tmp / "adapter.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **extra}, indent=2))
    if final.exists():  # the same step again (a retried unit): the new one replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter.safetensors")))
    state = torch.load(path / "trainer.pt", weights_only=False, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(json.loads((path / "state.json").read_text())["step"])


# ---- the loop -----------------------------------------------------------------------------------------
def train(
    adapter,
    examples: list[TrainExample],
    config: TrainConfig,
    out_dir: Path,
    *,
    on_step: Callable[[StepLog], None] | None = None,
    should_stop: Callable[[], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train ``adapter.model`` (already wrapped with LoRA) and leave checkpoints in ``out_dir``;
    ``on_checkpoint`` gets each one's folder once written (a run in S3 uploads it).

    ``should_stop`` is called between steps and raises :class:`StopTraining` (or any exception) to stop;
    a checkpoint of the last finished step is written first, so nothing done is lost.
    """
    import torch

    out_dir = Path(out_dir)
    model = adapter.model
    per_epoch, total = plan_steps(len(examples), config)
    schedule = micro_batches(len(examples), config, per_epoch, total)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, config.warmup_ratio))
    torch.manual_seed(config.seed)

    step = 0
    latest = checkpoint_dirs(out_dir)
    if latest:
        step = load_checkpoint(latest[-1], model, optimizer, scheduler)
    resumed_from = step
    result = TrainResult(steps=step, total_steps=total, resumed_from=resumed_from, final_loss=None)
    model.train()
    extra = {"total_steps": total, "examples": len(examples)}

    saved = step

    def checkpoint(at: int) -> None:
        nonlocal saved
        folder = save_checkpoint(out_dir, at, model, optimizer, scheduler, config.keep_checkpoints, extra)
        saved = at
        if on_checkpoint is not None:
            on_checkpoint(folder)

    while step < total:
        if should_stop is not None:
            try:
                should_stop()
            except Exception:
                if step > saved:  # keep what was done since the last checkpoint
                    checkpoint(step)
                raise
        started = time.perf_counter()
        losses, tokens = [], 0
        for micro in schedule[step * config.grad_accum : (step + 1) * config.grad_accum]:
            batch = collate(adapter, [examples[i] for i in micro])
            out = model(**batch)
            (out.loss / config.grad_accum).backward()
            losses.append(float(out.loss.detach()))
            tokens += int(batch["attention_mask"].sum())
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        entry = StepLog(step, round(step / per_epoch, 4), float(np.mean(losses)), lr, tokens, time.perf_counter() - started)
        result.logs.append(entry)
        result.steps, result.final_loss = step, entry.loss
        if on_step is not None:
            on_step(entry)
        if progress is not None:
            progress(step, total)
        if step % config.checkpoint_every == 0 or step == total:
            checkpoint(step)
    model.eval()
    return result


def save_final(adapter, out_dir: Path, meta: dict) -> Path:
    """The final adapter (peft's own format, loadable with ``PeftModel.from_pretrained``) with
    ``training_config.json``: the settings, the snapshot, the base model id and the run's figures."""
    final = Path(out_dir) / "adapter"
    tmp = Path(out_dir) / "adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    adapter.model.save_pretrained(str(tmp))
    (tmp / "training_config.json").write_text(json.dumps(meta, indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final
