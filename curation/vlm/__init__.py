"""VLM adapters, one per family, chosen from the checkpoint's ``config.json``."""
from __future__ import annotations

import json
from pathlib import Path

from .base import Encoded, LoadOptions, Sample, SampleError, VLMAdapter
from .idefics2 import Idefics2Adapter
from .llava import LlavaAdapter

ADAPTERS: tuple[type[VLMAdapter], ...] = (Idefics2Adapter, LlavaAdapter)

__all__ = ["ADAPTERS", "Encoded", "LoadOptions", "Sample", "SampleError", "VLMAdapter", "adapter_for", "load_vlm"]


def adapter_for(model_dir: str | Path) -> type[VLMAdapter]:
    """The adapter class for a local checkpoint folder (or a hub id already in the local cache)."""
    path = Path(model_dir)
    config_file = path / "config.json"
    if config_file.exists():
        model_type = json.loads(config_file.read_text()).get("model_type")
    else:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(str(model_dir)).model_type
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    known = ", ".join(t for a in ADAPTERS for t in a.model_types)
    raise ValueError(f"no adapter for model type {model_type!r} (supported: {known})")


def load_vlm(model_dir: str | Path, options: LoadOptions = LoadOptions(), language_model_attention: str = "sdpa") -> VLMAdapter:
    """Load a checkpoint with its adapter. ``language_model_attention``: "sdpa" (plain), the VisAttnScore
    function's name (scoring), or "eager" (the reference; then every part is eager, so that
    ``output_attentions`` is honoured everywhere)."""
    from ..vis_attn import ATTN_NAME, register

    if language_model_attention == ATTN_NAME:
        register()
    cls = adapter_for(model_dir)
    attn = "eager" if language_model_attention == "eager" else cls.attn_implementation(language_model_attention)
    return cls.load(model_dir, options, attn)
