"""Evaluation in batches: left-padded prompts generated together give the very answers of one at a time
(greedy decoding) on every family's tiny checkpoint, with prompts of different lengths and image counts in
one batch; an item that cannot be run keeps its error while its batch goes on; a family that cannot batch
runs one at a time and says so; items are streamed (no more images alive than one batch's); the objective
benchmark from the probabilities of "yes" and "no" equals the same sums taken by hand; the job records the
batch size and the mode and writes its JSONL as predictions come."""
from __future__ import annotations

import gc
import json
import logging
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from curation.tiny_models import vlm_families
from curation.vlm import LoadOptions, Sample, answer_tokens, load_vlm
from trainer import evaluate as ev
from trainer.benchmarks import EvalItem
from trainer.evaluate import AnswerTokensError, answer_token_groups, predict

from .test_ui_pages import ui_store  # noqa: F401  (the Jobs page test's store)

# the families the issue names first, then the others the fixture builds (all are cheap)
FIRST = ["idefics2", "qwen2_5_vl", "qwen3_vl", "llava", "llava_onevision", "gemma3"]
FAMILIES = FIRST + [f for f in vlm_families() if f not in FIRST]
QUESTIONS = [
    "Does the photo show a red box?",
    "Is the bottle in this picture leaking from the cap, and is the box it came in wet and torn on one side?",
    "Is this the same product as the listing titled 'SUNVALE herbal shampoo 300 ml, two pack'?",
    "Is it blue?",
    "What brand is this product, what colour is its packaging and how many items does the pack hold?",
]
COLOURS = [((96, 64), (200, 30, 30)), ((32, 40), (20, 130, 30)), ((60, 60), (30, 40, 200)), ((80, 50), (220, 220, 20)), ((64, 96), (240, 240, 240))]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval-blobs")
    for k, (size, colour) in enumerate(COLOURS):
        Image.new("RGB", size, colour).save(root / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def adapters(tiny_models):
    loaded = {}

    def get(family):
        if family not in loaded:
            loaded[family] = load_vlm(tiny_models[family], LoadOptions())
        return loaded[family]

    return get


def items_for(adapter, n: int = 7, *, extra: list[EvalItem] = ()) -> list[EvalItem]:
    """Items of different prompt lengths and (where the family takes several) image counts."""
    out = []
    for k in range(n):
        images = 1 if adapter.image_limit == 1 else 1 + k % 3
        question = QUESTIONS[k % len(QUESTIONS)] + " Answer briefly." * (k % 3)
        out.append(EvalItem(f"i{k}", "PM", question, "yes" if k % 2 else "no", [f"{(k + j) % 5}.png" for j in range(images)],
                            [f"ACME {k} {j}" for j in range(images)], "c", f"p{k}"))
    return out + list(extra)


def texts(predictions) -> list[str | None]:
    return [p.text for p in predictions]


# ---- collate -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gemma3", "qwen2_5_vl", "idefics2"])
def test_left_padding_pads_ids_mask_and_per_token_inputs_on_the_left_and_keeps_pixels(adapters, family):
    adapter = adapters(family)
    short = adapter.encode_prompt(Sample([Image.new("RGB", (40, 40), (9, 9, 9))], "Is it red?", ""))
    long = adapter.encode_prompt(Sample([Image.new("RGB", (64, 48), (90, 9, 9))], "Is it red? " + "More words here. " * 6, ""))
    assert short.length < long.length
    right, left = adapter.collate([short, long]), adapter.collate([short, long], padding_side="left")
    pad, gap = adapter.pad_token_id, long.length - short.length
    assert left["input_ids"][0].tolist() == [pad] * gap + short.input_ids and left["input_ids"][1].tolist() == long.input_ids
    assert left["attention_mask"][0].tolist() == [0] * gap + [1] * short.length
    assert right["input_ids"][0].tolist() == short.input_ids + [pad] * gap  # right padding as before
    assert set(left) == set(right)
    for key in left:
        if key in ("input_ids", "attention_mask"):
            continue
        if key in ("token_type_ids", "mm_token_type_ids"):  # one value per token: moved with the ids
            row = torch.as_tensor(short.inputs[key]).reshape(-1).tolist()
            assert left[key][0].tolist() == [0] * gap + row and right[key][0].tolist() == row + [0] * gap
            assert any(row)  # the image tokens are marked
        else:  # pixel inputs, grids, sizes: as today
            assert torch.equal(left[key], right[key]), key
    with pytest.raises(ValueError, match="padding_side"):
        adapter.collate([short], padding_side="middle")


# ---- the same answers as one at a time ---------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_answers_equal_one_at_a_time(adapters, blobs, family):
    adapter = adapters(family)
    items = items_for(adapter)
    one = predict(adapter, items, "objective", blobs, ocr=True, batch_size=1)
    mixed = predict(adapter, items, "objective", blobs, ocr=True, batch_size=4, group_by_length=False)  # 1, 2 and 3 images in a batch
    grouped = predict(adapter, items, "objective", blobs, ocr=True, batch_size=4)
    assert all(p.error is None for p in one + mixed + grouped), [p.error for p in one + mixed + grouped]
    assert texts(mixed) == texts(one) and texts(grouped) == texts(one)
    assert len({len(i.blob_paths) for i in items[:4]}) == (1 if adapter.image_limit == 1 else 3)


def test_batches_are_made_of_items_of_like_size_and_answers_come_back_in_the_items_order(adapters, blobs, monkeypatch):
    adapter = adapters("qwen3_vl")
    items = items_for(adapter, 9)  # 1, 2, 3, 1, 2, 3 ... images
    batches = []
    real = ev._run_batch
    monkeypatch.setattr(ev, "_run_batch", lambda a, chunk, *args, **kw: batches.append([len(i.blob_paths) for i in chunk]) or real(a, chunk, *args, **kw))
    got = predict(adapter, items, "objective", blobs, ocr=True, batch_size=3)
    assert batches == [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    assert [p.item.item_id for p in got] == [i.item_id for i in items]
    assert texts(got) == texts(predict(adapter, items, "objective", blobs, ocr=True, batch_size=1))


@pytest.mark.parametrize("family", ["idefics2", "qwen3_vl", "llava_onevision", "gemma3"])
def test_long_answers_and_rows_that_stop_early_equal_one_at_a_time(adapters, blobs, family, monkeypatch):
    """128 new tokens (the generative benchmark's), and rows that stop at different steps: a token the
    first item says early and the others late or never is made a stop token, so rows end while others go
    on (padded)."""
    adapter = adapters(family)
    items = items_for(adapter, 6)
    said = []
    for item in items:  # each item's own first greedy tokens
        inputs = adapter.collate([adapter.encode_prompt(ev.item_sample(item, "generative", blobs, ocr=True))])
        with torch.inference_mode():
            out = adapter.model.generate(**inputs, max_new_tokens=32, do_sample=False,
                                         pad_token_id=adapter.pad_token_id, eos_token_id=adapter.stop_token_ids())
        said.append(out[0, inputs["input_ids"].shape[1]:].tolist())

    def first(token, row):
        return row.index(token) if token in row else len(row)

    # a token some row says within its first 4 and another late or never: the widest such spread
    early = {t for r in said for t in r[:4]} - set(adapter.stop_token_ids())
    stop = max(sorted(early), key=lambda t: max(first(t, r) for r in said) - min(first(t, r) for r in said))
    stops = sorted({*adapter.stop_token_ids(), stop})
    monkeypatch.setattr(adapter, "stop_token_ids", lambda: stops)
    one = predict(adapter, items, "generative", blobs, ocr=True, batch_size=1)
    together = predict(adapter, items, "generative", blobs, ocr=True, batch_size=6)
    assert texts(together) == texts(one)
    ends = sorted(first(stop, r) for r in said)
    assert ends[0] < 4 and ends[-1] > 20  # some rows stopped early, others ran on
    assert len(texts(one)[0]) < max(len(t) for t in texts(one))


def test_an_item_that_cannot_be_run_keeps_its_error_and_its_batch_goes_on(adapters, blobs, monkeypatch):
    adapter = adapters("qwen2_5_vl")
    unreadable = EvalItem("gone", "PM", "Is it red?", "yes", ["missing.png"], [""], "c", "px")
    items = items_for(adapter, 5)
    items.insert(2, unreadable)
    # a context that takes the short prompts but not the long ones: "too long" for some items of the batch
    lengths = {i.item_id: adapter.encode_prompt(ev.item_sample(i, "objective", blobs, ocr=True)).length for i in items if i is not unreadable}
    monkeypatch.setattr(adapter, "max_length", sorted(lengths.values())[2])
    one = predict(adapter, items, "objective", blobs, ocr=True, batch_size=1)
    together = predict(adapter, items, "objective", blobs, ocr=True, batch_size=6)
    assert [(p.item.item_id, p.text, p.error) for p in together] == [(p.item.item_id, p.text, p.error) for p in one]
    errors = {p.item.item_id: p.error for p in together if p.error}
    assert "No such file" in errors["gone"] and "missing.png" in errors["gone"]
    too_long = [k for k, n in lengths.items() if n > adapter.max_length]
    assert too_long and all("over the model's" in errors[k] for k in too_long)
    assert sum(p.text is not None for p in together) == len(items) - 1 - len(too_long) >= 2


def test_a_family_that_cannot_batch_runs_one_item_at_a_time_and_says_so(adapters, blobs, monkeypatch, caplog):
    adapter = adapters("idefics2")
    items = items_for(adapter, 5)
    expected = texts(predict(adapter, items, "objective", blobs, ocr=True, batch_size=1))
    monkeypatch.setattr(adapter, "batched_generation", False)
    monkeypatch.setattr(adapter, "batched_generation_note", "its processor cannot pad a batch")
    sizes = []
    real = ev.generate_batch
    monkeypatch.setattr(ev, "generate_batch", lambda a, encoded, n: sizes.append(len(encoded)) or real(a, encoded, n))
    with caplog.at_level(logging.INFO, logger="trainer.evaluate"):
        got = predict(adapter, items, "objective", blobs, ocr=True, batch_size=4)
    assert sizes == [1] * 5 and texts(got) == expected
    assert "idefics2: generating one item at a time, not 4 (its processor cannot pad a batch)" in caplog.text
    assert ev.batch_size_for(adapter, 4) == 1 and ev.batch_size_for(adapters("gemma3"), 4) == 4


def test_an_items_seconds_are_its_batchs_time_shared_out(adapters, blobs):
    adapter = adapters("llava")
    got = predict(adapter, items_for(adapter, 7), "objective", blobs, ocr=True, batch_size=3, group_by_length=False)
    batches = [got[0:3], got[3:6], got[6:7]]
    assert all(len({p.seconds for p in b}) == 1 and b[0].seconds > 0 for b in batches)
    assert len({b[0].seconds for b in batches}) == 3


def test_items_are_streamed_one_batch_of_images_and_pixels_alive_at_a_time(adapters, blobs, monkeypatch):
    adapter = adapters("qwen2_5_vl")
    items = items_for(adapter, 9)  # 1 to 3 images each: 18 images in all
    alive = {"images": 0, "pixels": 0}
    peak = {"images": 0, "pixels": 0}

    def track(kind, obj):
        alive[kind] += 1
        peak[kind] = max(peak[kind], alive[kind])
        weakref.finalize(obj, lambda: alive.__setitem__(kind, alive[kind] - 1))

    real_load, real_encode = ev.load_images, adapter.encode_prompt

    def load_images(root, paths):
        images = real_load(root, paths)
        for im in images:
            track("images", im)
        return images

    def encode_prompt(sample):
        encoded = real_encode(sample)
        track("pixels", encoded.inputs["pixel_values"])
        return encoded

    monkeypatch.setattr(ev, "load_images", load_images)
    monkeypatch.setattr(adapter, "encode_prompt", encode_prompt)
    gc.collect()
    got = predict(adapter, items, "objective", blobs, ocr=True, batch_size=2)
    assert all(p.error is None for p in got) and sum(len(i.blob_paths) for i in items) == 18
    # two items of at most 3 images each: never more than one batch's images or pixel values alive
    assert peak["images"] <= 6 and peak["pixels"] <= 2
    gc.collect()
    assert alive == {"images": 0, "pixels": 0}


# ---- the objective benchmark from log-probabilities --------------------------------------------------
def test_the_yes_and_no_tokens_are_the_familys_own_first_answer_tokens(adapters, monkeypatch):
    idefics2 = adapters("idefics2")  # its template puts a space before the answer: " Yes", " yes", " No", " no", each one token
    named = lambda adapter, groups: {k: sorted(adapter.tokenizer.convert_ids_to_tokens(v)) for k, v in groups.items()}  # noqa: E731
    assert named(idefics2, answer_token_groups(idefics2)) == {"yes": ["ĠYes", "Ġyes"], "no": ["ĠNo", "Ġno"]}
    gemma3 = adapters("gemma3")  # the answer follows "model\n" directly: no space before it
    assert named(gemma3, answer_token_groups(gemma3)) == {"yes": ["Yes", "yes"], "no": ["No", "no"]}
    # a spelling the vocabulary does not hold whole counts by its first piece ("Y"(up)), unless whole tokens are asked for;
    # a first piece both answers share tells neither: dropped, and with nothing left the mode is refused
    monkeypatch.setattr(answer_tokens, "ANSWER_SPELLINGS", {"yes": ("Yup", "yup"), "no": ("No", "no")})
    assert named(gemma3, answer_token_groups(gemma3)) == {"yes": ["Y", "y"], "no": ["No", "no"]}
    with pytest.raises(AnswerTokensError, match="'Yup' as 3 tokens, not one"):
        answer_token_groups(gemma3, whole=True)
    monkeypatch.setattr(answer_tokens, "ANSWER_SPELLINGS", {"yes": ("Yup",), "no": ("Yikes",)})
    with pytest.raises(AnswerTokensError, match="start with the same token"):
        answer_token_groups(gemma3)


@pytest.mark.parametrize("family", ["idefics2", "qwen2_5_vl", "gemma3", "llava_onevision"])
def test_logprob_answers_are_the_argmax_of_the_two_token_groups_computed_by_hand(adapters, blobs, family):
    adapter = adapters(family)
    items = items_for(adapter, 6)
    got = predict(adapter, items, "objective", blobs, ocr=True, batch_size=4, objective_mode="logprob")
    groups = answer_token_groups(adapter)
    for item, p in zip(items, got):
        encoded = adapter.encode_prompt(ev.item_sample(item, "objective", blobs, ocr=True))
        with torch.inference_mode():
            logits = adapter.model(**adapter.collate([encoded])).logits[0, -1]
        probs = torch.softmax(logits.double(), dim=-1)
        p_yes, p_no = float(probs[groups["yes"]].sum()), float(probs[groups["no"]].sum())
        assert p.text == ("yes" if p_yes > p_no else "no")
        assert p.p_yes == pytest.approx(p_yes / (p_yes + p_no), abs=1e-5)
        assert p.to_dict()["p_yes"] == pytest.approx(p.p_yes, abs=1e-6)
    assert {p.text for p in got} <= {"yes", "no"}
    one = predict(adapter, items, "objective", blobs, ocr=True, batch_size=1, objective_mode="logprob")
    assert texts(one) == texts(got) and max(abs(a.p_yes - b.p_yes) for a, b in zip(one, got)) < 1e-5
    # the other benchmarks are always generated
    assert predict(adapter, items[:1], "attributes", blobs, ocr=True, objective_mode="logprob")[0].p_yes is None
    with pytest.raises(ValueError, match="objective mode must be one of generate, logprob"):
        predict(adapter, items, "objective", blobs, ocr=True, objective_mode="vibes")


# ---- the job ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["generate", "logprob"])
def test_the_job_records_batch_size_and_mode_and_writes_predictions_as_they_come(adapters, blobs, tiny_models, monkeypatch, tmp_path, mode):
    from trainer import benchmarks
    from trainer.config import TrainConfig
    from workers import models
    from workers.jobs import evaluate as handler

    adapter = adapters("gemma3")
    items = items_for(adapter, 7, extra=[EvalItem("gone", "PM", "Is it red?", "yes", ["missing.png"], [""], "c", "px")])
    monkeypatch.setattr(handler.snapshots, "eval_rows", lambda lake, engine, snapshot: [{"sample_id": "s", "product": "p"}])
    monkeypatch.setattr(benchmarks, "split_rows", lambda rows, holdout, seed, keys=None: ([], rows))
    monkeypatch.setattr(handler.snapshot_set, "split_basis", lambda lake: {"by": "product"})  # no store here: no near-duplicate grouping
    monkeypatch.setattr(benchmarks, "objective_items", lambda *a, **k: items)
    monkeypatch.setattr(models, "eval_vlm", lambda model, adapter_dir, config: adapter)
    out = tmp_path / "objective.jsonl"
    seen_on_disk = []

    def progress(done):  # the JSONL holds every prediction made so far
        seen_on_disk.append((done, len((tmp_path / "objective.jsonl.partial").read_text().splitlines())))

    ctx = SimpleNamespace(lake=None, engine=None, blobs=blobs, progress=progress, check=lambda: None, log=lambda message, level="info": None)
    from jobs.eval import EvalJob

    job = EvalJob(name="e", snapshot="s", model=str(tiny_models["gemma3"]), out=str(tmp_path / "e"), batch_size=3, objective_mode=mode)
    result = handler.evaluate_benchmark(ctx, job, "objective", None, TrainConfig(), out)
    assert seen_on_disk == [(3, 3), (6, 6), (8, 8)]
    assert result["batch_size"] == 3 and result["objective_mode"] == mode and result["items"] == 8 and result["failed_items"] == 1
    assert result["seconds_per_item"] > 0 and result["scores"]["PM"]["n"] == 8
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["item_id"] for r in records] == [i.item_id for i in items] and not (tmp_path / "objective.jsonl.partial").exists()
    assert records[-1]["error"] and records[-1]["prediction"] is None
    if mode == "logprob":
        assert all(0 <= r["p_yes"] <= 1 and r["prediction"] in ("yes", "no") for r in records[:-1])
    else:
        assert not any("p_yes" in r for r in records)


def test_the_specs_take_a_batch_size_and_an_objective_mode(tmp_path):
    from config.fields import FieldError
    from jobs.ablate import AblateJob
    from jobs.eval import EvalJob

    model = tmp_path / "qwen"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    params = EvalJob(name="e", snapshot="s", model=str(model), out=str(tmp_path / "e")).params()
    assert (params["batch_size"], params["objective_mode"]) == (8, "generate")
    params = AblateJob(name="a", snapshot="s", model=str(model), adapter=None, grid={"ocr": ["on", "off"]}, out=str(tmp_path / "a"),
                       batch_size=2, objective_mode="logprob").params()
    assert (params["batch_size"], params["objective_mode"]) == (2, "logprob")
    for bad, message in (({"batch_size": 0}, "^must be at least 1, not 0$"), ({"objective_mode": "vibes"}, "^'vibes' is not one of generate, logprob$")):
        with pytest.raises(FieldError, match=message) as caught:
            EvalJob(name="e", snapshot="s", model=str(model), out=str(tmp_path / "e"), **bad).params()
        assert caught.value.field == next(iter(bad))  # the refusal names its field, for each front end to say in its terms
        with pytest.raises(FieldError, match=message):
            AblateJob(name="a", snapshot="s", model=str(model), adapter=None, grid={"ocr": ["on"]}, out=str(tmp_path / "a"), **bad).params()


def test_the_evaluation_form_sends_its_batch_size_and_objective_mode(ui_store, tiny_models):
    from curation import snapshots
    from curation.filters import FilterConfig
    from db.app import jobs as jobs_db
    from jobs.submit import cancel_job

    from .test_ui_pages import page, texts

    home, lake, engine = ui_store
    snapshots.create(lake, engine, name="eval-form", filter_name=None, config=FilterConfig([]), created_by="admin")
    at = page("jobs", launch_tab="Evaluation")
    assert [x.value for x in at.number_input if x.key == "eval_batch_size"] == [8]
    at.text_input(key="eval_model_path").input(str(tiny_models["idefics2"]))
    at.selectbox(key="eval_snap").set_value("eval-form")
    at.number_input(key="eval_batch_size").set_value(3)
    at.selectbox(key="eval_objective_mode").set_value("logprob")
    next(b for b in at.button if b.label == "Launch evaluation").click().run()
    assert "launched eval job" in texts(at), texts(at)
    job = jobs_db.list_jobs(engine, limit=1)[0]
    try:
        assert job.kind == "eval" and (job.params["batch_size"], job.params["objective_mode"]) == (3, "logprob")
    finally:
        cancel_job(job.id)
