"""Tiny InternVL (transformers' own InternVL3 layout): InternViT vision on 32-px tiles (an image is cut into
up to 4 tiles plus a thumbnail), pixel shuffle and an MLP projector, and a Qwen2 text model."""
from __future__ import annotations

from pathlib import Path

from ..vlm.chat import family_template
from . import builder
from .common import save, text_config
from .common import seed as set_seed
from .tokenizer import train_tokenizer


@builder("internvl")
def make_internvl(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, max_tiles: int = 4, tile: int = 32) -> Path:
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor, InternVLVideoProcessor

    tokenizer = train_tokenizer(
        extra_special={"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
        more_special=("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>", pad="<|endoftext|>",
    )
    patch = 8
    per_tile = (tile // patch) ** 2 // 4  # pixel shuffle by 0.5: 16 patches -> 4 tokens per tile
    config = InternVLConfig(
        text_config=dict(text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden, rms_norm_eps=1e-6), model_type="qwen2",
                         tie_word_embeddings=False),
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": tile,
                       "patch_size": patch, "norm_type": "layer_norm", "use_qk_norm": False},
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=per_tile, downsample_ratio=0.5,
        vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False,
    )
    set_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=1, max_patches=max_tiles),
        tokenizer=tokenizer, video_processor=InternVLVideoProcessor(size={"height": tile, "width": tile}), image_seq_length=per_tile,
        chat_template=family_template("internvl"),
    )
    return save(out, model, processor, "internvl", seed)
