"""The training job's spec (train queue): LoRA fine-tuning of a VLM on a snapshot's training products."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db import objects
from trainer.config import TrainConfig

from .locations import location
from .names import check_folder_name
from .registry import JobSpec, register


@register("train")
@dataclass(frozen=True)
class TrainJob(JobSpec):
    QUEUE = "train"

    snapshot: str
    model: str
    name: str
    config: TrainConfig
    out: str

    def params(self) -> dict[str, Any]:
        from curation.vlm import check_model_folder

        check_folder_name(self.name, "a run name")
        check_model_folder(self.model)
        model = location(str(self.model)) if objects.is_remote(str(self.model)) else str(self.model)
        return {"snapshot": self.snapshot, "model": model, "name": self.name, "config": self.config.to_dict(),
                "out": location(self.out)}
