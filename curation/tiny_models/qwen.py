"""Tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL: a ViT that takes each image at its own resolution (so each image
gives its own number of tokens), a 2x2 patch merger, and a Qwen text model with multimodal rotary positions
(M-RoPE: time, height and width share the rotary dimensions)."""
from __future__ import annotations

from pathlib import Path

from ..vlm.chat import family_template
from . import builder
from .common import save, text_config, token_ids
from .common import seed as set_seed
from .tokenizer import train_tokenizer

_QWEN_SPECIAL = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}
PATCH, MERGE = 8, 2


def _qwen_tokenizer():
    # Qwen's tokenizers put no BOS in front; <|endoftext|> pads and <|im_end|> ends a turn
    return train_tokenizer(extra_special=_QWEN_SPECIAL, more_special=("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>", pad="<|endoftext|>")


def _image_processors(max_pixels: int, video_class=None, **norm):
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # small images: a 64x64 photo is 8x8 patches of 8 px, merged 2x2 into 16 tokens; 1 token at least
    unit = PATCH * MERGE
    size = {"shortest_edge": unit * unit, "longest_edge": max_pixels}
    image = Qwen2VLImageProcessor(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2, size=size, **norm)
    video = (video_class or Qwen2VLVideoProcessor)(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2, size=size, cap_pixels_per_frame=True, **norm)
    return image, video


def _vision_ids(tokenizer) -> dict[str, int]:
    return token_ids(tokenizer, image_token_id="<|image_pad|>", video_token_id="<|video_pad|>", vision_start_token_id="<|vision_start|>",
                     vision_end_token_id="<|vision_end|>")


def _mrope(head_dim: int) -> list[int]:
    """How the rotary half-dimensions split between time, height and width (Qwen2-VL: 16/24/24 of 64)."""
    third = head_dim // 6
    return [head_dim // 2 - 2 * third, third, third]


def _build(family: str, classes, out: Path, seed: int, tokenizer, text: dict, vision: dict, max_pixels: int, video_class=None, **norm) -> Path:
    config_class, model_class, processor_class = classes
    config = config_class(text_config=text, vision_config=vision, tie_word_embeddings=False, **_vision_ids(tokenizer))
    set_seed(seed)
    model = model_class(config).eval()
    image, video = _image_processors(max_pixels, video_class, **norm)
    processor = processor_class(image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=family_template(family))
    return save(out, model, processor, family, seed)


def _text(tokenizer, layers: int, heads: int, kv_heads: int, hidden: int) -> dict:
    return text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope(hidden // heads)})


@builder("qwen2_vl")
def make_qwen2_vl(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, max_pixels: int = 64 * 64) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer = _qwen_tokenizer()
    # Qwen2-VL's vision config: embed_dim is the ViT's width, hidden_size the merger's output (the text width)
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": hidden, "mlp_ratio": 2, "num_heads": 2, "patch_size": PATCH, "spatial_merge_size": MERGE,
              "temporal_patch_size": 2}
    return _build("qwen2_vl", (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor), out, seed, tokenizer,
                  _text(tokenizer, layers, heads, kv_heads, hidden), vision, max_pixels)


@builder("qwen2_5_vl")
def make_qwen2_5_vl(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, max_pixels: int = 64 * 64) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer = _qwen_tokenizer()
    # windowed attention in the vision blocks but the last (as Qwen2.5-VL's full-attention blocks)
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": PATCH, "spatial_merge_size": MERGE,
              "temporal_patch_size": 2, "window_size": 32, "out_hidden_size": hidden, "fullatt_block_indexes": [1]}
    return _build("qwen2_5_vl", (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor), out, seed, tokenizer,
                  _text(tokenizer, layers, heads, kv_heads, hidden), vision, max_pixels)


@builder("qwen3_vl")
def make_qwen3_vl(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, max_pixels: int = 64 * 64) -> Path:
    """Qwen3-VL: interleaved M-RoPE, and "deepstack" mergers that add vision features of early ViT layers to
    the first text layers."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor

    tokenizer = _qwen_tokenizer()
    head_dim = hidden // heads
    quarter = head_dim // 8  # of the head_dim/2 rotary frequencies: half for time, a quarter each for height and width
    text = text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden, head_dim=head_dim, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_interleaved": True,
                                        "mrope_section": [head_dim // 2 - 2 * quarter, quarter, quarter]})
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": PATCH, "spatial_merge_size": MERGE,
              "temporal_patch_size": 2, "out_hidden_size": hidden, "num_position_embeddings": 64, "deepstack_visual_indexes": [0, 1]}
    half = [0.5, 0.5, 0.5]  # Qwen3-VL normalises pixels to [-1, 1]
    return _build("qwen3_vl", (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor), out, seed, tokenizer, text, vision, max_pixels,
                  Qwen3VLVideoProcessor, image_mean=half, image_std=half)
