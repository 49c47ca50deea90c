"""CLIPScore with open_clip: the coarse image-text filter before generation.

CLIPScore = 100 · max(cos(E_image, E_text), 0), the cosine of the two embeddings as a percentage, as
the paper shows it (54%, 52%, ...); the raw cosine is kept too. Images are decoded and preprocessed on
a thread pool while the model runs (PIL and the torchvision transforms release the GIL), texts are
tokenized in one call per batch, and each batch is one forward per tower: the batched pipeline the
benchmark compares with a one-pair-at-a-time loop.

Models: any open_clip name (``ViT-B-32`` with ``--pretrained openai`` where weights can be reached), or a
local folder in open_clip's format (``local-dir:/path`` or just the path; what ``vitpro models
make-tiny --family clip`` writes).
"""
from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from config.fields import param
from db.storage.objects import ObjectStoreError

REDUCTIONS = ("mean", "max", "min")


@dataclass(frozen=True)
class ClipConfig:
    model: str = param("ViT-B-32", help="open_clip model name, or a local folder (or s3:// prefix) in open_clip's format.")
    pretrained: str | None = param("openai", help="open_clip pretrained tag (ignored for folders).", label="Pretrained tag")
    device: str = param("cpu", help="cpu, cuda or cuda:N.")
    precision: str = param("fp32", choices=("fp32", "bf16", "fp16"), help="open_clip's precision names.")
    batch_size: int = param(64, min=1, help="Image-text pairs in one forward pass.")
    decode_threads: int = param(4, min=1, help="Threads decoding images ahead of the model.")
    reduce: str = param("mean", choices=REDUCTIONS, help="How an item's several images become its score (max and min are stored too).")

    def __post_init__(self):
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}")


@dataclass
class PairScore:
    score: float | None  # 100 * max(cos, 0); None when the image could not be read
    cosine: float | None
    truncated: bool = False
    error: str | None = None
    # the image's L2-normalised embedding (float32): stored, so duplicates by meaning, clusters and the map need no model
    embedding: Any = None  # numpy float32 vector


@dataclass
class Timing:
    total: float = 0.0
    forward: float = 0.0
    pairs: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def model_ref(name: str) -> str:
    """A local folder becomes open_clip's ``local-dir:`` reference."""
    if name.startswith(("local-dir:", "hf-hub:")):
        return name
    if Path(name).expanduser().is_dir():
        return f"local-dir:{Path(name).expanduser().resolve()}"
    return name


class ClipScorer:
    """One model per process; score lists of (image bytes, text) pairs in batches."""

    def __init__(self, config: ClipConfig = ClipConfig()):
        import open_clip
        import torch

        self.config = config
        ref = model_ref(config.model)
        local = ref.startswith(("local-dir:", "hf-hub:"))
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            ref, pretrained=None if local else config.pretrained, device=config.device, precision=config.precision
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(ref)
        self.context_length = int(getattr(self.tokenizer, "context_length", 77))
        self.model_id = ref if local else f"{ref}:{config.pretrained or 'random'}"
        self._torch = torch
        self._dtype = next(self.model.parameters()).dtype

    # ---- pieces ----------------------------------------------------------------------------------------
    def _load(self, data: bytes):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return self.preprocess(im.convert("RGB"))

    def text_is_truncated(self, text: str) -> bool:
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:
            return False
        try:
            n = len(encode(text))
        except TypeError:
            return False
        return n + 2 > self.context_length  # start and end tokens take two places

    def _embed(self, pixels, texts: list[str], *, batched: bool = True):
        """Cosine of each image with its text. Batched: each distinct text is encoded once (an item's
        images share its text) and only up to the batch's longest text (see :meth:`_encode_texts`)."""
        torch = self._torch
        with torch.inference_mode():
            image = self.model.encode_image(pixels.to(self.config.device, dtype=self._dtype))
            if batched:
                unique = list(dict.fromkeys(texts))
                encoded = self._encode_texts(self.tokenizer(unique).to(self.config.device))
                text = encoded[torch.tensor([unique.index(t) for t in texts], device=encoded.device)]
            else:
                text = self.model.encode_text(self.tokenizer(texts).to(self.config.device))
            image = torch.nn.functional.normalize(image.float(), dim=-1)
            text = torch.nn.functional.normalize(text.float(), dim=-1)
            self._last_images = image.cpu().numpy().astype("float32")  # the batch's image embeddings, for score_pairs
            return (image * text).sum(dim=-1).cpu().tolist()

    def _encode_texts(self, tokens):
        """CLIP's text tower is causal and pools at the end-of-text token, so positions after the longest
        text in the batch change nothing: run only up to there (most product titles fill a fifth of the
        77-token context). Other towers (non-causal, other pooling) get the library's encode_text."""
        import open_clip
        from open_clip.transformer import text_global_pool

        m = self.model
        causal = isinstance(m, open_clip.model.CLIP) and getattr(m, "attn_mask", None) is not None and m.text_pool_type == "argmax"
        if not causal:
            return m.encode_text(tokens)
        # the end-of-text token has the highest id (that is what CLIP pools on); 0 is padding but also "!"
        length = int(tokens.argmax(dim=1).max()) + 1
        tokens = tokens[:, :length]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = text_global_pool(m.ln_final(x), tokens, m.text_pool_type)
        if m.text_projection is not None:
            x = m.text_projection(x) if isinstance(m.text_projection, self._torch.nn.Linear) else x @ m.text_projection
        return x

    # ---- batched pipeline --------------------------------------------------------------------------------
    def score_pairs(self, pairs: Sequence[tuple[Callable[[], bytes] | bytes, str]], timing: Timing | None = None) -> list[PairScore]:
        """Score (image, text) pairs; an image is bytes or a function returning them (read lazily, on the
        decode threads). A pair whose image cannot be read gets an error, the rest go on."""
        torch = self._torch
        start = time.perf_counter()
        results: list[PairScore | None] = [None] * len(pairs)
        size = max(1, self.config.batch_size)

        def decode(i: int):
            source = pairs[i][0]
            try:
                return i, self._load(source() if callable(source) else source), None
            except ObjectStoreError:
                raise  # the store, not the image: the unit is retried
            except Exception as exc:  # one bad image never stops the batch
                return i, None, f"{exc.__class__.__name__}: {exc}"[:300]

        with ThreadPoolExecutor(max_workers=max(1, self.config.decode_threads)) as pool:
            # decoding of the next batch overlaps the forward pass of this one
            batches = [list(range(k, min(k + size, len(pairs)))) for k in range(0, len(pairs), size)]
            pending = pool.map(decode, batches[0]) if batches else iter(())
            for b, indices in enumerate(batches):
                decoded = list(pending)
                if b + 1 < len(batches):
                    pending = pool.map(decode, batches[b + 1])
                good = [(i, px) for i, px, err in decoded if px is not None]
                for i, _, err in decoded:
                    if err is not None:
                        results[i] = PairScore(None, None, error=err)
                if not good:
                    continue
                texts = [pairs[i][1] or "" for i, _ in good]
                t0 = time.perf_counter()
                cosines = self._embed(torch.stack([px for _, px in good]), texts)
                if timing is not None:
                    timing.forward += time.perf_counter() - t0
                for k, ((i, _), cos, text) in enumerate(zip(good, cosines, texts)):
                    results[i] = PairScore(100.0 * max(cos, 0.0), cos, self.text_is_truncated(text), embedding=self._last_images[k])
        if timing is not None:
            timing.total += time.perf_counter() - start
            timing.pairs += len(pairs)
        return [r for r in results]  # type: ignore[misc]

    def score_one(self, image: bytes, text: str) -> PairScore:
        """The naive way, one pair at a time (the benchmark's baseline; also handy interactively)."""
        try:
            pixels = self._load(image)[None]
        except Exception as exc:
            return PairScore(None, None, error=f"{exc.__class__.__name__}: {exc}"[:300])
        cos = self._embed(pixels, [text], batched=False)[0]
        return PairScore(100.0 * max(cos, 0.0), cos, self.text_is_truncated(text))


def reduce_scores(values: list[float | None], how: str) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if how == "max":
        return max(present)
    if how == "min":
        return min(present)
    return sum(present) / len(present)


def item_text(item: dict) -> str:
    """The text CLIPScore compares an item's images with: a catalog title (or description), a review's
    summary, or the start of a transcript (truncation is flagged)."""
    for key in ("title", "description", "feedback_text"):
        if item.get(key):
            return item[key]
    return ""
