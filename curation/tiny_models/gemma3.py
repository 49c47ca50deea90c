"""Tiny Gemma 3: SigLIP vision, a pooled projection (a bare weight matrix), and a Gemma 3 text model whose
layers alternate sliding-window and full attention, with image tokens attending to each other both ways."""
from __future__ import annotations

from pathlib import Path

from ..vlm.chat import family_template
from . import builder
from .common import save, text_config
from .common import seed as set_seed
from .tokenizer import train_tokenizer


@builder("gemma3")
def make_gemma3(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, sliding_window: int = 8,
                image_size: int = 32, mm_tokens: int = 4) -> Path:
    """``mm_tokens`` per image: the patches ((image_size/8)² of them) average-pooled to that square number."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    tokenizer = train_tokenizer(
        extra_special={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
        more_special=("<start_of_turn>", "<end_of_turn>"), bos="<bos>", eos="<eos>", add_bos=False,  # the template writes <bos>
    )
    head_dim = hidden // heads
    # a small window so that it matters on short prompts; sliding and full layers alternate as in Gemma 3 (5:1 there)
    kinds = ["sliding_attention" if k % 2 == 0 else "full_attention" for k in range(layers)]
    config = Gemma3Config(
        text_config=text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden, head_dim=head_dim,
                                query_pre_attn_scalar=head_dim, sliding_window=sliding_window, layer_types=kinds),
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": image_size, "patch_size": 8, "vision_use_head": False},
        mm_tokens_per_image=mm_tokens,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )
    set_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    # Gemma 3 initialises its projection weight to zero, so an untrained model would ignore the image:
    # seeded random values instead (still deterministic)
    import torch

    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, config.initializer_range)
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=tokenizer,
                                image_seq_length=mm_tokens, chat_template=family_template("gemma3"))
    return save(out, model, processor, "gemma3", seed)
