"""The CLIPScore job's spec (gpu queue): the CLIP model and how many items a unit scores."""
from __future__ import annotations

from dataclasses import dataclass, replace

from config.fields import FieldError, check, param
from curation.clip_score import ClipConfig
from db.storage.locations import Location

from .registry import JobSpec, job_kind

DEFAULT_ITEMS_PER_UNIT = 128


@job_kind("clip_score")
@dataclass(frozen=True)
class ClipScoreJob(JobSpec):
    QUEUE = "gpu"

    config: ClipConfig = param(factory=ClipConfig, help="The CLIP model and how it runs.")
    items_per_unit: int = param(DEFAULT_ITEMS_PER_UNIT, min=1, help="Items in one work unit: a retry's and a cancel's granularity.")
    model_id: str = param("", derived=True, help="The scores' model id: a folder's local-dir: reference, or NAME:PRETRAINED.")
    demo_model: bool = param(False, derived=True, help="A tiny checkpoint of `vitpro models make-tiny` (random weights): its scores are flagged.")

    def resolve(self) -> "ClipScoreJob":
        from curation.clip_score import model_ref
        from curation.tiny_models import is_tiny

        check(self)
        config = self.config
        where = Location.of(config.model)
        if not where.is_local:
            # a folder in the object store: its URL is the model's name everywhere; each worker copies it
            ref = str(where)
            return replace(self, config=replace(config, model=ref), model_id=ref, demo_model=is_tiny(ref))
        ref = model_ref(config.model)
        local = ref.startswith(("local-dir:", "hf-hub:"))
        if not local:
            if "/" in config.model or config.model.startswith("."):
                raise FieldError("config.model", f"{config.model}: no such model folder")
            import open_clip

            if config.model not in open_clip.list_models():
                raise FieldError("config.model", f"{config.model!r} is neither a model folder nor an open_clip model name")
        model_id = ref if local else f"{ref}:{config.pretrained or 'random'}"
        demo = local and is_tiny(ref.split(":", 1)[1])
        # workers may start in another folder: a local model travels as an absolute local-dir: reference
        return replace(self, config=replace(config, model=ref), model_id=model_id, demo_model=demo)
