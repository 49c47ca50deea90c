"""Gemma 3: SigLIP vision, a connector that pools the patches and projects them with one weight matrix, and
a Gemma 3 language model whose layers alternate sliding-window and full attention; image tokens attend to
each other in both directions (``token_type_ids`` from the processor)."""
from __future__ import annotations

from ..base import DECODER_ATTENTION, TOWER_PROJECTOR_LANGUAGE, VIT_ATTENTION, VLMAdapter
from ..registry import FAMILIES


@FAMILIES.add
class Gemma3Adapter(VLMAdapter):
    family = "gemma3"
    hub_names = ("gemma-3", "gemma3", "medgemma")
    title = "Gemma 3"
    model_types = ("gemma3",)
    hub_example = "google/gemma-3-4b-it"
    parts = TOWER_PROJECTOR_LANGUAGE
    # the connector has no linear layer (a norm, a pooling and one bare weight matrix, 3M weights in the 4B
    # model): it is trained in full when the connector is switched on, the nearest to LoRA it allows
    lora_modules = {
        "vision": VIT_ATTENTION,
        "connector": (),
        "language": DECODER_ATTENTION,
    }
    full_modules = {"connector": ("model.multi_modal_projector",)}
    llamafactory_template = "gemma3"

    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """Gemma 3 takes every image at its vision tower's fixed square size; "splitting" is its
        pan-and-scan (crops of a wide or tall image besides the whole)."""
        if longest_edge is not None:
            raise ValueError("gemma3 takes images at its vision tower's fixed size; it has no resolution option (use splitting: pan-and-scan)")
        if splitting is not None:
            self.processor.image_processor.do_pan_and_scan = bool(splitting)
