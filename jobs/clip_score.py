"""The CLIPScore job's spec (gpu queue): the CLIP model and how many items a unit scores."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from curation.clip_score import ClipConfig
from db import objects

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
        from curation.tiny_models.common import MARKER as TINY_MARKER

        config = self.config
        if objects.is_remote(config.model):
            # a folder in the object store: its URL is the model's name everywhere; each worker copies it
            ref = str(objects.ObjectURL.parse(config.model)).rstrip("/")
            return {"config": {**asdict(config), "model": ref}, "model_id": ref, "items_per_unit": self.items_per_unit,
                    "demo_model": objects.head(objects.ObjectURL.parse(ref).child(TINY_MARKER)) is not None}
        ref = model_ref(config.model)
        local = ref.startswith(("local-dir:", "hf-hub:"))
        model_id = ref if local else f"{ref}:{config.pretrained or 'random'}"
        demo = local and is_tiny(ref.split(":", 1)[1])
        # workers may start in another folder: a local model travels as an absolute local-dir: reference
        return {"config": {**asdict(config), "model": ref}, "model_id": model_id, "items_per_unit": self.items_per_unit, "demo_model": demo}
