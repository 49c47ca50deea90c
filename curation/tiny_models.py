"""Tiny, deterministic checkpoints built from configs: the only weights these machines can have.

Each builder trains a real byte-level BPE tokenizer on a small product/complaint corpus, builds the model
from a config with a fixed seed, and saves everything with the library's own ``save_pretrained`` (or
open_clip's config format), so loading goes through exactly the code a real checkpoint uses
(``AutoProcessor`` / ``AutoModelForImageTextToText`` / ``open_clip.create_model_and_transforms``).
Their scores mean nothing; a ``vitpro_tiny.json`` marker in the folder lets the CLI and UI say so.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

FAMILIES = ("idefics2", "llava", "clip", "llama")
MARKER = "vitpro_tiny.json"

_CORPUS_LINES = [
    "The bottle of shampoo arrived leaking and the box was wet.",
    "The package was torn open on one side and the lid was cracked.",
    "The box came badly dented, crushed in the middle.",
    "I ordered the 250 ml conditioner but received a 100 ml shampoo.",
    "Brand: Aurelia. Size: 250 ml. Color: Blue. Count: 1.",
    "What is the product type shown in the image? It is a bottle of body lotion.",
    "How many items are in the picture? There are two jars of peanut butter.",
    "Is the packaging damaged? Yes, the carton is torn near the top.",
    "Does the image match the title Nordbrook Dark Roast Ground Coffee 500 g? No.",
    "Extract the attributes as JSON: ProductType, Name, Brand, Color, Count, Size, ExpiryDate, TargetGender.",
    "I cannot tell the expiry date from the image; it is not visible.",
    "Agent: Hello, how can I help you today? Customer: My order arrived damaged.",
    "The vitamin tablets were missing from the sealed container.",
    "Laundry detergent, breakfast cereal, ground coffee, hair care, skin care, household, grocery, health.",
    "Red, green, blue, purple, orange, teal, brown, pink, white, black, grey, silver.",
    "OCR Tokens: SUNVALE LAVENDER BODY LOTION 300 ml",
    "Aurelia Nordbrook Sunvale Pinecrest Lumio Kestrel Brightleaf Oakhaven",
    "Argan Oil, Fresh Mint, Classic, Honey Oat, Citrus, Lavender, Dark Roast, Original",
    "Shampoo, Conditioner, Body Lotion, Ground Coffee, Breakfast Cereal, Laundry Detergent, Vitamin C Tablets",
    "100 ml, 250 ml, 400 ml, 500 g, 1 kg, 1.5 kg, 3 kg, 60 Count, 120 Count, 12 oz",
]


def _corpus() -> list[str]:
    return _CORPUS_LINES * 20


def train_tokenizer(vocab_size: int = 800, extra_special: dict[str, str] | None = None):
    """A byte-level BPE tokenizer trained here in about a second, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    # like Llama/Mistral tokenizers: a <s> in front of every text encoded with special tokens
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="right",
        extra_special_tokens=extra_special or {},
    )


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _text_config(vocab_size: int, pad_id: int, *, layers: int, heads: int, kv_heads: int, hidden: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,  # fewer than heads: grouped KV heads, as Mistral-7B has
        "max_position_embeddings": 4096,
        "pad_token_id": pad_id,
        "rms_norm_eps": 1e-5,
    }


def make_idefics2(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64, image_seq_len: int = 8) -> Path:
    from transformers import Idefics2Config, Idefics2ForConditionalGeneration, Idefics2ImageProcessor, Idefics2Processor

    tokenizer = train_tokenizer(
        extra_special={"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>", "end_of_utterance_token": "<end_of_utterance>"}
    )
    text = dict(_text_config(len(tokenizer), tokenizer.pad_token_id, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden), model_type="mistral", sliding_window=None)
    config = Idefics2Config(
        text_config=text,
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 64, "patch_size": 8},
        perceiver_config={"hidden_size": hidden, "resampler_n_latents": image_seq_len, "resampler_depth": 1, "resampler_n_heads": 2, "resampler_head_dim": 16, "num_key_value_heads": 1, "rms_norm_eps": 1e-5},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    _seed(seed)
    model = Idefics2ForConditionalGeneration(config).eval()
    processor = Idefics2Processor(
        image_processor=Idefics2ImageProcessor(do_image_splitting=False, size={"longest_edge": 64, "shortest_edge": 32}),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
    )
    return _save_hf(out, model, processor, "idefics2", seed)


def make_llava(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64) -> Path:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = train_tokenizer(extra_special={"image_token": "<image>"})
    image_size, patch = 32, 8
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": image_size, "patch_size": patch, "projection_dim": 32},
        text_config=dict(_text_config(len(tokenizer), tokenizer.pad_token_id, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden), model_type="llama"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    _seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,  # CLIP's class token, kept by the "full" strategy
    )
    return _save_hf(out, model, processor, "llava", seed)


def make_llama(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64) -> Path:
    """A tiny causal LM (the local generation backend's test model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    config = LlamaConfig(**_text_config(len(tokenizer), tokenizer.pad_token_id, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    _seed(seed)
    model = LlamaForCausalLM(config).eval()
    return _save_hf(out, model, tokenizer, "llama", seed)


def make_clip(out: Path, *, seed: int = 0) -> Path:
    """A tiny open_clip model in open_clip's own folder format (``open_clip_config.json`` + weights)."""
    import open_clip
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf

    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    name = "vitpro-tiny-clip"
    out.mkdir(parents=True, exist_ok=True)
    # Register the config the way open_clip registers its own (a JSON file named after the model), then
    # build through open_clip's factory so the model carries its preprocessing settings.
    config_file = out / f"{name}.json"
    config_file.write_text(json.dumps(model_cfg))
    open_clip.add_model_config(config_file)
    _seed(seed)
    model = open_clip.create_model(name, pretrained=None).eval()
    config_file.unlink()
    safetensors.torch.save_file(model.state_dict(), str(out / "open_clip_model.safetensors"))
    save_config_for_hf(model, out / "open_clip_config.json", model_config=model_cfg)
    _write_marker(out, "clip", seed, name)
    return out


def _save_hf(out: Path, model, processor, family: str, seed: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _write_marker(out, family, seed, model.config.model_type)
    return out


def _write_marker(out: Path, family: str, seed: int, name: str) -> None:
    (out / MARKER).write_text(
        json.dumps({"family": family, "seed": seed, "name": name, "note": "random weights built from a config: scores mean nothing"}, indent=2)
    )


def is_tiny(model_dir: str | Path) -> bool:
    return (Path(model_dir) / MARKER).exists()


BUILDERS: dict[str, Callable[..., Path]] = {"idefics2": make_idefics2, "llava": make_llava, "clip": make_clip, "llama": make_llama}


def make_tiny(family: str, out: str | Path, *, seed: int = 0, **options) -> Path:
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    return BUILDERS[family](Path(out), seed=seed, **options)
