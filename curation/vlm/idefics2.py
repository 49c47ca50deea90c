"""IDEFICS2 (the paper's model): Mistral language model, SigLIP vision, perceiver connector."""
from __future__ import annotations

from typing import Any

from PIL import Image

from .base import Encoded, VLMAdapter


class Idefics2Adapter(VLMAdapter):
    family = "idefics2"
    model_types = ("idefics2",)
    part_prefixes = {"vision": "model.vision_model.", "connector": "model.connector.", "language": "model.text_model."}
    # SigLIP names its output projection out_proj; the perceiver and Mistral name it o_proj
    lora_modules = {
        "vision": ("q_proj", "k_proj", "v_proj", "out_proj"),
        "connector": ("q_proj", "k_proj", "v_proj", "o_proj"),
        "language": ("q_proj", "k_proj", "v_proj", "o_proj"),
    }

    def configure_images(self, *, longest_edge: int | None = None, splitting: bool | None = None) -> None:
        """IDEFICS2 takes images at native aspect ratio up to ``longest_edge`` (980 by default) and can split
        each into 4 crops plus the whole (the paper's setting); both change the image token block."""
        ip = self.processor.image_processor
        if longest_edge is not None:
            if longest_edge < 14:
                raise ValueError(f"resolution {longest_edge} is too small")
            ip.size = {"longest_edge": int(longest_edge), "shortest_edge": min(int(ip.size.get("shortest_edge", 378)), int(longest_edge))}
        if splitting is not None:
            ip.do_image_splitting = bool(splitting)
        self._image_block = self._build_image_block()

    @classmethod
    def attn_implementation(cls, language_model: str) -> dict[str, str]:
        return {"text_config": language_model, "vision_config": "sdpa", "perceiver_config": "sdpa"}

    def _build_image_block(self) -> list[int]:
        image_token = self.processor.image_token
        enc = self.processor(text=[image_token], images=[[Image.new("RGB", (16, 16))]])
        ids = list(enc["input_ids"][0])
        return [t for t in ids if t != self.tokenizer.bos_token_id]

    def prompt_pieces(self, n_images: int) -> tuple[str, str, str]:
        # IDEFICS2's chat layout: "User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>"
        return "User:", "\n" if n_images > 1 else "", f"{self.end_text()}\nAssistant:"

    def end_text(self) -> str:
        eou = self.processor.end_of_utterance_token
        return getattr(eou, "content", eou)

    def pixel_inputs(self, batch: list[Encoded]) -> dict[str, Any]:
        out = self.processor.image_processor([[im.convert("RGB") for im in e.images] for e in batch], return_tensors="pt")
        return {k: out[k] for k in ("pixel_values", "pixel_attention_mask") if k in out}
