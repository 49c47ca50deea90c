"""The VisAttnScore job's spec (gpu queue): the VLM, its device and precision, what is scored (generated
samples or items) and how."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from curation.vis_attn import VisAttnConfig

from .locations import is_tiny_model, location
from .registry import JobSpec, register


@register("grounding")
@dataclass(frozen=True)
class GroundingJob(JobSpec):
    QUEUE = "gpu"
    CHOICES = {"on": ("samples", "items")}

    model: str
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 8
    items_per_unit: int = 64
    config: VisAttnConfig = field(default_factory=VisAttnConfig)
    ocr: bool = False
    on: str = "samples"
    selection: str | None = None

    def params(self) -> dict[str, Any]:
        from curation.vlm import check_model_folder

        if self.on not in self.CHOICES["on"]:
            raise ValueError("score grounding --on samples or items")
        check_model_folder(self.model)  # a family we have an adapter for (else: the supported ones, listed)
        if self.batch_size < 1 or self.items_per_unit < 1:
            raise ValueError("batch size and items per unit must be at least 1")
        model = location(self.model)
        return {
            "model": model,
            # the scores are those of this model *and* prompt: OCR text in the prompt makes them others
            "model_id": model + ("#ocr" if self.ocr else ""),
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "items_per_unit": self.items_per_unit,
            "config": asdict(self.config),
            "ocr": self.ocr,
            "on": self.on,
            "selection": self.selection,
            "demo_model": is_tiny_model(model),
        }
