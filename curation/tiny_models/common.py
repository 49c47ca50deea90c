"""What every tiny builder shares: the seed, the small language-model shape, saving with the library's own
``save_pretrained`` and the marker that says "demo model"."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from db.storage.locations import Location

MARKER = "vitpro_tiny.json"


def seed(value: int) -> None:
    import torch

    torch.manual_seed(value)


def text_config(tokenizer, *, layers: int, heads: int, kv_heads: int, hidden: int, **extra: Any) -> dict[str, Any]:
    """A small decoder: fewer KV heads than query heads (grouped KV, as Mistral-7B and Qwen have)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "rms_norm_eps": 1e-5,
        **extra,
    }


def token_ids(tokenizer, **names: str) -> dict[str, int]:
    return {key: tokenizer.convert_tokens_to_ids(token) for key, token in names.items()}


def save(out: Path, model, processor, family: str, seed_value: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_marker(out, family, seed_value, model.config.model_type)
    return out


def write_marker(out: Path, family: str, seed_value: int, name: str) -> None:
    (out / MARKER).write_text(
        json.dumps({"family": family, "seed": seed_value, "name": name, "note": "random weights built from a config: scores mean nothing"}, indent=2)
    )


def is_tiny(model_dir: str | Path) -> bool:
    """A model `vitpro models make-tiny` built (random weights: its scores are flagged as a demo's); the
    folder may be an s3:// prefix."""
    return Location.of(model_dir).join(MARKER).is_file()
