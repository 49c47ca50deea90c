"""The two tiny models that are not VLMs: a causal LM (the local generation backend's test model) and an
open_clip model (CLIPScore)."""
from __future__ import annotations

import json
from pathlib import Path

from . import builder
from .common import save, text_config, write_marker
from .common import seed as set_seed
from .tokenizer import train_tokenizer


@builder("llama", kind="llm")
def make_llama(out: Path, *, seed: int = 0, layers: int = 2, heads: int = 4, kv_heads: int = 2, hidden: int = 64) -> Path:
    """A tiny causal LM (the local generation backend's test model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    config = LlamaConfig(**text_config(tokenizer, layers=layers, heads=heads, kv_heads=kv_heads, hidden=hidden))
    set_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return save(out, model, tokenizer, "llama", seed)


@builder("clip", kind="clip")
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
    set_seed(seed)
    model = open_clip.create_model(name, pretrained=None).eval()
    config_file.unlink()
    safetensors.torch.save_file(model.state_dict(), str(out / "open_clip_model.safetensors"))
    save_config_for_hf(model, out / "open_clip_config.json", model_config=model_cfg)
    write_marker(out, "clip", seed, name)
    return out
