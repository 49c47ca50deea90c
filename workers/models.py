"""Models a worker process keeps loaded between units: loaded once per process, never per batch."""
from __future__ import annotations

import threading
from typing import Any

from config.settings import load_settings
from curation.single_sample import check_device
from db import objects
from db.model_files import local_model

_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


def local(ref: str | None) -> str | None:
    """A model folder on this machine: an s3:// model is copied once into this worker's cache."""
    if not ref or not objects.is_remote(ref):
        return ref
    return local_model(ref, load_settings().home / "cache" / "models")


def vlm(model_dir: str, device: str, dtype: str, attention: str):
    from curation.vis_attn import register
    from curation.vlm import LoadOptions, load_vlm

    key = ("vlm", model_dir, device, dtype, attention)
    with _lock:
        if key not in _cache:
            check_device(device)
            register()
            _cache[key] = load_vlm(local(model_dir), LoadOptions(device=device, dtype=dtype), language_model_attention=attention)
        return _cache[key]


def clip(config):
    key = ("clip", config)
    with _lock:
        if key not in _cache:
            check_device(config.device)
            from dataclasses import replace

            from curation.clip_score import ClipScorer

            model = f"local-dir:{local(config.model)}" if objects.is_remote(config.model) else config.model
            _cache[key] = ClipScorer(replace(config, model=model))
        return _cache[key]


def eval_vlm(model_dir: str, adapter_dir: str | None, config):
    """A model for evaluation (base, or base + a trained adapter), kept while the process lives: the
    units of one evaluation (one per benchmark) and the cells of an ablation that share settings load it once."""
    import json

    from trainer.evaluate import load_for_eval

    key = ("eval", model_dir, adapter_dir, json.dumps(config.to_dict(), sort_keys=True))
    with _lock:
        if key not in _cache:
            # one evaluation model at a time: an ablation grid would otherwise keep every variant in memory
            for old in [k for k in _cache if k[0] == "eval"]:
                del _cache[old]
            _cache[key] = load_for_eval(local(model_dir), adapter_dir=local(adapter_dir), config=config)
        return _cache[key]
