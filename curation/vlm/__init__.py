"""VLM adapters, one small class per family (``families/``), chosen from the checkpoint's ``config.json``.

The registry is filled by the family modules themselves (``@FAMILIES.add``): adding a family is one module in
``families/`` with its adapter, one chat template in ``resources/chat_templates/`` and one tiny-checkpoint
builder in ``curation/tiny_models/``; nothing else lists families.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from db.storage import objects
from db.storage.locations import Location
from db.storage.model_files import fetch_file

from .base import Encoded, LoadOptions, Sample, SampleError, VLMAdapter
from .registry import FAMILIES

__all__ = ["FAMILIES", "Encoded", "LoadOptions", "Sample", "SampleError", "UnsupportedModel", "VLMAdapter", "adapter_for", "check_model_folder",
           "family_for_hub_id", "family_names", "load_vlm", "model_type_of"]


class UnsupportedModel(ValueError):
    """A checkpoint folder of a family no adapter serves."""


def family_names() -> list[str]:
    return sorted(FAMILIES)


def model_type_of(model_dir: str | Path) -> str:
    path = Path(model_dir)
    config_file = path / "config.json"
    if config_file.exists():
        return json.loads(config_file.read_text()).get("model_type") or ""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_dir)).model_type


def adapter_for(model_dir: str | Path) -> type[VLMAdapter]:
    """The adapter class for a local checkpoint folder (or a hub id already in the local cache)."""
    model_type = model_type_of(model_dir)
    for adapter in FAMILIES.values():
        if model_type in adapter.model_types:
            return adapter
    known = ", ".join(f"{name} ({'/'.join(a.model_types)})" for name, a in sorted(FAMILIES.items()))
    raise UnsupportedModel(f"{model_dir}: no adapter for model type {model_type!r}; supported families (model types): {known}")


def check_model_folder(model_dir: str | Path) -> type[VLMAdapter]:
    """The adapter for a checkpoint folder, or a clear error: no such folder, no config.json in it, or a
    family no adapter serves (with the supported ones listed)."""
    if not str(model_dir).strip():
        raise ValueError("no model folder given: name a VLM checkpoint folder")
    if not Location.of(model_dir).is_local:
        # a model in the object store: its config.json alone tells the family; workers copy the rest
        with tempfile.TemporaryDirectory(prefix="vitpro-model-") as tmp:
            try:
                config = fetch_file(str(model_dir), "config.json", Path(tmp))
            except (objects.ObjectStoreError, ValueError) as exc:
                raise ValueError(f"{model_dir}: {exc}") from None
            if config is None:
                raise ValueError(f"{model_dir}: not a model folder (no config.json there)")
            return adapter_for(config.parent)
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise ValueError(f"{model_dir}: no such model folder")
    if not (path / "config.json").exists():
        raise ValueError(f"{model_dir}: not a model folder (no config.json); build a demo one with "
                         f"`vitpro models make-tiny --family qwen2_5_vl --out DIR` (families: {', '.join(family_names())})")
    return adapter_for(path)


def family_for_hub_id(model_id: str) -> type[VLMAdapter] | None:
    """The family a hub id names (``Qwen/Qwen2.5-VL-7B-Instruct`` -> qwen2_5_vl), by the longest spelling
    that matches; None when none does."""
    lowered = model_id.lower()
    best, best_len = None, 0
    for adapter in FAMILIES.values():
        for name in adapter.hub_names:
            if name in lowered and len(name) > best_len:
                best, best_len = adapter, len(name)
    return best


def load_vlm(model_dir: str | Path, options: LoadOptions = LoadOptions(), language_model_attention: str = "sdpa") -> VLMAdapter:
    """Load a checkpoint with its adapter. ``language_model_attention``: "sdpa" (plain), the VisAttnScore
    function's name (scoring), or "eager" (the reference; then every part is eager, so that
    ``output_attentions`` is honoured everywhere)."""
    from ..vis_attn import ATTN_NAME, install_attention_kernel

    if language_model_attention == ATTN_NAME:
        install_attention_kernel()
    cls = adapter_for(model_dir)
    attn = "eager" if language_model_attention == "eager" else cls.attention_per_part(model_dir, language_model_attention)
    return cls.load(model_dir, options, attn)
