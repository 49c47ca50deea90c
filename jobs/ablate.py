"""The ablation job's spec (train queue): the objective benchmark over a grid of settings (OCR,
resolution, image splitting, 4-bit, FlashAttention-2, adapter on/off), one cell per combination asked for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.benchmarks import EVAL_BATCH_SIZE, OBJECTIVE_MODES
from trainer.config import TrainConfig

from .names import check_folder_name, check_fresh_folder
from .registry import JobSpec, register


@register("ablate")
@dataclass(frozen=True)
class AblateJob(JobSpec):
    """``out`` becomes the ablation's folder: refused when it holds an earlier evaluation's files."""

    QUEUE = "train"
    CHOICES = {"objective_mode": OBJECTIVE_MODES}

    name: str
    snapshot: str
    model: str
    adapter: str | None
    grid: dict[str, list[str]]
    out: str
    full: bool = False
    config: TrainConfig | None = None
    limit: int | None = None
    batch_size: int = EVAL_BATCH_SIZE  # items generated at once in each cell
    objective_mode: str = "generate"  # generate-and-parse, or "logprob" (P(yes) vs P(no) of the first answer token)

    def params(self) -> dict[str, Any]:
        from curation.vlm import check_model_folder
        from trainer import ablation

        from .eval import check_eval_running

        check_folder_name(self.name, "an ablation name")
        if not self.grid:
            raise ValueError("an empty grid: give at least one --grid FACTOR=v1,v2")
        if "adapter" in self.grid and not self.adapter:
            raise ValueError("the grid switches the adapter on and off: give --adapter (a training run or an adapter folder)")
        check_eval_running(self.batch_size, self.objective_mode)
        check_model_folder(self.model)
        out = check_fresh_folder(self.out, "evaluation")
        defaults = {} if self.adapter else {"adapter": "off"}
        return {"name": self.name, "snapshot": self.snapshot, "model": str(self.model), "adapter": self.adapter, "grid": self.grid,
                "full": bool(self.full), "cells": ablation.cells(self.grid, full=self.full, defaults=defaults), "defaults": defaults,
                "config": (self.config or TrainConfig()).to_dict(), "limit": self.limit, "out": str(out), "k_shot": 0, "examples": [],
                "batch_size": int(self.batch_size), "objective_mode": self.objective_mode}
