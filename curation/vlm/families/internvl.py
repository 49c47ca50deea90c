"""InternVL (transformers' own InternVL3 layout): InternViT vision on fixed-size tiles (an image is cut into
tiles at its aspect ratio plus a thumbnail), pixel shuffle and an MLP projector, and a Qwen2 language model."""
from __future__ import annotations

from ..base import DECODER_ATTENTION, TOWER_PROJECTOR_LANGUAGE, VLMAdapter
from ..registry import FAMILIES


@FAMILIES.add
class InternVLAdapter(VLMAdapter):
    family = "internvl"
    hub_names = ("internvl",)
    title = "InternVL3"
    model_types = ("internvl",)
    hub_example = "OpenGVLab/InternVL3-8B-hf"
    parts = TOWER_PROJECTOR_LANGUAGE
    lora_modules = {
        "vision": ("q_proj", "k_proj", "v_proj", "projection_layer"),
        "connector": ("linear_1", "linear_2"),
        "language": DECODER_ATTENTION,
    }
    llamafactory_template = "intern_vl"

    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """Tiles have the vision tower's fixed size; "splitting" is cutting an image into tiles (off: the
        thumbnail alone)."""
        if longest_edge is not None:
            raise ValueError("internvl takes tiles of its vision tower's fixed size; it has no resolution option (use splitting)")
        if splitting is not None:
            self.processor.image_processor.crop_to_patches = bool(splitting)
