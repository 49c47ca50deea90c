"""VisAttnScore of one sample here and now (no job, no store): load the VLM, encode the images with the
question and answer, score; optionally against the eager ``output_attentions`` reference."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .vis_attn import VisAttnConfig


def check_device(device: str) -> None:
    """A clear message instead of a CUDA stack trace on a machine without a GPU."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for, but this worker has no CUDA GPU; use --device cpu")


@dataclass(frozen=True)
class SingleScore:
    result: Any  # curation.vis_attn's per-sample result
    payload: dict[str, Any]  # what --json prints
    family: str
    template_source: str


def score_one(model: str, device: str, dtype: str, config: VisAttnConfig, image_paths: list[str], question: str, answer: str,
              ocr_text: str | None, *, check: bool = False) -> SingleScore:
    """Raises ImageError / SampleError for a bad image or sample, OSError / ValueError / RuntimeError for a
    model that cannot be loaded or run."""
    from PIL import Image

    from .images import ImageLimits, inspect_image
    from .vis_attn import ATTN_NAME, check_segment, eager_reference, score_batch
    from .vlm import LoadOptions, Sample, load_vlm

    check_device(device)
    for path in image_paths:
        inspect_image(Path(path).read_bytes(), ImageLimits())
    images = [Image.open(p).convert("RGB") for p in image_paths]
    adapter = load_vlm(model, LoadOptions(device=device, dtype=dtype), language_model_attention=ATTN_NAME)
    encoded = adapter.encode(Sample(images, question, answer, ocr_text))
    check_segment(encoded, config.segment)
    result = score_batch(adapter, [encoded], config)[0]
    payload = {"model": str(model), "family": adapter.family, "chat_template": adapter.template_source, "segment": config.segment, **result.to_json()}
    if check:
        reference = load_vlm(model, LoadOptions(device=device, dtype=dtype), language_model_attention="eager")
        eager = eager_reference(reference, [encoded])[0]
        payload["eager_max_abs_diff"] = max(abs(a - eager[p]) for a, p in zip(result.token_scores, result.positions["segment"]))
    return SingleScore(result, payload, adapter.family, adapter.template_source)
