"""Training examples streamed from the store as the loop needs them, never all at once.

A ``torch.utils.data`` IterableDataset walks this process's share of the run's global micro-batches
(trainer/plan.py) from the step it starts at. DataLoader worker processes take micro-batches in turn
(worker ``w`` of ``W``: the ``w``-th, ``w+W``-th, ...), and the DataLoader hands them back in that same
round-robin order, so the loop sees micro-batch ``k`` after ``k-1`` whatever the number of workers (the
loop checks). A worker reads the rows of a window of its micro-batches in one store query (text and
image paths only), then loads the images, encodes and collates one micro-batch at a time: what is held
is a window of rows and the prefetched micro-batches, whatever the size of the data set.

A sample that cannot be encoded (unreadable image, too long, no answer) is left out of its micro-batch
and reported with it, so the run counts it (once, however many epochs meet it).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Protocol, Sequence

from curation.vlm import Sample, SampleError, VLMAdapter

from .data import IGNORE, TrainExample, collate, make_example, sample_from_row
from .plan import Order, rank_share

WINDOW = 16  # micro-batches whose rows one store read fetches


@dataclass
class MicroBatch:
    index: int  # the global micro-batch's number, from the run's start
    inputs: dict[str, Any] | None  # collated CPU tensors with labels; None when this share has no example
    samples: int
    response_tokens: int  # label positions the loss counts (after the shift by one)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> sample ids left out


class ExampleSource(Protocol):
    """Where a stream's samples come from: ``rows`` reads many at once, ``example`` encodes one."""

    def rows(self, ids: list[str]) -> dict[str, Any]: ...

    def example(self, encoder: VLMAdapter, sample_id: str, row: Any) -> TrainExample: ...


@dataclass
class StoreSource:
    """Rows from the lake at the snapshot's version (``read``: ids -> rows, in this process's own store
    connection), images from the blob store, OCR text by option; image counts outside the run's range are
    refused like any sample that cannot be encoded."""

    read: Callable[[list[str]], list[dict[str, Any]]]
    blobs: Any
    ocr: bool
    min_images: int = 1
    max_images: int = 5

    def rows(self, ids: list[str]) -> dict[str, Any]:
        return {r["sample_id"]: r for r in self.read(ids)}

    def example(self, encoder: VLMAdapter, sample_id: str, row: Any) -> TrainExample:
        n = len(row.get("blob_paths") or [])
        if n < self.min_images or n > self.max_images:
            raise SampleError("image_count", f"{n} image(s), the run takes {self.min_images} to {self.max_images}")
        return make_example(encoder, sample_id, sample_from_row(row, self.blobs, ocr=self.ocr))


@dataclass
class SampleSource:
    """Samples already in memory (tests, benchmarks)."""

    samples: dict[str, Sample]

    def rows(self, ids: list[str]) -> dict[str, Any]:
        return {i: self.samples[i] for i in ids if i in self.samples}

    def example(self, encoder: VLMAdapter, sample_id: str, row: Any) -> TrainExample:
        return make_example(encoder, sample_id, row)


@dataclass
class EncodedSource:
    """Examples already encoded (tests, benchmarks, small in-memory runs)."""

    examples: dict[str, TrainExample]

    def rows(self, ids: list[str]) -> dict[str, Any]:
        return {i: self.examples[i] for i in ids if i in self.examples}

    def example(self, encoder: VLMAdapter, sample_id: str, row: Any) -> TrainExample:
        return row


@dataclass
class TrainingSet:
    """What a run trains on: the sample ids in a fixed order (the plan indexes them), where their examples
    come from, and a length per sample for grouping (None: no grouping)."""

    ids: Sequence[str]
    source: ExampleSource
    lengths: Any = None  # numpy array, one estimate per id

    @classmethod
    def of_examples(cls, examples: list[TrainExample]) -> "TrainingSet":
        import numpy as np

        return cls([e.sample_id for e in examples], EncodedSource({e.sample_id: e for e in examples}),
                   np.array([e.encoded.length for e in examples]))

    def __len__(self) -> int:
        return len(self.ids)


def cpu_encoder(adapter: VLMAdapter) -> VLMAdapter:
    """The adapter as the loader's workers use it: processor and template only, tensors left on the CPU
    (a worker must not touch the GPU), no model (never copied into a worker)."""
    encoder = copy.copy(adapter)
    encoder.model = None
    encoder.options = replace(adapter.options, device="cpu")
    return encoder


def response_tokens(labels) -> int:
    return int((labels[:, 1:] != IGNORE).sum())


class MicroBatchStream:
    """This process's share of global micro-batches ``start``..``stop-1``, as :class:`MicroBatch` items."""

    def __init__(self, order: Order, ids: Sequence[str], source: ExampleSource, encoder: VLMAdapter, *, start: int, stop: int,
                 rank: int = 0, world: int = 1, window: int = WINDOW):
        self.order, self.ids, self.source, self.encoder = order, ids, source, encoder
        self.start, self.stop, self.rank, self.world, self.window = start, stop, rank, world, window

    def __iter__(self) -> Iterator[MicroBatch]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = range(self.start + worker, self.stop, workers)
        for w in range(0, len(mine), self.window):
            ks = mine[w : w + self.window]
            shares = [[self.ids[i] for i in rank_share(self.order.micro_batch(k), self.rank, self.world)] for k in ks]
            rows = self.source.rows(list(dict.fromkeys(i for share in shares for i in share)))
            for k, share in zip(ks, shares):
                yield self._micro_batch(k, share, rows)

    def _micro_batch(self, k: int, share: list[str], rows: dict[str, Any]) -> MicroBatch:
        examples: list[TrainExample] = []
        skipped: dict[str, list[str]] = {}
        for sample_id in share:
            try:
                if sample_id not in rows:
                    raise SampleError("missing", "the sample is not in the store at the snapshot's version")
                examples.append(self.source.example(self.encoder, sample_id, rows[sample_id]))
            except SampleError as exc:
                skipped.setdefault(exc.code, []).append(sample_id)
            except OSError:
                skipped.setdefault("unreadable_image", []).append(sample_id)
        if not examples:
            return MicroBatch(k, None, 0, 0, skipped)
        inputs = collate(self.encoder, examples)
        return MicroBatch(k, inputs, len(examples), response_tokens(inputs["labels"]), skipped)


def _iterable(stream: MicroBatchStream):
    """The stream as a torch IterableDataset (a subclass made here so importing this module needs no torch)."""
    from torch.utils.data import IterableDataset

    class Dataset(IterableDataset):
        def __iter__(self):
            return iter(stream)

    return Dataset()


def _worker_init(_: int) -> None:
    # a forked worker must not use the parent's store connection or blob client: it opens its own
    from db.lake.connection import forget_shared_lakes
    from db.storage.blobs import forget_open_blobs

    forget_shared_lakes()
    forget_open_blobs()


def loader(stream: MicroBatchStream, *, workers: int, seed: int, prefetch: int = 2):
    """A DataLoader over the stream: ``workers`` processes reading and encoding ahead (0: in this process).
    Its own seeded generator, so creating it never draws from the global random state that LoRA dropout
    uses (a resumed run must draw the same dropout masks as one never stopped)."""
    import torch
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {"batch_size": None, "num_workers": workers, "generator": torch.Generator().manual_seed(seed)}
    if workers:
        kwargs.update(prefetch_factor=prefetch, worker_init_fn=_worker_init, persistent_workers=False)
    return DataLoader(_iterable(stream), **kwargs)


def close_loader(batches) -> None:
    """Stop a DataLoader iterator's worker processes at once. A run stopped mid-way (cancel, a lost lease)
    would otherwise leave them until the iterator is garbage collected, which an exception's traceback
    can put off for long: they hold their prefetched batches and compete with what runs next. PyTorch
    has no public close; its own ``__del__`` calls this."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
