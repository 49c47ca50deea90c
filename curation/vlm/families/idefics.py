"""IDEFICS2 (the paper's model: Mistral language model, SigLIP vision, perceiver connector) and IDEFICS3 /
SmolVLM (Llama or SmolLM language model, SigLIP vision, pixel-shuffle MLP connector)."""
from __future__ import annotations

from ..base import DECODER_ATTENTION, VIT_ATTENTION, VLMAdapter
from ..registry import FAMILIES


class _IdeficsImages(VLMAdapter):
    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """Native aspect ratio up to ``longest_edge``, and splitting into crops plus the whole image (the
        paper's setting for IDEFICS2: 4 crops and the whole)."""
        ip = self.processor.image_processor
        if longest_edge is not None:
            if longest_edge < 14:
                raise ValueError(f"resolution {longest_edge} is too small")
            size = dict(ip.size)
            size["longest_edge"] = int(longest_edge)
            if "shortest_edge" in size:
                size["shortest_edge"] = min(int(size["shortest_edge"]), int(longest_edge))
            ip.size = size
        if splitting is not None:
            ip.do_image_splitting = bool(splitting)


@FAMILIES.add
class Idefics2Adapter(_IdeficsImages):
    family = "idefics2"
    hub_names = ("idefics2",)
    title = "IDEFICS2"
    model_types = ("idefics2",)
    hub_example = "HuggingFaceM4/idefics2-8b"
    parts = {"vision": ("model.vision_model.",), "connector": ("model.connector.",), "language": ("model.text_model.",)}
    # SigLIP names its output projection out_proj; the perceiver and Mistral name it o_proj
    lora_modules = {
        "vision": VIT_ATTENTION,
        "connector": DECODER_ATTENTION,
        "language": DECODER_ATTENTION,
    }
    llamafactory_template = None  # LLaMA-Factory has no IDEFICS2 template


@FAMILIES.add
class Idefics3Adapter(_IdeficsImages):
    family = "idefics3"
    hub_names = ("idefics3", "smolvlm")
    title = "IDEFICS3 / SmolVLM"
    model_types = ("idefics3", "smolvlm")
    hub_example = "HuggingFaceTB/SmolVLM-Instruct"
    parts = {"vision": ("model.vision_model.",), "connector": ("model.connector.",), "language": ("model.text_model.",)}
    # the connector is a pixel shuffle and one linear projection (modality_projection.proj)
    lora_modules = {
        "vision": VIT_ATTENTION,
        "connector": ("proj",),
        "language": DECODER_ATTENTION,
    }
    llamafactory_template = None
