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
              ocr_text: str | None, *, check: bool = False, gain: bool = True, blind_ocr: bool = True, judge: bool = True) -> SingleScore:
    """Raises ImageError / SampleError for a bad image or sample, OSError / ValueError / RuntimeError for a
    model that cannot be loaded or run. ``gain``: also the visual information gain (curation/visual_gain.py),
    with the prompt without the images in the payload, so anyone can redo it with two plain forwards."""
    from PIL import Image

    from .images import ImageLimits, inspect_image
    from .vis_attn import ATTN_NAME, check_segment, eager_reference, score_batch
    from .vlm import LoadOptions, Sample, load_vlm

    check_device(device)
    for path in image_paths:
        inspect_image(Path(path).read_bytes(), ImageLimits())
    images = [Image.open(p).convert("RGB") for p in image_paths]
    adapter = load_vlm(model, LoadOptions(device=device, dtype=dtype), language_model_attention=ATTN_NAME)
    sample = Sample(images, question, answer, ocr_text)
    tokens = None
    if judge:
        from .judge import JUDGE_QUESTION, judge_tokens

        tokens = judge_tokens(adapter)  # SampleError("judge_token") where the model cannot spell yes / no in one token
    encoded = adapter.encode(sample, follow_up=JUDGE_QUESTION if judge else None)
    check_segment(encoded, config.segment)
    blind = None
    if gain:
        from .visual_gain import check_same_tokens, encode_blind, gains

        blind = encode_blind(adapter, sample, ocr=blind_ocr)
        check_same_tokens(encoded, blind, config.segment)
    result = score_batch(adapter, [encoded], config, logprobs=gain, judge=tokens)[0]
    payload = {"model": str(model), "family": adapter.family, "chat_template": adapter.template_source, "segment": config.segment, **result.to_json()}
    if tokens is not None:
        from .judge import JUDGE_QUESTION, JUDGE_VERSION

        payload["judge"] = {"yes": result.judge_yes, "mass": result.judge_mass, "question": JUDGE_QUESTION, "version": JUDGE_VERSION,
                            "yes_ids": list(tokens.yes), "no_ids": list(tokens.no), "position": encoded.notes["follow_up_at"]}
        payload["judge_yes"] = result.judge_yes
    if blind is not None:
        found = gains(adapter, [result], [blind], config.segment)[0]
        for token, g, w, b in zip(payload["tokens"], found.gain, found.with_logp, found.blind_logp):
            token.update(gain=g, with_logp=w, blind_logp=b)
        payload.update(found.metrics())
        payload["word_gain"] = [{"text": t, "gain": g} for t, g in zip(found.words, found.word_gain)]
        payload["blind"] = {"input_ids": blind.input_ids, "positions": {"segment": blind.positions_of(config.segment)}, "ocr": blind_ocr}
        result.gain = found
    if check:
        reference = load_vlm(model, LoadOptions(device=device, dtype=dtype), language_model_attention="eager")
        eager = eager_reference(reference, [encoded])[0]
        payload["eager_max_abs_diff"] = max(abs(a - eager[p]) for a, p in zip(result.token_scores, result.positions["segment"]))
    return SingleScore(result, payload, adapter.family, adapter.template_source)
