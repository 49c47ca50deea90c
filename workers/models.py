"""Models a worker process keeps loaded between units: loaded once per process, never per batch.

The cache is bounded: at most ``VITPRO_MODEL_CACHE`` models (default 2), the one used longest ago leaves
first; a unit that starts training gives all the scoring models back (:func:`release_scoring_models`),
since the run's own processes need that memory (on a GPU above all).
"""
from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from typing import Any

from config.settings import load_settings
from curation.single_sample import check_device
from db.storage.locations import Location
from db.storage.model_files import local_model

_cache: OrderedDict[tuple, Any] = OrderedDict()
_lock = threading.Lock()


def _limit() -> int:
    try:
        return max(1, int(os.environ.get("VITPRO_MODEL_CACHE", "2")))
    except ValueError:
        return 2


def _cached(key: tuple, load) -> Any:
    """The model under ``key``, loaded on first use; the least recently used ones beyond the limit are
    dropped first, so two models never grow into many (a grid of evaluation settings, several CLIPs)."""
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        while len(_cache) >= _limit():
            _cache.popitem(last=False)
            _free()
        _cache[key] = load()
        return _cache[key]


def _free() -> None:
    gc.collect()
    import sys

    torch = sys.modules.get("torch")  # only where a model was ever loaded
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _name(key: tuple) -> str:
    kind, model = key[0], key[1]
    if kind == "clip":
        model = getattr(model, "model", model)
    return f"{kind} {model}"


def release_scoring_models() -> list[str]:
    """Drop the cached VisAttnScore VLMs and CLIP models (and evaluation models); the names of those dropped."""
    with _lock:
        gone = [_name(k) for k in _cache]
        _cache.clear()
    if gone:
        _free()
    return gone


def cached_names() -> list[str]:
    with _lock:
        return [_name(k) for k in _cache]


def local(ref: str | None) -> str | None:
    """A model folder on this machine: an s3:// model is copied once into this worker's cache."""
    return local_model(ref, load_settings().home / "cache" / "models") if ref else ref


def vlm(model_dir: str, device: str, dtype: str, attention: str):
    from curation.vis_attn import install_attention_kernel
    from curation.vlm import LoadOptions, load_vlm

    def load():
        check_device(device)
        install_attention_kernel()
        return load_vlm(local(model_dir), LoadOptions(device=device, dtype=dtype), language_model_attention=attention)

    return _cached(("vlm", model_dir, device, dtype, attention), load)


def clip(config):
    def load():
        check_device(config.device)
        from dataclasses import replace

        from curation.clip_score import ClipScorer

        # an s3:// model becomes its local copy; otherwise the model is a reference open_clip reads (local-dir:, hf-hub:, a name)
        model = config.model if Location.of(config.model).is_local else f"local-dir:{local(config.model)}"
        return ClipScorer(replace(config, model=model))

    return _cached(("clip", config), load)


def eval_vlm(model_dir: str, adapter_dir: str | None, config):
    """A model for evaluation (base, or base + a trained adapter), kept while the process lives: the
    units of one evaluation (one per benchmark) and the cells of an ablation that share settings load it once."""
    import json

    from trainer.evaluate import load_for_eval

    key = ("eval", model_dir, adapter_dir, json.dumps(config.to_dict(), sort_keys=True))
    with _lock:
        # one evaluation model at a time: an ablation grid would otherwise keep every variant in memory
        stale = [k for k in _cache if k[0] == "eval" and k != key]
        for old in stale:
            del _cache[old]
    if stale:
        _free()
    return _cached(key, lambda: load_for_eval(local(model_dir), adapter_dir=local(adapter_dir), config=config))
