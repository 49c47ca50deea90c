"""A snapshot as a run's training set: the member samples of the training products (the held-out ones are
for evaluation), each with an estimate of its length, and where to read the rest when the loop needs it.

Only one small row per sample is read here (db.reads.training_sets); the text and images come a window at a
time through the stream (trainer/stream.py). The split is the evaluation's own (``benchmarks.is_held_out``:
a hash of the product), so a product is on one side whatever the snapshot's size or order; products whose
photos are near-duplicates of each other are split as one (curation/dup_splits.py, :func:`split_basis`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from db.lake.connection import Lake
from db.reads.training_sets import plan_rows

from .benchmarks import is_held_out
from .config import TrainConfig
from .stream import StoreSource, TrainingSet

CHARS_PER_TOKEN = 4  # a rough text-token estimate; grouping needs an order, not exact counts


@dataclass
class SnapshotSplit:
    ids: list[str]  # training samples within the run's image-count range, sorted by id
    images: np.ndarray
    chars: np.ndarray
    held_out: int  # samples of held-out products
    skipped: dict[str, int] = field(default_factory=dict)  # training samples left out before the run, by reason

    def lengths(self, image_tokens: int) -> np.ndarray:
        """Token estimates: the images' tokens (what the processor gave one image) and the text's."""
        return self.images.astype(np.int64) * int(image_tokens) + self.chars.astype(np.int64) // CHARS_PER_TOKEN


def split_basis(lake: Lake) -> dict[str, Any]:
    """What a run's held-out split goes by, fixed when the run is launched (every process and the evaluation
    then read the same groups): the newest near-duplicate grouping at the store's current version, or the
    products alone where no grouping was made (``vitpro dedup images``)."""
    from db.reads.dup_reads import groupings

    made = groupings(lake)
    return {"by": "dup_group", "grouping": made[0], "version": lake.current_version()} if made else {"by": "product"}


def split_keys(lake: Lake, members_sql: str, products: dict[str, str], basis: dict[str, Any] | None) -> dict[str, str]:
    """Each member sample's split key (curation.dup_splits): products tied by near-duplicate photos under the
    basis's grouping share one. Empty where the basis is the products alone."""
    from curation.dup_splits import split_keys as keys_of
    from db.reads.dup_reads import sample_groups

    if not basis or basis.get("by") != "dup_group":
        return {}
    groups = sample_groups(lake, members_sql, basis["grouping"], basis.get("version"))
    return keys_of((s, p, groups.get(s, ())) for s, p in products.items())


def split(lake: Lake, members_sql: str, version: int, config: TrainConfig, basis: dict[str, Any] | None = None) -> SnapshotSplit:
    cols = plan_rows(lake, members_sql, version)
    ids, products = cols["sample_id"], cols["product"]
    images, chars = np.asarray(cols["images"], dtype=np.int64), np.asarray(cols["chars"], dtype=np.int64)
    own = {str(s): str(p if p is not None else s) for s, p in zip(ids, products)}
    keys = split_keys(lake, members_sql, own, basis)
    train = np.array([not is_held_out(keys.get(s, p), config.holdout, config.seed) for s, p in own.items()], dtype=bool)
    fits = (images >= config.images.min_images) & (images <= config.images.max_images)
    keep = train & fits
    skipped = {"image_count": int((train & ~fits).sum())} if (train & ~fits).any() else {}
    return SnapshotSplit([str(x) for x in np.asarray(ids)[keep]], images[keep], chars[keep], int((~train).sum()), skipped)


@dataclass
class LakeReader:
    """Reads samples' rows at one version through this process's own store connection (a loader worker
    opens its own: trainer/stream.py forgets the parent's in each)."""

    store: Any  # config.settings.StoreConfig
    version: int

    def __call__(self, ids: list[str]) -> list[dict[str, Any]]:
        from db.reads.samples_view import samples_with_images
        from db.store import open_store

        return samples_with_images(open_store(self.store), ids, version=self.version)


def training_set(parts: SnapshotSplit, reader: LakeReader, blobs, config: TrainConfig, image_tokens: int) -> TrainingSet:
    source = StoreSource(reader, blobs, ocr=config.ocr, min_images=config.images.min_images, max_images=config.images.max_images)
    return TrainingSet(parts.ids, source, parts.lengths(image_tokens))


def image_tokens(adapter) -> int:
    """How many tokens the processor gives one 224-pixel image (the unit of the length estimate)."""
    from PIL import Image

    from curation.vlm import Sample, SampleError

    try:
        return len(adapter.encode(Sample([Image.new("RGB", (224, 224), "white")], "?", "x", None)).image_positions)
    except SampleError:
        return 256
