"""The training loop, top to bottom: data order, optimiser, schedule, steps, checkpoints, resume.

Everything a resumed run needs to continue exactly where a killed one stopped is in a checkpoint: the
LoRA weights, the optimiser and schedule state, each process's random state (LoRA dropout), the step and
the size of the run's global micro-batch. The data order is a pure function of (seed, epoch)
(trainer/plan.py), so step ``s`` always trains on the same samples; a resumed run therefore takes the
same steps, none twice, and ends with the same weights as one never stopped.

Examples are streamed (trainer/stream.py): read from the store and encoded by DataLoader workers as the
loop needs them. The loss of a step is the sum of the cross-entropy of every response token of all its
micro-batches, on all processes, divided by their number (as transformers' Trainer does with
``num_items_in_batch``), so a step's gradient does not depend on how its samples are split into
micro-batches or over processes. Several processes (trainer/distributed.py) each take a share of every
micro-batch; their gradients are summed once per step; rank 0 alone writes checkpoints.

A checkpoint is written to ``step-N.tmp`` and renamed into place, so a kill mid-write leaves the previous
checkpoint as the latest complete one.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig
from .data import IGNORE
from .distributed import Dist
from .plan import Order, StepPlan, plan_steps
from .stream import MicroBatchStream, TrainingSet, close_loader, cpu_encoder, loader

CHECKPOINTS = "checkpoints"


class StopTraining(Exception):
    """Raised by ``should_stop`` (a cancelled job, a lost lease): the loop saves a checkpoint and stops."""


class NoTrainableSamples(ValueError):
    """A whole epoch went by without one sample that could be encoded."""


@dataclass
class StepLog:
    step: int  # optimiser steps done, from 1
    epoch: float
    loss: float
    learning_rate: float
    tokens: int  # non-padding tokens in the step, all processes
    seconds: float
    samples: int = 0  # samples trained in the step, all processes
    data_seconds: float = 0.0  # of ``seconds``, waiting for the loader (rank 0)


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    resumed_from: int
    final_loss: float | None
    logs: list[StepLog] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # samples left out, by reason (each counted once)
    examples: int = 0  # samples in the plan
    micro_size: int = 0


def lr_lambda(total: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = int(round(total * warmup_ratio))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def run_plan(n_samples: int, config: TrainConfig, micro_size: int | None = None) -> StepPlan:
    """The plan of a run of ``config`` on ``n_samples`` (``micro_size``: a resumed run's own)."""
    return plan_steps(n_samples, micro_size or config.batch_size * config.nproc, config.grad_accum, config.epochs, config.max_steps)


def response_loss_sum(model, inputs: dict[str, Any]):
    """The summed cross-entropy of the response tokens (labels that are not IGNORE, shifted by one as the
    model predicts the next token), in float32 over those rows of the logits only."""
    import torch

    inputs = dict(inputs)
    labels = inputs.pop("labels")  # the model's own loss would be a mean over this micro-batch alone
    logits = model(**inputs).logits[:, :-1]
    target = labels[:, 1:].to(logits.device)
    keep = target != IGNORE
    return torch.nn.functional.cross_entropy(logits[keep].float(), target[keep], reduction="sum")


# ---- checkpoints --------------------------------------------------------------------------------------
def checkpoint_dirs(out_dir: Path) -> list[Path]:
    root = out_dir / CHECKPOINTS
    if not root.exists():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and not p.name.endswith(".tmp") and (p / "state.json").exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def rng_state() -> dict[str, Any]:
    """This process's random state (LoRA dropout draws from it): the CPU's and its GPU's."""
    import torch

    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(out_dir: Path, step: int, model, optimizer, scheduler, keep: int, extra: dict, rngs: list[dict] | None = None) -> Path:
    """Write checkpoint ``step`` (rank 0 only); ``rngs``: every process's random state, by rank."""
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
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rngs": rngs or [rng_state()]}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **extra}, indent=2))
    if final.exists():  # the same step again (a retried unit): the new one replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint as one object (rank 0 reads it and hands it to the others: no shared disk needed)."""
    import torch
    from safetensors.torch import load_file

    state = torch.load(path / "trainer.pt", weights_only=False, map_location="cpu")
    meta = json.loads((path / "state.json").read_text())
    rngs = state.get("rngs") or [{"cpu": state["rng"], "cuda": None}]  # a checkpoint of one process, written before rngs
    return {"weights": load_file(str(path / "adapter.safetensors")), "optimizer": state["optimizer"], "scheduler": state["scheduler"],
            "rngs": rngs, "step": int(meta["step"]), "micro_size": meta.get("micro_size"), "path": str(path)}


def load_checkpoint(state: dict[str, Any], model, optimizer, scheduler, dist: Dist, seed: int) -> int:
    """Put a checkpoint's state into this process; its random state too where the run has as many processes
    as wrote it (on another number, dropout is reseeded per process from (seed, step, rank))."""
    import torch
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state["weights"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if len(state["rngs"]) == dist.world:
        set_rng_state(state["rngs"][dist.rank])
    else:
        torch.manual_seed(hash((seed, state["step"], dist.rank)) % 2**63)
    return state["step"]


# ---- the loop -----------------------------------------------------------------------------------------
def _scaled_sum_of_grads(params, scale: float, dist: Dist) -> None:
    """Every process's gradients times ``scale``, summed over processes, in place (one flat all-reduce)."""
    import torch

    for p in params:
        if p.grad is None:  # nothing reached it this step on this process (no sample): it still takes part
            p.grad = torch.zeros_like(p)
        p.grad.mul_(scale)
    if dist.world > 1:
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.sum_(flat)
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def accumulate(model, micro_batches: list, device: str, dist: Dist, params) -> dict[str, float]:
    """Forward and backward over one step's micro-batches (this process's shares), then the gradient of the
    step: the summed response-token loss of all micro-batches on all processes over their token count.
    Each micro-batch's loss is divided by a constant of this process (its first share's tokens times the
    number of micro-batches, so the backward pass sees values of a usual size) and the gradients are
    rescaled once the step's token count is known. Returns the step's totals over all processes."""
    import torch

    scale = None
    local = torch.zeros(4, dtype=torch.float64)  # loss sum, response tokens, tokens, samples
    for mb in micro_batches:
        if mb.inputs is None:
            continue
        if scale is None:
            scale = float(max(1, mb.response_tokens) * len(micro_batches))
        inputs = {k: v.to(device, non_blocking=True) for k, v in mb.inputs.items()}
        loss_sum = response_loss_sum(model, inputs)
        (loss_sum / scale).backward()
        local += torch.tensor([float(loss_sum.detach()), mb.response_tokens, float(mb.inputs["attention_mask"].sum()), mb.samples], dtype=torch.float64)
    totals = dist.sum_(local.to(dist.collective_device)).cpu()
    count = float(totals[1])
    _scaled_sum_of_grads(params, (scale or 1.0) / count if count else 0.0, dist)
    return {"loss_sum": float(totals[0]), "response_tokens": count, "tokens": float(totals[2]), "samples": float(totals[3])}


def train(
    adapter,
    data: TrainingSet | list,
    config: TrainConfig,
    out_dir: Path,
    *,
    dist: Dist | None = None,
    device: str | None = None,
    on_step: Callable[[StepLog], None] | None = None,
    should_stop: Callable[[], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
    on_start: Callable[[StepPlan, int], None] | None = None,
) -> TrainResult:
    """Train ``adapter.model`` (already wrapped with LoRA) on ``data`` and leave checkpoints in ``out_dir``
    (rank 0); ``on_checkpoint`` gets each one's folder once written (a run in S3 uploads it); ``on_start``
    gets the plan and the step the run starts from.

    ``should_stop`` is called between steps and raises :class:`StopTraining` (or any exception) to stop;
    a checkpoint of the last finished step is written first, so nothing done is lost. With several
    processes only rank 0 needs one: the others stop at the same step.
    """
    import torch

    dist = dist or Dist()
    device = device or config.device
    if isinstance(data, list):  # examples already encoded (tests, small runs)
        data = TrainingSet.of_examples(data)
    out_dir = Path(out_dir)
    model = adapter.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    torch.manual_seed(config.seed + dist.rank)

    latest = checkpoint_dirs(out_dir) if dist.main else []
    state = dist.broadcast(read_checkpoint(latest[-1]) if latest else None)
    # the global micro-batch is batch_size samples on each process of the run as it starts (torchrun may
    # have started more processes than config.nproc: several machines); a resumed run keeps its own
    plan = run_plan(len(data), config, state["micro_size"] if state else config.batch_size * dist.world)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(plan.total_steps, config.warmup_ratio))
    step = 0
    if state is not None:
        step = load_checkpoint(state, model, optimizer, scheduler, dist, config.seed)
        del state
    elif dist.world > 1:  # the same LoRA start everywhere, whatever each process's initialisation drew
        dist.broadcast_tensors([p.data for p in params])
    if on_start is not None:
        on_start(plan, step)
    total, accum = plan.total_steps, plan.grad_accum
    resumed_from = step
    result = TrainResult(steps=step, total_steps=total, resumed_from=resumed_from, final_loss=None, examples=plan.samples, micro_size=plan.micro_size)
    extra = {"total_steps": total, "examples": plan.samples, "micro_size": plan.micro_size, "processes": dist.world}
    order = Order(plan, config.seed, data.lengths if config.group_by_length else None)
    stream = MicroBatchStream(order, data.ids, data.source, cpu_encoder(adapter), start=step * accum, stop=plan.total_micro,
                              rank=dist.rank, world=dist.world)
    batches = iter(loader(stream, workers=config.loader_workers, seed=config.seed))
    skipped: dict[str, set[str]] = {}
    trained = 0  # samples trained so far in this process's run (0: nothing has been encodable yet)
    saved = step
    model.train()

    def checkpoint(at: int) -> None:
        nonlocal saved
        rngs = dist.gather(rng_state())
        if dist.main:
            folder = save_checkpoint(out_dir, at, model, optimizer, scheduler, config.keep_checkpoints, extra, rngs)
            if on_checkpoint is not None:
                on_checkpoint(folder)
        saved = at

    try:
        while step < total:
            stop: BaseException | None = None
            if should_stop is not None:
                try:
                    should_stop()
                except Exception as exc:
                    stop = exc
            if dist.any(stop is not None):
                if step > saved and trained:  # keep what was done since the last checkpoint
                    checkpoint(step)
                raise stop or StopTraining("stopped with the other processes")
            started = time.perf_counter()
            waited = 0.0
            micro = []
            for m in range(accum):
                t0 = time.perf_counter()
                mb = next(batches)
                waited += time.perf_counter() - t0
                if mb.index != step * accum + m:  # the loader's order is the plan's; anything else is a bug
                    raise RuntimeError(f"the loader gave micro-batch {mb.index}, the plan wants {step * accum + m}")
                for code, ids in mb.skipped.items():
                    skipped.setdefault(code, set()).update(ids)
                micro.append(mb)
            totals = accumulate(model, micro, device, dist, params)
            trained += int(totals["samples"])
            if not trained and (step + 1) * accum >= plan.micro_per_epoch:
                raise NoTrainableSamples("no sample could be encoded in a whole epoch: " + _skip_text(_skip_counts(skipped, dist)))
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = totals["loss_sum"] / totals["response_tokens"] if totals["response_tokens"] else float("nan")
            entry = StepLog(step, round(step / plan.steps_per_epoch, 4), loss, lr, int(totals["tokens"]), time.perf_counter() - started,
                            int(totals["samples"]), waited)
            result.logs.append(entry)
            result.steps, result.final_loss = step, entry.loss
            if on_step is not None and dist.main:
                on_step(entry)
            if progress is not None and dist.main:
                progress(step, total)
            if (step % config.checkpoint_every == 0 or step == total) and trained:
                checkpoint(step)
    finally:
        close_loader(batches)  # now, not when a traceback that holds this frame is dropped
    result.skipped = _skip_counts(skipped, dist)
    model.eval()
    return result


def _skip_counts(skipped: dict[str, set[str]], dist: Dist) -> dict[str, int]:
    """Samples left out by reason, each once over epochs and processes (rank 0 has the union)."""
    gathered = dist.gather({k: sorted(v) for k, v in skipped.items()}) or []
    union: dict[str, set[str]] = {}
    for part in gathered:
        for code, ids in part.items():
            union.setdefault(code, set()).update(ids)
    return {code: len(ids) for code, ids in sorted(union.items())}


def _skip_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


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
