"""Which samples each step trains on: a pure function of (seed, epoch), so a resumed run, or the same run on
another number of processes, takes the very same steps.

A run's unit of order is the *global micro-batch*: ``batch_size x nproc`` samples, fixed when the run
starts. An optimiser step is ``grad_accum`` consecutive global micro-batches; with N processes each
takes its share of every micro-batch (:func:`rank_share`). The loss of a step is normalised by the
response tokens of all its micro-batches on all processes (trainer/loop.py), so how a step's samples are
split, over micro-batches or over processes, does not change its gradient.

Each epoch is a fresh seeded permutation. With ``group_by_length`` the permutation is cut into
"megabatches" of 50 micro-batches, each sorted by length so a micro-batch holds samples of similar
length (as transformers' ``group_by_length`` does: less padding), and the micro-batches are then put in a
seeded random order so the lengths do not saw-tooth through the epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MEGABATCH = 50  # micro-batches per length-sorted group (transformers' mega_batch_mult)


@dataclass(frozen=True)
class StepPlan:
    samples: int  # training samples in the plan
    micro_size: int  # samples per global micro-batch (batch_size x nproc at the run's start)
    grad_accum: int
    steps_per_epoch: int
    total_steps: int

    @property
    def micro_per_epoch(self) -> int:
        return math.ceil(self.samples / self.micro_size)

    @property
    def total_micro(self) -> int:
        return self.total_steps * self.grad_accum


def plan_steps(n_samples: int, micro_size: int, grad_accum: int, epochs: float, max_steps: int | None) -> StepPlan:
    if n_samples == 0:
        raise ValueError("no training examples")
    micro_per_epoch = math.ceil(n_samples / micro_size)
    per_epoch = math.ceil(micro_per_epoch / grad_accum)
    total = max(1, math.ceil(per_epoch * epochs))
    if max_steps is not None:
        total = min(total, max_steps)
    return StepPlan(n_samples, micro_size, grad_accum, per_epoch, total)


class Order:
    """The sample indices of every global micro-batch of a plan, computed an epoch at a time (an epoch of a
    million samples is 8 MB of indices; the whole run is never materialised)."""

    def __init__(self, plan: StepPlan, seed: int, lengths: np.ndarray | None = None):
        self.plan = plan
        self.seed = seed
        self.lengths = None if lengths is None else np.asarray(lengths)
        self._epoch: int | None = None
        self._batches: list[np.ndarray] = []

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        n, size = self.plan.samples, self.plan.micro_size
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        if self.lengths is None:
            return [order[i : i + size] for i in range(0, n, size)]
        mega = size * MEGABATCH
        grouped = []
        for i in range(0, n, mega):
            chunk = order[i : i + mega]
            # longest first within the group; stable, so equal lengths keep the permutation's order
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            grouped += [chunk[j : j + size] for j in range(0, len(chunk), size)]
        shuffle = np.random.default_rng([self.seed, epoch, 1]).permutation(len(grouped))
        return [grouped[k] for k in shuffle]

    def micro_batch(self, k: int) -> np.ndarray:
        """Sample indices of global micro-batch ``k`` (counted from the run's start, over epochs)."""
        epoch, j = divmod(k, self.plan.micro_per_epoch)
        if epoch != self._epoch:
            self._batches, self._epoch = self.epoch_batches(epoch), epoch
        return self._batches[j]


def rank_share(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This process's part of a global micro-batch: contiguous, as even as can be (a short last micro-batch
    may leave a process none; its step still takes part in the gradient sum with nothing)."""
    return np.array_split(indices, world)[rank]
