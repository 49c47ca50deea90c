"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: a ViT that takes each image at its own resolution (so each image
gives its own number of tokens: ``image_grid_thw``), a merger that joins 2x2 patches into one token (the
connector; Qwen3-VL adds "deepstack" mergers feeding early layers), and a Qwen language model with
multimodal rotary positions (M-RoPE)."""
from __future__ import annotations

from ..base import DECODER_ATTENTION, VLMAdapter
from ..registry import FAMILIES


class _QwenVL(VLMAdapter):
    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """Resolution: at most ``longest_edge``² pixels per image (the processor keeps the aspect ratio and
        rounds to whole patches). Qwen never splits images into crops: it sees them whole."""
        if splitting:
            raise ValueError(f"{self.family} takes each image whole at its own resolution; it has no image splitting")
        if longest_edge is not None:
            ip = self.processor.image_processor
            unit = int(ip.patch_size) * int(ip.merge_size)
            if longest_edge < unit:
                raise ValueError(f"resolution {longest_edge} is below one {unit}-pixel token")
            pixels = int(longest_edge) ** 2
            size = dict(getattr(ip, "size", None) or {})
            size["longest_edge"] = pixels  # transformers 5 keeps max_pixels as size["longest_edge"]
            size["shortest_edge"] = min(int(size.get("shortest_edge", unit * unit)), pixels)
            ip.size = size
            if hasattr(ip, "max_pixels"):
                ip.max_pixels = pixels
                ip.min_pixels = min(int(getattr(ip, "min_pixels", unit * unit) or unit * unit), pixels)


@FAMILIES.add
class Qwen2VLAdapter(_QwenVL):
    family = "qwen2_vl"
    hub_names = ("qwen2-vl",)
    title = "Qwen2-VL"
    model_types = ("qwen2_vl",)
    hub_example = "Qwen/Qwen2-VL-7B-Instruct"
    parts = {"vision": ("model.visual.",), "connector": ("model.visual.merger.",), "language": ("model.language_model.",)}
    # the vision blocks use one fused qkv projection and proj; the merger is an MLP (mlp.0, mlp.2)
    lora_modules = {"vision": ("qkv", "proj"), "connector": ("0", "2"), "language": DECODER_ATTENTION}
    llamafactory_template = "qwen2_vl"


@FAMILIES.add
class Qwen25VLAdapter(_QwenVL):
    family = "qwen2_5_vl"
    hub_names = ("qwen2.5-vl", "qwen2_5_vl")
    title = "Qwen2.5-VL"
    model_types = ("qwen2_5_vl",)
    hub_example = "Qwen/Qwen2.5-VL-7B-Instruct"
    parts = {"vision": ("model.visual.",), "connector": ("model.visual.merger.",), "language": ("model.language_model.",)}
    lora_modules = {"vision": ("qkv", "proj"), "connector": ("0", "2"), "language": DECODER_ATTENTION}
    llamafactory_template = "qwen2_vl"  # LLaMA-Factory serves Qwen2-VL and Qwen2.5-VL with one template


@FAMILIES.add
class Qwen3VLAdapter(_QwenVL):
    family = "qwen3_vl"
    hub_names = ("qwen3-vl",)
    title = "Qwen3-VL"
    model_types = ("qwen3_vl",)
    hub_example = "Qwen/Qwen3-VL-8B-Instruct"
    # the connector: the merger and the deepstack mergers that feed early text layers
    parts = {"vision": ("model.visual.",), "connector": ("model.visual.merger.", "model.visual.deepstack_merger_list."),
             "language": ("model.language_model.",)}
    lora_modules = {"vision": ("qkv", "proj"), "connector": ("linear_fc1", "linear_fc2"), "language": DECODER_ATTENTION}
    llamafactory_template = "qwen3_vl_nothink"  # the Instruct models; "qwen3_vl" is for the Thinking ones
