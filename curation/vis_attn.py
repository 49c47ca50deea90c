"""VisAttnScore: how much each text token attends to the image inside a VLM (the VIT-Pro paper's grounding score).

For text token t, A(t) = 1/(L·H·V) · Σ_l Σ_h Σ_v a[l,h,t,v]: the attention weight of t on image token v,
averaged over the V image tokens, the H heads and the L layers of the language model. A segment's score
is the mean of A(t) over its tokens. The image is given; question and answer are teacher-forced in one
forward pass.

How it is computed: ``output_attentions=True`` needs eager attention and keeps an L·H·T·T tensor. Instead
the language model runs an attention function registered with transformers' ``AttentionInterface`` (and a
mask function of the same name with ``AttentionMaskInterface``, or the causal mask is dropped). It
returns SDPA's output unchanged, and on the side computes, in chunks of query rows, only the block it
needs: the scored text rows against the image columns, normalised over *all* keys (a log-sum-exp over the
full row), averaged over heads, summed over layers. :func:`eager_reference` computes the same numbers from
eager ``output_attentions``; the tests hold the two to 1e-5.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from config.fields import FieldError, param

ATTN_NAME = "vitpro_visattn"
_active: contextvars.ContextVar["_Collector | None"] = contextvars.ContextVar("vitpro_visattn", default=None)
_installed = False
last_masks_seen: set[str] = set()  # mask forms the last score_batch met (for tests)
last_paths_seen: set[str] = set()  # fused kernel or full rows


SEGMENTS = ("answer", "question", "text")


@dataclass(frozen=True)
class VisAttnConfig:
    # The defaults are what every front end computes unless told otherwise: the paper's score alone. The
    # sink-free and distance-corrected variants are extra series a user asks for.
    segment: str = param("answer", choices=SEGMENTS, help="Which text the segment score averages over: the answer, the question, or both (text).")
    exclude_sinks: bool = param(False, help="Also report the score without 'attention sink' image tokens (vis_attn_nosink).",
                                label="Also without attention sinks")
    sink_factor: float = param(5.0, min=1.0, help="A sink draws more than this many times the median image token's attention.")
    max_sink_share: float = param(0.1, min=0.0, max=1.0, help="Never call more than this share of the image tokens sinks.")
    distance_correction: bool = param(False, help="Also report the score corrected for distance from the image (vis_attn_dist).",
                                      label="Also distance-corrected")
    chunk_bytes: int = param(16 * 1024 * 1024, min=1, help="Memory for one chunk of scored-row logits per layer.")

    def __post_init__(self):
        if self.segment not in SEGMENTS:
            raise FieldError("segment", "segment must be answer, question or text")


def install_attention_kernel() -> None:
    """Install the scoring attention function in transformers' attention registries, so that
    ``attn_implementation={"text_config": "vitpro_visattn", ...}`` loads a model onto it (idempotent)."""
    global _installed
    if _installed:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, _attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    _installed = True


def _attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    collector = _active.get()
    if collector is not None and kwargs.get("softcap") is not None:
        # logit soft-capping (Gemma 2) changes every weight; neither path here reproduces it
        raise RuntimeError("VisAttnScore does not support attention logit soft-capping (attn_logit_softcapping); this model uses it")
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    if collector is not None and collector.fused and dropout == 0.0:
        fused = collector.fused_attention(query, key, value, attention_mask, scaling)
        if fused is not None:
            return fused, None
    output = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if collector is not None:
        collector.observe(query, key, attention_mask, scaling)
    return output


class _Collector:
    """Accumulates Σ_l mean_h a[l,h,t,v] for the scored rows t and the image columns v of each sample.

    Fast path: one fused attention kernel gives the layer's output *and* each row's log-sum-exp (the
    softmax normaliser over all keys); then only the rows x image-columns logits are computed, and
    a = exp(logit - lse). Fallback (a kernel that is not available): full rows of logits in chunks.
    """

    def __init__(self, rows, image_cols, image_valid, chunk_bytes: int, fused: bool = True):
        import torch

        self.rows = rows  # (R,) positions scored, shared by the batch
        self.image_cols = image_cols  # (B, Vmax) key positions of image tokens (padded)
        self.image_valid = image_valid  # (B, Vmax)
        self.block = torch.zeros((image_cols.shape[0], rows.shape[0], image_cols.shape[1]), dtype=torch.float32, device=rows.device)
        self.layers = 0
        self.chunk_bytes = chunk_bytes
        self.fused = fused
        self.masks_seen: set[str] = set()  # which mask forms arrived (the tests cover each)
        self.paths_seen: set[str] = set()  # fused / full-rows

    # ---- fast path -------------------------------------------------------------------------------------
    def fused_attention(self, query, key, value, attention_mask, scaling: float):
        """The attention output as SDPA computes it, plus the image block from the kernel's log-sum-exp.
        Returns None (and switches to the fallback for good) where no such kernel is available."""
        import torch
        from transformers.integrations.sdpa_attention import repeat_kv

        heads = query.shape[1]
        keys = repeat_kv(key, heads // key.shape[1])
        values = repeat_kv(value, heads // value.shape[1])
        bias, is_causal = self._additive_mask(attention_mask, query)
        try:
            if query.device.type == "cpu":
                out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    query, keys, values, 0.0, is_causal, attn_mask=bias, scale=scaling
                )
            else:  # CUDA: the memory-efficient kernel returns the log-sum-exp when asked (not run here: no GPU)
                if bias is not None and bias.shape[-1] % 16:
                    # the kernel wants the bias rows 16-aligned in memory: pad, then view the real width
                    width = bias.shape[-1]
                    bias = torch.nn.functional.pad(bias, (0, 16 - width % 16))[..., :width]
                out, lse, _, _ = torch.ops.aten._scaled_dot_product_efficient_attention(
                    query, keys, values, bias, True, 0.0, is_causal, scale=scaling
                )
        except (RuntimeError, NotImplementedError, AttributeError):
            self.fused = False
            return None
        self.layers += 1
        self.paths_seen.add("fused")
        self.masks_seen.add("none" if attention_mask is None else str(attention_mask.dtype).replace("torch.", ""))
        self._image_block(query, keys, lse[:, :, : query.shape[2]].float(), attention_mask, scaling)
        return out.transpose(1, 2).contiguous()

    @staticmethod
    def _additive_mask(attention_mask, query):
        """The kernels take an additive mask of the query's dtype. A large finite negative, not -inf:
        a padding row that masks everything must stay finite (its values would reach real tokens as
        0 x NaN otherwise)."""
        import torch

        if attention_mask is None:
            return None, True
        if attention_mask.dtype == torch.bool:
            zero = torch.zeros((), dtype=query.dtype, device=query.device)
            low = torch.tensor(torch.finfo(query.dtype).min, dtype=query.dtype, device=query.device)
            return torch.where(attention_mask, zero, low), False
        return attention_mask.to(query.dtype), False

    def _image_block(self, query, keys, lse, attention_mask, scaling: float) -> None:
        import torch

        batch, heads, _, dim = query.shape
        rows, cols = self.rows, self.image_cols
        # image keys per sample: (B, H, V, d)
        image_keys = keys.gather(2, cols[:, None, :, None].expand(batch, heads, cols.shape[1], dim)).float()
        chunk = max(1, min(rows.shape[0], self.chunk_bytes // max(1, batch * heads * cols.shape[1] * 4)))
        for start in range(0, rows.shape[0], chunk):
            r = rows[start : start + chunk]
            logits = torch.matmul(query[:, :, r, :].float(), image_keys.transpose(-1, -2)).mul_(scaling)  # (B,H,c,V)
            allowed = self._allowed(attention_mask, r, cols)  # (B,1,c,V)
            if allowed is not None:
                logits.masked_fill_(~allowed, float("-inf"))
            elif attention_mask is not None:  # a float mask: add its values at the image columns
                picked = attention_mask[:, :, r, :]
                logits.add_(picked.gather(-1, cols[:, None, None, :].expand(picked.shape[0], picked.shape[1], r.shape[0], cols.shape[1])).float())
            # in place: this block is the only memory the scoring adds
            probs = logits.sub_(lse[:, :, r, None]).exp_().mul_(self.image_valid[:, None, None, :])
            self.block[:, start : start + r.shape[0]] += probs.mean(dim=1)

    def _allowed(self, attention_mask, r, cols):
        import torch

        if attention_mask is None:  # causal: an image token before the row is visible
            if int(r.min()) > int(cols.max()):
                return None  # every image token comes before every row here: nothing to mask
            return (cols[:, None, None, :] <= r[None, None, :, None])
        if attention_mask.dtype == torch.bool:
            picked = attention_mask[:, :, r, :]  # (B,1,c,K)
            return picked.gather(-1, cols[:, None, None, :].expand(picked.shape[0], 1, r.shape[0], cols.shape[1]))
        return None

    # ---- fallback ----------------------------------------------------------------------------------------
    def observe(self, query, key, attention_mask, scaling: float) -> None:
        import torch
        from transformers.integrations.sdpa_attention import repeat_kv

        self.layers += 1
        self.paths_seen.add("full-rows")
        batch, heads, q_len, _ = query.shape
        keys = repeat_kv(key, heads // key.shape[1]).float()  # grouped KV heads: one key per query head
        k_len = keys.shape[2]
        rows = self.rows
        chunk = max(1, min(rows.shape[0], self.chunk_bytes // max(1, batch * heads * k_len * 4)))
        cols = self.image_cols[:, None, None, :]
        valid = self.image_valid[:, None, None, :]
        key_pos = torch.arange(k_len, device=keys.device)
        self.masks_seen.add("none" if attention_mask is None else str(attention_mask.dtype).replace("torch.", ""))
        for start in range(0, rows.shape[0], chunk):
            r = rows[start : start + chunk]
            logits = torch.matmul(query[:, :, r, :].float(), keys.transpose(-1, -2)) * scaling  # (B,H,c,K)
            if attention_mask is None:
                # SDPA's mask function may leave causality to is_causal: apply it by hand
                allowed = (key_pos[None, :] <= r[:, None])[None, None]
                logits = logits.masked_fill(~allowed, float("-inf"))
            elif attention_mask.dtype == torch.bool:
                logits = logits.masked_fill(~attention_mask[:, :, r, :k_len], float("-inf"))
            else:
                logits = logits + attention_mask[:, :, r, :k_len].float()
            lse = torch.logsumexp(logits, dim=-1, keepdim=True)
            lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))  # fully masked (padding) rows
            image_logits = logits.gather(-1, cols.expand(batch, heads, r.shape[0], cols.shape[-1]))
            probs = torch.exp(image_logits - lse) * valid
            self.block[:, start : start + r.shape[0]] += probs.mean(dim=1)


@dataclass
class SampleScores:
    """Per-sample result: the eq.-2 score, the image mass, per-token and per-word values."""

    segment_score: float
    image_mass: float
    tokens: list[str]  # the segment's tokens
    token_ids: list[int]
    token_scores: list[float]  # A(t)
    token_mass: list[float]  # Σ_v instead of the mean
    words: list[str]
    word_scores: list[float]
    positions: dict[str, list[int]]  # segment, image, question, answer token positions
    input_ids: list[int]
    n_image_tokens: int
    truncated: bool = False
    extra: dict[str, float] = field(default_factory=dict)  # scores with the options (sinks out, distance)
    # the question's per-token values when the answer is the scored segment: its rows are computed anyway
    # (every text row is), so the app can colour the question too at no extra cost
    question: dict[str, Any] | None = None
    # log p(t | image, context) per token of the segment, from this forward's logits (score_batch(logprobs=True))
    token_logp: list[float] | None = None
    gain: Any = None  # curation.visual_gain.Gain, where the single-sample form computed it
    # the VLM judge's verdict (curation/judge.py), from the same pass, where the sample carried its turn
    judge_yes: float | None = None
    judge_mass: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "segment_score": self.segment_score,
            "image_mass": self.image_mass,
            "tokens": [{"text": t, "id": i, "score": s, "mass": m} for t, i, s, m in zip(self.tokens, self.token_ids, self.token_scores, self.token_mass)],
            "words": [{"text": w, "score": s} for w, s in zip(self.words, self.word_scores)],
            "n_image_tokens": self.n_image_tokens,
            "truncated": self.truncated,
            "options": self.extra,
            "input_ids": self.input_ids,
            "positions": self.positions,
        }


def _rows_and_columns(batch, device):
    """The rows to score (the question and answer positions of every sample in the batch: nothing else is
    read, so the template, the OCR text and the image rows cost nothing) and each sample's image columns."""
    import torch

    needed = sorted({p for e in batch for segment in ("question", "answer") for p in e.segments[segment]})
    rows = torch.tensor(needed, dtype=torch.long, device=device)
    vmax = max(len(e.image_positions) for e in batch)
    cols = torch.zeros((len(batch), vmax), dtype=torch.long, device=device)
    valid = torch.zeros((len(batch), vmax), dtype=torch.float32, device=device)
    for i, e in enumerate(batch):
        cols[i, : len(e.image_positions)] = torch.tensor(e.image_positions, device=device)
        valid[i, : len(e.image_positions)] = 1.0
    return rows, cols, valid


def score_batch(adapter, batch, config: VisAttnConfig = VisAttnConfig(), *, fused: bool = True, logprobs: bool = False,
                judge=None) -> list[SampleScores]:
    """Score encoded samples (``adapter.encode``) in one forward pass. The adapter's model must have been
    loaded with its language model on ``ATTN_NAME`` (``load_vlm(..., language_model_attention=ATTN_NAME)``).
    ``logprobs``: also each segment token's log-probability given the image, from the same pass's logits
    (kept at the rows that predict the segment only): what visual information gain compares
    (curation/visual_gain.py). ``judge`` (curation.judge.JudgeTokens): the samples were encoded with the
    judge's turn after the answer (``adapter.encode(sample, follow_up=judge.JUDGE_QUESTION)``); its verdict
    is read from the same pass's logits at each sample's last position."""
    import torch

    from .judge import verdict
    from .visual_gain import forward_logits, token_logprobs

    install_attention_kernel()
    inputs = adapter.collate(batch)
    device = inputs["input_ids"].device
    rows, cols, valid = _rows_and_columns(batch, device)
    collector = _Collector(rows, cols, valid, config.chunk_bytes, fused=fused)
    wanted = [_segment_positions(e, config.segment) for e in batch]
    judged = [e.notes.get("follow_up_at") for e in batch] if judge is not None else [None] * len(batch)
    if judge is not None and None in judged:
        raise ValueError("score_batch(judge=...) needs every sample encoded with the judge's turn (encode(sample, follow_up=...))")
    # the logit rows kept: each segment token's previous row (its log-probability), each judge position
    logit_rows = sorted(({p - 1 for ps in wanted for p in ps} if logprobs else set()) | {j for j in judged if j is not None})
    index = {r: k for k, r in enumerate(logit_rows)}
    where = [{p: index[p - 1] for p in ps} for ps in wanted] if logprobs else []
    token = _active.set(collector)
    try:
        with torch.inference_mode():
            if logit_rows:
                logits = forward_logits(adapter.model, inputs, logit_rows)
            else:
                adapter.model(**inputs, use_cache=False)
    finally:
        _active.reset(token)
    if collector.layers != adapter.num_layers:
        raise RuntimeError(
            f"the scoring attention ran in {collector.layers} layers, the language model has {adapter.num_layers}: "
            f"load the model with load_vlm(..., language_model_attention={ATTN_NAME!r})"
        )
    global last_masks_seen, last_paths_seen
    last_masks_seen, last_paths_seen = set(collector.masks_seen), set(collector.paths_seen)
    block = (collector.block / collector.layers).cpu()
    results = [_finish(adapter, e, block[i], rows.cpu(), config) for i, e in enumerate(batch)]
    for i, (e, res) in enumerate(zip(batch, results)):
        if logprobs:
            res.token_logp = token_logprobs(logits[i], e.input_ids, where[i], wanted[i])
        if judge is not None:
            res.judge_yes, res.judge_mass = verdict(logits[i, index[judged[i]]], judge)
    return results


def eager_reference(adapter, batch) -> list[list[float]]:
    """A(t) for every position after the first image token, from eager ``output_attentions``; the
    adapter's model must have been loaded with eager attention in every part
    (``load_vlm(..., language_model_attention="eager")``)."""
    import torch

    inputs = adapter.collate(batch)
    with torch.inference_mode():
        out = adapter.model(**inputs, output_attentions=True, use_cache=False)
    attentions = [a for a in out.attentions if a is not None]
    if len(attentions) != adapter.num_layers:
        raise RuntimeError(f"expected {adapter.num_layers} attention maps, got {len(attentions)}")
    stacked = torch.stack([a.float() for a in attentions]).mean(dim=(0, 2))  # (B, T, T): mean over layers, heads
    result = []
    for i, e in enumerate(batch):
        cols = torch.tensor(e.image_positions)
        result.append(stacked[i][:, cols].mean(dim=-1).cpu().tolist())
    return result


def _finish(adapter, encoded, block, rows, config: VisAttnConfig) -> SampleScores:
    import torch

    n_img = len(encoded.image_positions)
    block = block[:, :n_img]  # (R, V) for this sample: Σ_l mean_h a / L
    row_index = {int(p): k for k, p in enumerate(rows.tolist())}
    positions = _segment_positions(encoded, config.segment)
    idx = torch.tensor([row_index[p] for p in positions], dtype=torch.long)
    per_token = block[idx]
    token_scores = per_token.mean(dim=-1)
    token_mass = per_token.sum(dim=-1)
    ids = [encoded.input_ids[p] for p in positions]
    texts = adapter.token_texts(ids)
    words, word_scores = group_words(texts, token_scores.tolist())
    question = None
    q_positions = [p for p in encoded.segments.get("question", []) if p in row_index] if config.segment == "answer" else []
    if q_positions:
        q_block = block[torch.tensor([row_index[p] for p in q_positions], dtype=torch.long)]
        q_scores, q_mass = q_block.mean(dim=-1), q_block.sum(dim=-1)
        q_ids = [encoded.input_ids[p] for p in q_positions]
        q_texts = adapter.token_texts(q_ids)
        q_words, q_word_scores = group_words(q_texts, q_scores.tolist())
        question = {"tokens": q_texts, "token_ids": q_ids, "scores": [float(x) for x in q_scores], "mass": [float(x) for x in q_mass],
                    "words": q_words, "word_scores": q_word_scores, "positions": {"segment": q_positions}}
    extra: dict[str, float] = {}
    text_rows = [row_index[p] for p in encoded.segments["question"] + encoded.segments["answer"] if p in row_index]
    if config.exclude_sinks:
        extra["vis_attn_nosink"] = float(_without_sinks(block, text_rows, idx, config))
    if config.distance_correction:
        extra["vis_attn_dist"] = float(_distance_corrected(block, rows, text_rows, idx, max(encoded.image_positions)))
    return SampleScores(
        segment_score=float(token_scores.mean()),
        image_mass=float(token_mass.mean()),
        tokens=texts,
        token_ids=ids,
        token_scores=[float(x) for x in token_scores],
        token_mass=[float(x) for x in token_mass],
        words=words,
        word_scores=word_scores,
        positions={"segment": positions, "image": list(encoded.image_positions), **encoded.segments},
        input_ids=list(encoded.input_ids),
        n_image_tokens=n_img,
        truncated=encoded.truncated,
        extra=extra,
        question=question,
    )


def _segment_positions(encoded, segment: str) -> list[int]:
    if segment == "text":
        return encoded.segments["question"] + encoded.segments["answer"]
    return encoded.segments[segment]


def check_segment(encoded, segment: str) -> None:
    """Before batching: a sample whose scored segment is empty (no question, or one truncation cut
    away) is refused on its own rather than failing its batch."""
    from .vlm.base import SampleError

    if not _segment_positions(encoded, segment):
        raise SampleError("empty_segment", f"the {segment} segment has no tokens (no question given, or it was cut to fit)")


def _without_sinks(block, text_rows, idx, config: VisAttnConfig):
    """Leave out image tokens that draw far more attention than the rest from all the text ("attention
    sinks"): their share says little about this text."""
    import torch

    column = block[text_rows].mean(dim=0)  # how much each image token draws, over all text of the sample
    limit = max(1, int(config.max_sink_share * column.numel()))
    median = column.median()
    candidates = torch.argsort(column, descending=True)[:limit]
    sinks = [int(c) for c in candidates if column[c] > config.sink_factor * median]
    keep = torch.ones(column.numel(), dtype=torch.bool)
    keep[sinks] = False
    return block[idx][:, keep].mean(dim=-1).mean()


def _distance_corrected(block, rows, text_rows, idx, last_image: int):
    """Attention to the image fades with distance from it. Fit log A = a + b·log d over the sample's text
    tokens (d: distance to the last image token) and divide the trend out, at the median distance."""
    import torch

    scores = block.mean(dim=-1)
    distance = (rows.float() - last_image).clamp(min=1)
    x = torch.log(distance[text_rows])
    y = torch.log(scores[text_rows].clamp(min=1e-12))
    if len(text_rows) < 3 or float(x.std()) == 0.0:
        return scores[idx].mean()
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    reference = float(distance[text_rows].median())
    corrected = scores[idx] * (distance[idx] / reference) ** (-slope)
    return corrected.mean()


def group_words(token_texts: list[str], scores: list[float]) -> tuple[list[str], list[float]]:
    """Join sub-word pieces into words (a piece starting with a space starts a word; a piece that is
    only space joins the next word); a word's score is the mean of its pieces'."""
    words: list[str] = []
    groups: list[list[float]] = []
    pending_space = False
    for text, score in zip(token_texts, scores):
        if not text.strip():  # a piece that is only space: the next piece starts a word
            pending_space = True
            continue
        starts = pending_space or text[:1].isspace() or not words or _is_punct(text) or _is_punct(words[-1][-1:])
        if starts:
            words.append(text.strip())
            groups.append([score])
        else:
            words[-1] += text.strip()
            groups[-1].append(score)
        pending_space = False
    return words, [sum(g) / len(g) for g in groups]


def _is_punct(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and all(not ch.isalnum() for ch in stripped)

