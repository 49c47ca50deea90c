"""Mistral 3 (Mistral Small 3.1): Pixtral vision at each image's own size (rows of [IMG] tokens, each row
ended by [IMG_BREAK], the image by [IMG_END]), a 2x2 patch merger and an MLP, and a Mistral language model."""
from __future__ import annotations

from ..base import DECODER_ATTENTION, TOWER_PROJECTOR_LANGUAGE, VLMAdapter
from ..registry import FAMILIES


@FAMILIES.add
class Mistral3Adapter(VLMAdapter):
    family = "mistral3"
    hub_names = ("mistral-small-3", "magistral-small", "ministral-3", "devstral-small", "mistral3")
    title = "Mistral 3"
    model_types = ("mistral3",)
    hub_example = "mistralai/Mistral-Small-3.1-24B-Instruct-2503"
    parts = TOWER_PROJECTOR_LANGUAGE
    # Pixtral's attention names its projections as Mistral's do; the part prefixes keep them apart
    lora_modules = {
        "vision": DECODER_ATTENTION,
        "connector": ("merging_layer", "linear_1", "linear_2"),
        "language": DECODER_ATTENTION,
    }
    llamafactory_template = "mistral_small"

    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """Images keep their aspect ratio, scaled down to ``longest_edge`` at most; Pixtral never splits."""
        if splitting:
            raise ValueError("mistral3 takes each image whole at its own size; it has no image splitting")
        if longest_edge is not None:
            if longest_edge < 16:
                raise ValueError(f"resolution {longest_edge} is too small")
            self.processor.image_processor.size = {"longest_edge": int(longest_edge)}
