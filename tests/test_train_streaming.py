"""Streamed training data and the loss of a whole accumulation window, in one process: a step's gradient
does not depend on how its samples split into micro-batches; examples are read in windows and encoded
as the loop goes, by loader worker processes, in the plan's order; samples that cannot be encoded are
left out and counted once; a snapshot's training set is read as one small row per sample."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from curation.vlm import Sample
from trainer.config import LoraSettings, TrainConfig
from trainer.data import make_example
from trainer.distributed import Dist
from trainer.loop import accumulate, response_loss_sum, run_plan, train
from trainer.lora import apply_lora, load_for_training
from trainer.plan import Order
from trainer.stream import WINDOW, MicroBatchStream, StoreSource, TrainingSet, cpu_encoder, loader

NO_DROPOUT = LoraSettings(r=8, alpha=16, dropout=0.0)
ANSWERS = ["Red.", "A blue box of cereal.", "A green jar of instant coffee with a metal lid.", "Yes.",
           "The bottle is cracked near the cap and the label is torn.", "No damage is visible.", "Two.",
           "A pair of grey running shoes with white soles, laces and a padded collar."]


def _adapter(tiny_models, config):
    adapter = load_for_training(tiny_models["idefics2"], config)
    apply_lora(adapter, config.lora, seed=config.seed)
    return adapter


def _grads(adapter) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in adapter.model.named_parameters() if p.requires_grad}


def _micro(adapter, examples, sizes):
    """The examples as collated micro-batches of the given sizes (MicroBatch items, as the stream makes them)."""
    from trainer.data import collate
    from trainer.stream import MicroBatch, response_tokens

    out, k = [], 0
    for n in sizes:
        inputs = collate(adapter, examples[k : k + n])
        out.append(MicroBatch(len(out), inputs, n, response_tokens(inputs["labels"])))
        k += n
    return out


def test_a_steps_gradient_does_not_depend_on_how_it_splits_into_micro_batches(tiny_models):
    config = TrainConfig(lora=NO_DROPOUT, batch_size=8)
    adapter = _adapter(tiny_models, config)
    colours = ["red", "blue", "green", "white", "black", "yellow", "grey", "purple"]
    examples = [make_example(adapter, f"s{i}", Sample([Image.new("RGB", (40, 30), colours[i])], "What is shown?", ANSWERS[i], None))
                for i in range(8)]
    assert len({e.encoded.length for e in examples}) >= 6  # samples of different lengths, so padding and token counts differ
    params = [p for p in adapter.model.parameters() if p.requires_grad]
    adapter.model.train()

    def step(sizes):
        adapter.model.zero_grad(set_to_none=True)
        totals = accumulate(adapter.model, _micro(adapter, examples, sizes), "cpu", Dist(), params)
        return _grads(adapter), totals

    whole, t1 = step([8])
    split, t4 = step([2, 2, 2, 2])
    uneven, _ = step([1, 4, 3])
    assert t1["response_tokens"] == t4["response_tokens"] and t1["samples"] == 8
    assert t1["loss_sum"] / t1["response_tokens"] == pytest.approx(t4["loss_sum"] / t4["response_tokens"], rel=1e-5)
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-8)
        torch.testing.assert_close(uneven[name], whole[name], rtol=1e-4, atol=1e-8)
    # what a mean per micro-batch divided by the accumulation steps gives instead: another gradient
    adapter.model.zero_grad(set_to_none=True)
    for mb in _micro(adapter, examples, [2, 2, 2, 2]):
        (response_loss_sum(adapter.model, mb.inputs) / mb.response_tokens / 4).backward()
    naive = _grads(adapter)
    assert max(float((naive[n] - whole[n]).abs().max()) for n in whole) > 1e-3 * max(float(whole[n].abs().max()) for n in whole)


class CountingReader:
    """Rows by id, counting the reads (what the store's ``samples_with_images`` gives)."""

    def __init__(self, rows):
        self.rows = {r["sample_id"]: r for r in rows}
        self.calls: list[int] = []

    def __call__(self, ids):
        self.calls.append(len(ids))
        return [self.rows[i] for i in ids if i in self.rows]


def _rows(folder, n):
    Image.new("RGB", (40, 30), "red").save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"not an image")
    rows = []
    for i in range(n):
        blob = "broken.png" if i % 10 == 3 else "ok.png"
        rows.append({"sample_id": f"s{i:03d}", "question": "What is shown?", "answer": ANSWERS[i % len(ANSWERS)], "blob_paths": [blob],
                     "ocr_texts": ["SUNVALE"]})
    rows[5]["answer"] = "   "  # nothing to learn
    return rows


def test_the_stream_reads_windows_encodes_lazily_and_keeps_the_plans_order(tiny_models, tmp_path):
    config = TrainConfig(lora=NO_DROPOUT, batch_size=2, epochs=2, loader_workers=2)
    adapter = _adapter(tiny_models, config)
    rows = _rows(tmp_path, 60)
    reader = CountingReader(rows)
    source = StoreSource(reader, tmp_path, ocr=True)
    ids = [r["sample_id"] for r in rows]
    plan = run_plan(len(ids), config)
    order = Order(plan, config.seed, np.array([len(r["answer"]) for r in rows]))
    stream = MicroBatchStream(order, ids, source, cpu_encoder(adapter), start=3, stop=plan.total_micro)
    got = list(loader(stream, workers=2, seed=0))
    assert [mb.index for mb in got] == list(range(3, plan.total_micro))  # two workers, the plan's order
    for mb in got[:5]:
        wanted = [ids[i] for i in order.micro_batch(mb.index)]
        bad = {sid for ids_ in mb.skipped.values() for sid in ids_}
        assert mb.samples == len([s for s in wanted if s not in bad]) and mb.inputs["input_ids"].device.type == "cpu"
    skipped = {code: set() for mb in got for code in mb.skipped}
    for mb in got:
        for code, sids in mb.skipped.items():
            skipped[code] |= set(sids)
    assert skipped == {"unreadable_image": {f"s{i:03d}" for i in range(3, 60, 10)}, "empty_text": {"s005"}}
    # read in windows of micro-batches, in the workers (these reads are theirs: the parent's counter saw none)
    assert reader.calls == []
    in_process = CountingReader(rows)
    list(loader(MicroBatchStream(order, ids, StoreSource(in_process, tmp_path, ocr=True), cpu_encoder(adapter), start=0,
                                 stop=plan.total_micro), workers=0, seed=0))
    assert len(in_process.calls) == -(-plan.total_micro // WINDOW) and max(in_process.calls) <= WINDOW * 2


def test_a_streamed_run_trains_counts_what_it_left_out_once_and_resumes_exactly(tiny_models, tmp_path):
    from peft import get_peft_model_state_dict

    from trainer.loop import StopTraining

    config = TrainConfig(lora=LoraSettings(r=8, alpha=16, dropout=0.1), batch_size=2, grad_accum=2, epochs=3, learning_rate=1e-2,
                         checkpoint_every=2, loader_workers=2, max_steps=5)
    rows = _rows(tmp_path, 12)

    def data():
        return TrainingSet([r["sample_id"] for r in rows], StoreSource(CountingReader(rows), tmp_path, ocr=True),
                           np.array([len(r["answer"]) for r in rows]))

    whole_adapter = _adapter(tiny_models, config)
    whole = train(whole_adapter, data(), config, tmp_path / "a")
    assert whole.steps == 5 and whole.examples == 12
    assert whole.skipped == {"unreadable_image": 1, "empty_text": 1}  # s003 and s005, seen in two epochs, counted once
    assert all(log.samples > 0 and log.loss == log.loss for log in whole.logs)

    stopped = _adapter(tiny_models, config)
    calls = []

    def stop_after_3():
        calls.append(1)
        if len(calls) > 3:
            raise StopTraining("killed")

    with pytest.raises(StopTraining):
        train(stopped, data(), config, tmp_path / "b", should_stop=stop_after_3)
    resumed_adapter = _adapter(tiny_models, config)
    resumed = train(resumed_adapter, data(), config, tmp_path / "b")
    assert resumed.resumed_from == 3 and [x.step for x in resumed.logs] == [4, 5]
    wa, wb = get_peft_model_state_dict(whole_adapter.model), get_peft_model_state_dict(resumed_adapter.model)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) == 0.0  # bit-identical, loader workers and all


def test_a_run_where_no_sample_can_be_encoded_stops_with_a_clear_error_and_writes_nothing(tiny_models, tmp_path):
    from trainer.loop import NoTrainableSamples, checkpoint_dirs

    config = TrainConfig(lora=NO_DROPOUT, batch_size=2, epochs=3, checkpoint_every=1, loader_workers=0)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [{"sample_id": f"s{i}", "question": "Q?", "answer": "A.", "blob_paths": ["broken.png"], "ocr_texts": [""]} for i in range(5)]
    data = TrainingSet([r["sample_id"] for r in rows], StoreSource(CountingReader(rows), tmp_path, ocr=False))
    with pytest.raises(NoTrainableSamples, match="unreadable_image 5"):
        train(_adapter(tiny_models, config), data, config, tmp_path / "run")
    assert checkpoint_dirs(tmp_path / "run") == []


def test_a_snapshots_training_set_is_one_small_row_per_sample_split_by_product(home, tmp_path):
    from config.settings import load_settings
    from curation import snapshots
    from curation.filters import Condition, FilterConfig
    from db.app.engine import write_engine
    from trainer.benchmarks import split_rows
    from trainer.snapshot_set import split

    from .curation_store import add_scores, ingest_and_generate

    lake = ingest_and_generate(tmp_path / "data")
    add_scores(lake)
    engine = write_engine(load_settings().app_url)
    snap = snapshots.create(lake, engine, name="snap", filter_name=None, config=FilterConfig([Condition.parse("vis_attn >= p10 or missing")]),
                            created_by="tester")
    config = TrainConfig(holdout=0.25)
    parts = split(lake, snapshots.members_sql(lake, snap), snap.lake_version, config)
    rows = snapshots.snapshot_rows(lake, engine, "snap")
    train_rows, held = split_rows(rows, config.holdout, config.seed)  # the evaluation's split of the full rows
    assert parts.ids == sorted(r["sample_id"] for r in train_rows) and parts.held_out == len(held) > 0
    by_id = {r["sample_id"]: r for r in rows}
    assert [int(n) for n in parts.images] == [len(by_id[i]["blob_paths"]) for i in parts.ids]
    assert [int(c) for c in parts.chars] == [len(by_id[i]["question"] or "") + len(by_id[i]["answer"] or "") for i in parts.ids]
    narrow = split(lake, snapshots.members_sql(lake, snap), snap.lake_version, TrainConfig().with_overrides(holdout=0.25, min_images=2))
    assert narrow.ids == [i for i in parts.ids if len(by_id[i]["blob_paths"]) >= 2] and narrow.skipped.get("image_count", 0) > 0


def test_a_workers_model_cache_is_bounded_and_gives_the_scoring_models_back_before_training(monkeypatch):
    from workers import models

    monkeypatch.setenv("VITPRO_MODEL_CACHE", "2")
    models.release_scoring_models()
    loads = []

    def loader_of(name):
        return lambda: loads.append(name) or f"model {name}"

    assert models._cached(("vlm", "/m/a", "cpu", "float32", "vis_attn"), loader_of("a")) == "model a"
    assert models._cached(("vlm", "/m/a", "cpu", "float32", "vis_attn"), loader_of("a")) == "model a"  # loaded once
    models._cached(("clip", "/m/clip"), loader_of("clip"))
    models._cached(("vlm", "/m/a", "cpu", "float32", "vis_attn"), loader_of("a"))  # a is the most recent now
    models._cached(("vlm", "/m/b", "cpu", "float32", "vis_attn"), loader_of("b"))  # over the bound: clip, the oldest, goes
    assert loads == ["a", "clip", "b"] and models.cached_names() == ["vlm /m/a", "vlm /m/b"]
    assert models.release_scoring_models() == ["vlm /m/a", "vlm /m/b"] and models.cached_names() == []
    assert models.release_scoring_models() == []
