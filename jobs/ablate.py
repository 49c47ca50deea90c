"""The ablation job's spec (train queue): the objective benchmark over a grid of settings (OCR,
resolution, image splitting, 4-bit, FlashAttention-2, adapter on/off), one cell per combination asked for."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from config.fields import FieldError, about, check, param
from trainer.benchmarks import EVAL_BATCH_SIZE, OBJECTIVE_MODES
from trainer.config import TrainConfig

from .eval import check_model, check_name_and_out
from .registry import JobSpec, job_kind


@job_kind("ablate")
@dataclass(frozen=True)
class AblateJob(JobSpec):
    """``out`` becomes the ablation's folder: refused when it holds an earlier evaluation's files."""

    QUEUE = "train"

    name: str = param(help="The ablation's name (an evaluation's: its folder and row).")
    snapshot: str = param(help="The snapshot whose held-out products are evaluated.")
    model: str = param(help="The base VLM checkpoint folder.")
    grid: dict[str, list[str]] = param(help="FACTOR: [values] — ocr, resolution, splitting, 4bit, flash_attention, adapter.")
    out: str = param(help="The ablation's folder (predictions per cell, ablation.md, ablation.json).")
    adapter: str | None = param(None, help="A training run's name or adapter folder (needed when the grid switches the adapter).")
    full: bool = param(False, help="Every combination of the factors (default: one factor at a time against the defaults).")
    config: TrainConfig | None = param(factory=TrainConfig, help="How the model is loaded and fed in every cell, before the cell's settings.")
    limit: int | None = param(None, min=1, help="At most this many items per cell.")
    batch_size: int = param(EVAL_BATCH_SIZE, min=1, help="Items generated at once in each cell.")
    objective_mode: str = param("generate", choices=OBJECTIVE_MODES, help="generate-and-parse, or logprob (P(yes) vs P(no) of the first answer token).")
    cells: list[dict[str, Any]] = param(factory=list, derived=True, help="The grid's cells, one evaluation each.")
    defaults: dict[str, Any] = param(factory=dict, derived=True, help="The factors' values in cells that do not vary them.")

    # what the objective benchmark of a cell is run with (an evaluation's fields that an ablation fixes)
    k_shot = 0
    examples = ()
    judge = None

    def resolve(self) -> "AblateJob":
        from trainer import ablation

        check(self)
        if not self.grid:
            raise FieldError("grid", "an empty grid: give at least one FACTOR=v1,v2")
        if "adapter" in self.grid and not self.adapter:
            raise FieldError("adapter", "the grid switches the adapter on and off: give the adapter (a training run or an adapter folder)")
        check_model(self.model)
        out = check_name_and_out(self.name, self.out, "an ablation name")
        defaults = {} if self.adapter else {"adapter": "off"}
        try:
            cells = ablation.cells(self.grid, full=self.full, defaults=defaults)
        except ValueError as exc:
            raise about("grid", exc) from None
        return replace(self, model=str(self.model), out=out, cells=cells, defaults=defaults, config=self.config or TrainConfig())
