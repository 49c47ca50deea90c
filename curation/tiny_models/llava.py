"""Tiny LLaVA-1.5 (CLIP vision tower, MLP projector, Llama text model)."""
from __future__ import annotations

from pathlib import Path

from ..vlm.chat import family_template
from . import builder
from .common import save, text_config
from .common import seed as set_seed
from .tokenizer import train_tokenizer


@builder("llava")
def make_llava(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, image_size: int = 32) -> Path:
    """``image_size``: the CLIP tower's input (32 px: 17 image tokens; the benchmark takes 144 px: 325)."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = train_tokenizer(extra_special={"image_token": "<image>"})
    patch = 8
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": image_size, "patch_size": patch, "projection_dim": 32},
        text_config=dict(text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden), model_type="llama"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    set_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,  # CLIP's class token, kept by the "full" strategy
        chat_template=family_template("llava"),
    )
    return save(out, model, processor, "llava", seed)


PATCH = 8
# "anyres": a single image is tiled on the grid closest to its aspect ratio (multiples of the tile)
GRIDS = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (2, 3), (3, 2), (3, 3)]


@builder("llava_onevision")
def make_llava_onevision(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, tile: int = 32) -> Path:
    """LLaVA-OneVision: SigLIP vision, MLP projector, Qwen2 text. One image is tiled ("anyres") so its
    token count follows its size; several images in one sample are taken whole, as the real model does.
    ``tile``: the SigLIP input, (tile/8)² tokens per tile."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    pinpoints = [[rows * tile, cols * tile] for rows, cols in GRIDS]
    tokenizer = train_tokenizer(extra_special={"image_token": "<image>", "video_token": "<video>"}, more_special=("<|im_start|>", "<|im_end|>"),
                                bos=None, eos="<|im_end|>", pad="<|endoftext|>")
    config = LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": tile, "patch_size": PATCH, "vision_use_head": False},
        text_config=dict(text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden), model_type="qwen2",
                         use_sliding_window=False, tie_word_embeddings=False),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1, image_grid_pinpoints=pinpoints, vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
    )
    set_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints),
        tokenizer=tokenizer, video_processor=LlavaOnevisionVideoProcessor(size={"height": tile, "width": tile}),
        num_image_tokens=(tile // PATCH) ** 2, vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
        chat_template=family_template("llava_onevision"),
    )
    return save(out, model, processor, "llava_onevision", seed)
