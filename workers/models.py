"""Models a worker process keeps loaded between units: loaded once per process, never per batch."""
from __future__ import annotations

import threading
from typing import Any

_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


def check_device(device: str) -> None:
    """A clear message instead of a CUDA stack trace on a machine without a GPU."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for, but this worker has no CUDA GPU; use --device cpu")


def vlm(model_dir: str, device: str, dtype: str, attention: str):
    from curation.vlm import LoadOptions, load_vlm
    from curation.vis_attn import register

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
