"""Visual information gain: how much the image raises the model's probability of each token of the text.

For a token t of the scored segment, teacher-forced:

    gain(t) = log p(t | image, context) - log p(t | context without the image)

The with-image log-probabilities come from VisAttnScore's own forward pass (its logits, kept only at the
rows that predict the segment's tokens: ``vis_attn.score_batch(..., logprobs=True)``), so the image is
encoded once. The without-image ("blind") pass renders the same chat messages with the images taken out,
through the checkpoint's own chat template, and runs the language model on text alone. The OCR section
stays in the blind prompt by default: what the photo's printed text says can be read from the OCR text
without seeing the photo, so it should not count as the image's contribution (``blind_ocr=False`` drops
it too, and the gain then also credits the image with its printed words).

Per segment (stored as metrics beside vis_attn): ``vis_gain`` (the mean gain), ``blind_logp`` (the mean
log-probability without the image: how guessable the text is from the text alone; high means a question
answerable without looking) and ``with_logp`` (the mean with the image).

A token's log-probability is read at the row before it (the row that predicts it), so a segment's first
token is predicted from the template's tokens before it; every token of the segment has a row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .vlm import positions
from .vlm.base import SampleError

GAIN_METRICS = ("vis_gain", "blind_logp", "with_logp")


@dataclass
class Blind:
    """A sample's text without its images, as the checkpoint's template renders it."""

    input_ids: list[int]
    segments: dict[str, list[int]]  # question / answer (/ ocr) token positions in input_ids

    def positions_of(self, segment: str) -> list[int]:
        if segment == "text":
            return self.segments.get("question", []) + self.segments.get("answer", [])
        return self.segments.get(segment, [])


def encode_blind(adapter, sample, *, ocr: bool = True) -> Blind:
    """``sample`` (curation.vlm.Sample) rendered with no image, through the same chat template and the same
    escaping of user text as :meth:`VLMAdapter.encode`; tokenized by the checkpoint's tokenizer (no image,
    so no processor is needed). Raises SampleError where the template cannot render a turn without images."""
    question, _ = adapter.safe_text((sample.question or "").strip())
    answer, _ = adapter.safe_text((sample.answer or "").strip())
    ocr_text = adapter.safe_text(sample.ocr.strip())[0] if (ocr and sample.ocr) else ""
    try:
        rendered = adapter._render(0, question, answer, ocr_text)
    except SampleError as exc:
        raise SampleError("blind_template", f"the chat template cannot render the turn without its images: {exc.message}") from None
    ids, offsets = adapter._tokenize(rendered.text)
    segments = {name: positions.tokens_overlapping(offsets, span) for name, span in rendered.spans.items()}
    if len(ids) > adapter.max_length:
        raise SampleError("too_long", f"the text without the images takes {len(ids)} tokens, over the model's {adapter.max_length}")
    return Blind(ids, segments)


def check_same_tokens(encoded, blind: Blind, segment: str) -> None:
    """The scored segment must be the same tokens in both prompts (else a token's two probabilities are not
    of the same token)."""
    from .vis_attn import _segment_positions

    with_ids = [encoded.input_ids[p] for p in _segment_positions(encoded, segment)]
    blind_ids = [blind.input_ids[p] for p in blind.positions_of(segment)]
    if with_ids != blind_ids:
        raise SampleError("blind_tokens", f"the {segment} is tokenized differently without the images "
                                          f"({len(with_ids)} tokens with them, {len(blind_ids)} without): no per-token gain")


def rows_before(batch_positions: list[list[int]]):
    """The logit rows that predict the given token positions (each position's previous row), shared by a
    batch: (sorted rows, per sample {position: index into the sorted rows})."""
    rows = sorted({p - 1 for ps in batch_positions for p in ps})
    index = {r: k for k, r in enumerate(rows)}
    return rows, [{p: index[p - 1] for p in ps} for ps in batch_positions]


def forward_logits(model, inputs: dict[str, Any], rows: list[int]):
    """The model's logits at ``rows`` only (``logits_to_keep`` with the rows' indices: the vocabulary-wide
    logits of every other position are never made); a model whose forward has no such argument gives every
    row and they are picked here. Returns (B, len(rows), vocab), float32."""
    import torch

    keep = torch.tensor(rows, dtype=torch.long, device=inputs["input_ids"].device)
    try:
        logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
        if logits.shape[1] != len(rows):  # an implementation that ignored it
            logits = logits[:, keep]
    except TypeError:
        logits = model(**inputs, use_cache=False).logits[:, keep]
    return logits.float()


def token_logprobs(logits, input_ids: list[int], where: dict[int, int], token_positions: list[int]) -> list[float]:
    """log p(token at p) for each p of ``token_positions``, from the row that predicts it (``where[p]``)."""
    import torch

    if not token_positions:
        return []
    rows = torch.tensor([where[p] for p in token_positions], dtype=torch.long, device=logits.device)
    ids = torch.tensor([input_ids[p] for p in token_positions], dtype=torch.long, device=logits.device)
    logp = torch.log_softmax(logits[rows], dim=-1)
    return [float(x) for x in logp.gather(-1, ids[:, None])[:, 0].cpu()]


def blind_logprobs(adapter, blinds: list[Blind], segment: str) -> list[list[float]]:
    """The segment tokens' log-probabilities without the images, for a batch of blind prompts in one
    forward (right-padded; text only: ids and mask)."""
    import torch

    pad = adapter.pad_token_id
    width = max(len(b.input_ids) for b in blinds)
    ids = torch.full((len(blinds), width), pad, dtype=torch.long)
    mask = torch.zeros((len(blinds), width), dtype=torch.long)
    for i, b in enumerate(blinds):
        ids[i, : len(b.input_ids)] = torch.tensor(b.input_ids)
        mask[i, : len(b.input_ids)] = 1
    device = adapter.options.device
    wanted = [b.positions_of(segment) for b in blinds]
    rows, where = rows_before(wanted)
    with torch.inference_mode():
        logits = forward_logits(adapter.model, {"input_ids": ids.to(device), "attention_mask": mask.to(device)}, rows)
    return [token_logprobs(logits[i], b.input_ids, where[i], wanted[i]) for i, b in enumerate(blinds)]


@dataclass
class Gain:
    """One sample's gain: per token of the segment (in order), per word, and the segment's means."""

    with_logp: list[float]
    blind_logp: list[float]
    gain: list[float]
    words: list[str]
    word_gain: list[float]
    blind: Blind

    def metrics(self) -> dict[str, float]:
        n = len(self.gain)
        return {"vis_gain": sum(self.gain) / n, "blind_logp": sum(self.blind_logp) / n, "with_logp": sum(self.with_logp) / n}


def gains(adapter, results, blinds: list[Blind], segment: str) -> list[Gain]:
    """The gain of each scored sample (``results``: vis_attn.score_batch's, with ``logprobs=True``)."""
    from .vis_attn import group_words

    blind = blind_logprobs(adapter, blinds, segment)
    out = []
    for res, b, without in zip(results, blinds, blind):
        if res.token_logp is None:
            raise ValueError("score_batch was run without logprobs=True: no with-image log-probabilities to compare")
        per_token = [w - o for w, o in zip(res.token_logp, without)]
        words, word_gain = group_words(res.tokens, per_token)
        out.append(Gain(res.token_logp, without, per_token, words, word_gain, b))
    return out
