"""Training settings as small dataclasses whose defaults are the VIT-Pro paper's training setup.

``TrainConfig()`` is VIT-Pro's run: LoRA r=256, alpha=32, dropout 0.1 on the attention layers of all three
parts, 2 epochs at lr 2e-4, batch 8. ``PRESETS["multi_image"]`` is the multi-image variant.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from config.registry import Registry

PARTS = ("vision", "connector", "language")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 256
    alpha: int = 32
    dropout: float = 0.1
    parts: tuple[str, ...] = PARTS  # the paper's Table 6 switches LoRA per part

    def __post_init__(self):
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise ValueError(f"LoRA parts must be among {', '.join(PARTS)}, not {', '.join(unknown) or '(none)'}")
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA needs r >= 1, alpha > 0 and 0 <= dropout < 1 (got r={self.r}, alpha={self.alpha}, dropout={self.dropout})")


@dataclass(frozen=True)
class ImageOptions:
    longest_edge: int | None = None  # None: the model's own (IDEFICS2: native aspect ratio up to 980)
    splitting: bool | None = None  # None: the checkpoint's setting; the paper splits into 4 crops + the whole
    min_images: int = 1
    max_images: int = 5


@dataclass(frozen=True)
class TrainConfig:
    lora: LoraSettings = field(default_factory=LoraSettings)
    images: ImageOptions = field(default_factory=ImageOptions)
    epochs: float = 2.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int | None = None  # optimiser steps; None: what the epochs give
    ocr: bool = True  # "OCR Tokens: ..." in the prompt, as the paper trains
    holdout: float = 0.1  # share of products kept out of training for evaluation
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"  # bfloat16 on a GPU
    load_4bit: bool = False  # bitsandbytes NF4 (QLoRA); CUDA only
    flash_attention: bool = False  # FlashAttention-2; CUDA with flash-attn installed only
    gradient_checkpointing: bool = False
    checkpoint_every: int = 50  # optimiser steps between checkpoints
    keep_checkpoints: int = 2
    max_length: int | None = None
    # Data parallelism: processes of one run (one per GPU; gloo processes on a CPU). A step's global
    # micro-batch is batch_size x nproc samples, split over the processes (trainer/plan.py).
    nproc: int = 1
    loader_workers: int = 2  # DataLoader processes per training process that read and encode examples
    group_by_length: bool = True  # micro-batches of similar length (less padding), still seeded

    def __post_init__(self):
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch size and gradient accumulation must be at least 1")
        if self.learning_rate <= 0 or self.epochs <= 0:
            raise ValueError("learning rate and epochs must be positive")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max steps must be at least 1")
        if not 0 <= self.holdout < 1:
            raise ValueError("holdout is a share of products: 0 <= holdout < 1")
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1 step")
        if self.nproc < 1 or self.loader_workers < 0:
            raise ValueError("nproc must be at least 1 and loader_workers 0 or more")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora"]["parts"] = list(self.lora.parts)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        lora_d = dict(d.pop("lora", {}) or {})
        if "parts" in lora_d:
            lora_d["parts"] = tuple(lora_d["parts"])
        images_d = dict(d.pop("images", {}) or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(lora=LoraSettings(**lora_d), images=ImageOptions(**images_d), **d)

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """Settings given on the command line over a preset; ``None`` means "keep the preset's"."""
        lora_keys = {"r", "alpha", "dropout", "parts"}
        image_keys = {"longest_edge", "splitting", "min_images", "max_images"}
        lora = {k: v for k, v in overrides.items() if k in lora_keys and v is not None}
        images = {k: v for k, v in overrides.items() if k in image_keys and v is not None}
        rest = {k: v for k, v in overrides.items() if k not in lora_keys | image_keys and v is not None}
        if "parts" in lora:
            lora["parts"] = tuple(lora["parts"])
        return replace(self, lora=replace(self.lora, **lora), images=replace(self.images, **images), **rest)


PRESETS: Registry[TrainConfig] = Registry("preset")
PRESETS.add(TrainConfig(), "paper")
# 2 to 5 images per sample, numbered [1], [2], ... with ### sections (the adapters' prompt layout)
PRESETS.add(TrainConfig(
    lora=LoraSettings(r=8, alpha=16, dropout=0.1), images=ImageOptions(min_images=2, max_images=5),
    learning_rate=1e-5, batch_size=16, grad_accum=8,
), "multi_image")


def preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None
