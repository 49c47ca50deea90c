"""The CLIPScore job's spec (gpu queue): the CLIP model and how many items a unit scores."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from curation.clip_score import ClipConfig

from .registry import JobSpec, register

DEFAULT_ITEMS_PER_UNIT = 128


@register("clip_score")
@dataclass(frozen=True)
class ClipScoreJob(JobSpec):
    QUEUE = "gpu"

    config: ClipConfig
    items_per_unit: int = DEFAULT_ITEMS_PER_UNIT

    def params(self) -> dict[str, Any]:
        from curation.clip_score import model_ref
        from curation.tiny_models import is_tiny

        config = self.config
        ref = model_ref(config.model)
        local = ref.startswith(("local-dir:", "hf-hub:"))
        model_id = ref if local else f"{ref}:{config.pretrained or 'random'}"
        demo = local and is_tiny(ref.split(":", 1)[1])
        # workers may start in another folder: a local model travels as an absolute local-dir: reference
        return {"config": {**asdict(config), "model": ref}, "model_id": model_id, "items_per_unit": self.items_per_unit, "demo_model": demo}
