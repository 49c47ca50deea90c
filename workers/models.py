"""Models a worker process keeps loaded between units: loaded once per process, never per batch."""
from __future__ import annotations

import threading
from typing import Any

from curation.single_sample import check_device

_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


def vlm(model_dir: str, device: str, dtype: str, attention: str):
    from curation.vis_attn import register
    from curation.vlm import LoadOptions, load_vlm

    key = ("vlm", model_dir, device, dtype, attention)
    with _lock:
        if key not in _cache:
            check_device(device)
            register()
            _cache[key] = load_vlm(model_dir, LoadOptions(device=device, dtype=dtype), language_model_attention=attention)
        return _cache[key]


def clip(config):
    key = ("clip", config)
    with _lock:
        if key not in _cache:
            check_device(config.device)
            from curation.clip_score import ClipScorer

            _cache[key] = ClipScorer(config)
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
            _cache[key] = load_for_eval(model_dir, adapter_dir=adapter_dir, config=config)
        return _cache[key]
