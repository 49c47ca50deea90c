"""Tiny Mistral 3 (Mistral Small 3.1 layout): Pixtral vision at each image's own size (rows of ``[IMG]``
tokens ended by ``[IMG_BREAK]``, the image by ``[IMG_END]``), a 2x2 patch merger and MLP, and a Mistral text
model."""
from __future__ import annotations

from pathlib import Path

from ..vlm.chat import family_template
from . import builder
from .common import save, text_config
from .common import seed as set_seed
from .tokenizer import train_tokenizer


@builder("mistral3")
def make_mistral3(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, longest_edge: int = 64) -> Path:
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, PixtralImageProcessor, PixtralProcessor

    tokenizer = train_tokenizer(
        extra_special={"image_token": "[IMG]", "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]"},
        more_special=("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"), add_bos=False,  # the template writes <s>
    )
    patch, merge = 8, 2
    config = Mistral3Config(
        vision_config={"model_type": "pixtral", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": longest_edge, "patch_size": patch, "head_dim": 16, "hidden_act": "gelu"},
        text_config=dict(text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden, head_dim=hidden // heads),
                         model_type="mistral", sliding_window=None, tie_word_embeddings=False),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), spatial_merge_size=merge, vision_feature_layer=-1,
        multimodal_projector_bias=False, projector_hidden_act="gelu", tie_word_embeddings=False,
    )
    set_seed(seed)
    model = Mistral3ForConditionalGeneration(config).eval()
    processor = PixtralProcessor(
        image_processor=PixtralImageProcessor(size={"longest_edge": longest_edge}, patch_size={"height": patch, "width": patch}),
        tokenizer=tokenizer, patch_size=patch, spatial_merge_size=merge, chat_template=family_template("mistral3"),
    )
    return save(out, model, processor, "mistral3", seed)
