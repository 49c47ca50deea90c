"""Tiny, deterministic checkpoints built from configs: the only weights these machines can have.

Each builder trains a real byte-level BPE tokenizer with the family's special tokens, builds the model
from the family's own config classes with a fixed seed, gives the processor the family's chat template
(``resources/chat_templates``), and saves everything with the library's own ``save_pretrained`` (or
open_clip's format), so loading goes through exactly the code a real checkpoint uses (``AutoProcessor`` /
``AutoModelForImageTextToText`` / ``open_clip.create_model_and_transforms``). Their scores mean nothing; a
``vitpro_tiny.json`` marker in the folder lets the CLI and UI say so.

Builders register themselves (``@builder("name")``) in the modules of this package.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

from .common import MARKER, is_tiny, write_marker
from .tokenizer import train_tokenizer

BUILDERS: dict[str, Callable[..., Path]] = {}
KINDS: dict[str, str] = {}  # family -> "vlm" | "clip" | "llm"

__all__ = ["BUILDERS", "FAMILIES", "KINDS", "MARKER", "builder", "is_tiny", "make_tiny", "train_tokenizer", "vlm_families", "write_marker"]


def builder(name: str, kind: str = "vlm"):
    def wrap(fn: Callable[..., Path]) -> Callable[..., Path]:
        if name in BUILDERS:
            raise ValueError(f"tiny builder {name!r} registered twice")
        BUILDERS[name] = fn
        KINDS[name] = kind
        return fn

    return wrap


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in ("common", "tokenizer"):
        importlib.import_module(f"{__name__}.{_module}")

FAMILIES = tuple(sorted(BUILDERS))


def vlm_families() -> list[str]:
    return sorted(name for name, kind in KINDS.items() if kind == "vlm")


def make_tiny(family: str, out: str | Path, *, seed: int = 0, **options) -> Path:
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    return BUILDERS[family](Path(out), seed=seed, **options)
