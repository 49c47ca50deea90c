"""The training job's spec (train queue): LoRA fine-tuning of a VLM on a snapshot's training products."""
from __future__ import annotations

from dataclasses import dataclass, replace

from config.fields import about, check, param
from db.storage.locations import Location
from trainer.config import TrainConfig

from .names import check_folder_name
from .registry import JobSpec, job_kind


@job_kind("train")
@dataclass(frozen=True)
class TrainJob(JobSpec):
    QUEUE = "train"

    snapshot: str = param(help="The snapshot whose training products the run learns from (vitpro snapshot list).")
    model: str = param(help="The base VLM: a checkpoint folder (or s3:// prefix) of any family in `vitpro models families`.", label="Base VLM")
    name: str = param(help="The run's name: its folder, its adapter, what `vitpro eval --adapter` names.", label="Run name")
    out: str = param(help="The run folder or s3:// prefix (checkpoints, the adapter, the log).")
    config: TrainConfig = param(factory=TrainConfig, help="The training settings (the paper's by default: LoRA r=256, alpha=32, lr 2e-4, batch 8).")

    def resolve(self) -> "TrainJob":
        from curation.vlm import check_model_folder

        check(self)
        try:
            check_folder_name(self.name, "a run name")
        except ValueError as exc:
            raise about("name", exc) from None
        try:
            check_model_folder(self.model)
        except ValueError as exc:
            raise about("model", exc) from None
        # a local model stays as it was given; an s3:// one is spelled as every worker records it
        model = str(Location.of(self.model))
        return replace(self, model=model, out=str(Location.of(self.out).absolute()))
