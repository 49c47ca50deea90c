"""LLaVA: a CLIP vision tower, an MLP projector and a Llama language model."""
from __future__ import annotations

from typing import Any

from PIL import Image

from .base import Encoded, VLMAdapter


class LlavaAdapter(VLMAdapter):
    family = "llava"
    model_types = ("llava",)
    part_prefixes = {"vision": "model.vision_tower.", "connector": "model.multi_modal_projector.", "language": "model.language_model."}
    # LLaVA's connector is a two-layer MLP with no attention: LoRA wraps its two linears
    lora_modules = {
        "vision": ("q_proj", "k_proj", "v_proj", "out_proj"),
        "connector": ("linear_1", "linear_2"),
        "language": ("q_proj", "k_proj", "v_proj", "o_proj"),
    }

    def _build_image_block(self) -> list[int]:
        enc = self.processor(text=[self.processor.image_token], images=[Image.new("RGB", (16, 16))])
        return [t for t in enc["input_ids"][0] if t != self.tokenizer.bos_token_id]

    def prompt_pieces(self, n_images: int) -> tuple[str, str, str]:
        # LLaVA-1.5's layout: "USER: <image>\nquestion ASSISTANT: answer</s>"
        return "USER:", "\n", " ASSISTANT:"

    def pixel_inputs(self, batch: list[Encoded]) -> dict[str, Any]:
        images = [im.convert("RGB") for e in batch for im in e.images]
        return {"pixel_values": self.processor.image_processor(images, return_tensors="pt")["pixel_values"]}
