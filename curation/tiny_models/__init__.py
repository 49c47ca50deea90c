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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from config.registry import Registry

from .common import MARKER, is_tiny, write_marker
from .tokenizer import train_tokenizer


@dataclass(frozen=True)
class TinyBuilder:
    build: Callable[..., Path]  # (out folder, seed=, **options) -> the checkpoint folder
    kind: str  # "vlm" | "clip" | "llm"


# filled by the package's modules (every one but the shared helpers), imported on the first read
BUILDERS: Registry[TinyBuilder] = Registry("tiny builder", package=__name__, skip=("common", "tokenizer"))

__all__ = ["BUILDERS", "FAMILIES", "MARKER", "TinyBuilder", "builder", "is_tiny", "make_tiny", "train_tokenizer", "vlm_families", "write_marker"]


def builder(name: str, kind: str = "vlm"):
    """Decorator adding a builder function under the family ``name``."""

    def wrap(fn: Callable[..., Path]) -> Callable[..., Path]:
        BUILDERS.add(TinyBuilder(fn, kind), name)
        return fn

    return wrap


FAMILIES = tuple(sorted(BUILDERS))


def vlm_families() -> list[str]:
    return sorted(name for name, b in BUILDERS.items() if b.kind == "vlm")


def make_tiny(family: str, out: str | Path, *, seed: int = 0, **options) -> Path:
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    return BUILDERS[family].build(Path(out), seed=seed, **options)
