"""LLaVA-1.5 (CLIP vision, MLP projector, Llama/Vicuna language model) and LLaVA-OneVision (SigLIP vision,
MLP projector, Qwen2 language model; a single image is tiled at its aspect ratio, "anyres")."""
from __future__ import annotations

from ..base import DECODER_ATTENTION, TOWER_PROJECTOR_LANGUAGE, VIT_ATTENTION, VLMAdapter
from ..registry import FAMILIES

# the LLaVA projector is a two-layer MLP with no attention: LoRA wraps its two linears
_LORA = {"vision": VIT_ATTENTION, "connector": ("linear_1", "linear_2"), "language": DECODER_ATTENTION}


@FAMILIES.add
class LlavaAdapter(VLMAdapter):
    family = "llava"
    hub_names = ("llava-1.5", "llava-v1.5")
    title = "LLaVA-1.5"
    model_types = ("llava",)
    hub_example = "llava-hf/llava-1.5-7b-hf"
    parts = TOWER_PROJECTOR_LANGUAGE
    lora_modules = _LORA
    # LLaVA-1.5 was trained on one image per conversation
    max_images = 1
    llamafactory_template = "llava"


@FAMILIES.add
class LlavaOnevisionAdapter(VLMAdapter):
    family = "llava_onevision"
    hub_names = ("llava-onevision",)
    title = "LLaVA-OneVision"
    model_types = ("llava_onevision",)
    hub_example = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
    parts = TOWER_PROJECTOR_LANGUAGE
    lora_modules = _LORA  # the same projector, SigLIP and Qwen2 names
    llamafactory_template = None  # LLaMA-Factory has no LLaVA-OneVision template
