"""Training examples: a sample becomes token ids through the checkpoint's chat template and processor
(the very encoding VisAttnScore scores), and labels that are ``IGNORE`` everywhere but the response.

The paper trains with the loss on the response tokens only: the image tokens, the OCR text, the question
and the template must not be learnt. The response is the answer and the template's tokens after it up to
its end-of-turn token (``<|im_end|>``, ``<end_of_turn>``, ``<end_of_utterance>``, ``</s>`` ...), so the model
learns to stop; the adapter finds them (``Encoded.response``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from curation.prompt_layout import ocr_body
from curation.vlm import Encoded, Sample, SampleError, VLMAdapter
from db.storage.blobs import as_blobs

IGNORE = -100  # the label value PyTorch's cross-entropy (and transformers' loss) skips


@dataclass
class TrainExample:
    sample_id: str
    encoded: Encoded
    labels: list[int]


def response_labels(encoded: Encoded) -> list[int]:
    """Labels that keep the response (the answer and the end-of-turn tokens after it) and ignore the rest."""
    keep = set(encoded.response)
    return [t if k in keep else IGNORE for k, t in enumerate(encoded.input_ids)]


def make_example(adapter: VLMAdapter, sample_id: str, sample: Sample) -> TrainExample:
    encoded = adapter.encode(sample)
    return TrainExample(sample_id, encoded, response_labels(encoded))


def load_images(blob_root, blob_paths: Iterable[str]):
    """The images as RGB; ``blob_root`` is the blob store (db/storage/blobs.py) or a plain folder."""
    from PIL import Image

    blobs = as_blobs(blob_root)
    images = []
    for blob in blob_paths:
        with Image.open(blobs.local(blob)) as im:
            images.append(im.convert("RGB"))
    return images


def sample_from_row(row: dict[str, Any], blob_root, *, ocr: bool) -> Sample:
    """A store row (``db.reads.samples_view.samples_with_images``) as the adapter's Sample; OCR text by option."""
    blobs = row["blob_paths"]
    text = ocr_body(row.get("ocr_texts") or [], len(blobs)) if ocr else ""
    return Sample(load_images(blob_root, blobs), row["question"] or "", row["answer"] or "", text or None)


def build_examples(adapter: VLMAdapter, rows: list[dict[str, Any]], blob_root, *, ocr: bool, min_images: int = 1,
                   max_images: int = 5) -> tuple[list[TrainExample], dict[str, int]]:
    """Examples for the rows that can be trained on, and counts of those that could not (by reason);
    one unreadable image or over-long prompt never stops the run. Everything encoded at once: training
    streams instead (trainer/stream.py); this eager way is bench/train_memory.py's baseline."""
    examples: list[TrainExample] = []
    skipped: dict[str, int] = {}
    for row in rows:
        n = len(row.get("blob_paths") or [])
        if n < min_images or n > max_images:
            skipped["image_count"] = skipped.get("image_count", 0) + 1
            continue
        try:
            examples.append(make_example(adapter, row["sample_id"], sample_from_row(row, blob_root, ocr=ocr)))
        except SampleError as exc:
            skipped[exc.code] = skipped.get(exc.code, 0) + 1
        except OSError:
            skipped["unreadable_image"] = skipped.get("unreadable_image", 0) + 1
    return examples, skipped


def collate(adapter: VLMAdapter, batch: list[TrainExample]) -> dict[str, Any]:
    """The adapter's padded inputs plus labels padded with IGNORE."""
    import torch

    inputs = adapter.collate([e.encoded for e in batch])
    width = inputs["input_ids"].shape[1]
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(batch):
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
    inputs["labels"] = labels.to(inputs["input_ids"].device)
    return inputs
