"""LoRA training on tiny checkpoints: loss goes down, labels cover the response only, LoRA sits on the
parts asked for, a stopped run resumes to the very weights of an unstopped one; presets, options,
evaluation sets and the ablation grid."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from curation.vlm import Sample
from trainer import ablation
from trainer.benchmarks import add_examples, item_images, objective_items, prompt_question, split_rows
from trainer.config import PRESETS, LoraSettings, TrainConfig
from trainer.data import IGNORE, build_examples, collate, make_example
from trainer.loop import StopTraining, checkpoint_dirs, run_plan, train
from trainer.lora import AcceleratorError, apply_lora, check_accelerator_options, load_for_training
from trainer.plan import Order, rank_share

from .helpers import lora_run

SMALL = TrainConfig(batch_size=2, learning_rate=1e-2, lora=LoraSettings(r=8, alpha=16, dropout=0.0), warmup_ratio=0.0)


def _examples(adapter, n=4):
    colours = ["red", "blue", "green"]
    answers = ["A red bottle of shampoo.", "A blue box of cereal.", "A green jar of coffee."]
    return [make_example(adapter, f"s{i}", Sample([Image.new("RGB", (40, 30), colours[i % 3])], "What is shown?", answers[i % 3], "SUNVALE 300 ml"))
            for i in range(n)]


def _loss(adapter, examples) -> float:
    adapter.model.eval()
    with torch.no_grad():
        return float(adapter.model(**collate(adapter, examples)).loss)


def test_paper_presets():
    paper, multi = PRESETS["paper"], PRESETS["multi_image"]
    assert (paper.lora.r, paper.lora.alpha, paper.lora.dropout, paper.lora.parts) == (256, 32, 0.1, ("vision", "connector", "language"))
    assert (paper.epochs, paper.learning_rate, paper.batch_size) == (2.0, 2e-4, 8)
    assert (multi.lora.r, multi.lora.alpha, multi.learning_rate, multi.batch_size, multi.grad_accum) == (8, 16, 1e-5, 16, 8)
    assert (multi.images.min_images, multi.images.max_images) == (2, 5)
    assert TrainConfig.from_dict(multi.to_dict()) == multi
    with pytest.raises(ValueError, match="parts"):
        LoraSettings(parts=("decoder",))
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"epoch": 3})


def test_two_steps_lower_the_loss_on_a_repeated_batch(tiny_models, tmp_path):
    adapter = load_for_training(tiny_models["idefics2"], SMALL)
    apply_lora(adapter, SMALL.lora)
    examples = _examples(adapter, 2)
    before = _loss(adapter, examples)
    config = TrainConfig(**{**SMALL.__dict__, "max_steps": 2, "epochs": 10})
    result = train(adapter, examples, config, tmp_path / "run")
    after = _loss(adapter, examples)
    assert result.steps == 2 and [log.step for log in result.logs] == [1, 2]
    assert after < before - 0.05, (before, after)
    assert all(log.tokens > 0 and log.learning_rate > 0 for log in result.logs)


def test_labels_cover_the_response_only(tiny_models):
    adapter = load_for_training(tiny_models["idefics2"], SMALL)
    ex = _examples(adapter, 1)[0]
    enc = ex.encoded
    kept = [k for k, t in enumerate(ex.labels) if t != IGNORE]
    answer = enc.segments["answer"]
    # the answer's tokens and the end-of-turn token after it; nothing of the image, OCR text or question
    assert kept[: len(answer)] == answer and kept == list(range(answer[0], answer[-1] + 2))
    assert enc.input_ids[kept[-1]] == adapter.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    assert not set(kept) & set(enc.image_positions) and not set(kept) & set(enc.segments["question"])
    assert adapter.tokenizer.decode([enc.input_ids[k] for k in kept]).strip() == "A red bottle of shampoo.<end_of_utterance>"
    assert sum(t != IGNORE for t in ex.labels) < enc.length / 3
    # the model's loss is the cross-entropy over exactly those tokens (padding ignored too)
    short = make_example(adapter, "x", Sample([Image.new("RGB", (40, 30))], "Q?", "No.", None))
    batch = collate(adapter, [ex, short])
    assert (batch["labels"][1, short.encoded.length:] == IGNORE).all()
    with torch.no_grad():
        out = adapter.model(**batch)
    logits, labels = out.logits[:, :-1].float(), batch["labels"][:, 1:]
    manual = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)
    assert math.isclose(float(out.loss), float(manual), rel_tol=1e-5)


@pytest.mark.parametrize("family", ["idefics2", "llava"])
@pytest.mark.parametrize("parts", [("language",), ("connector",), ("vision", "language"), ("vision", "connector", "language")])
def test_lora_sits_on_the_chosen_parts_only(tiny_models, family, parts):
    adapter = load_for_training(tiny_models[family], SMALL)
    apply_lora(adapter, LoraSettings(r=4, alpha=8, dropout=0.1, parts=parts))
    names = [n for n, p in adapter.model.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    for part in adapter.parts:
        in_part = [n for n in names if adapter.part_of(n.split(".lora_")[0]) == part]
        assert bool(in_part) == (part in parts), (part, in_part[:2])
        # attention projections only (LLaVA's connector has none: its two linears)
        leaves = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in in_part}
        assert leaves <= set(adapter.lora_modules[part])
    assert not any("mlp" in n for n in names)


def test_stopped_run_resumes_to_the_same_steps_and_weights(tiny_models, tmp_path):
    from peft import get_peft_model_state_dict

    config = TrainConfig(batch_size=2, learning_rate=1e-2, lora=LoraSettings(r=8, alpha=16, dropout=0.1), epochs=3, max_steps=5, checkpoint_every=2)

    def run(out, stop_after=None):
        return lora_run(tiny_models["idefics2"], config, lambda adapter: _examples(adapter, 5), out, stop_after)

    whole, a = run(tmp_path / "a")
    with pytest.raises(StopTraining):
        run(tmp_path / "b", stop_after=3)
    assert [p.name for p in checkpoint_dirs(tmp_path / "b")] == ["step-0000002", "step-0000003"]
    resumed, b = run(tmp_path / "b")
    assert (whole.steps, resumed.steps, resumed.resumed_from) == (5, 5, 3)
    assert [log.step for log in resumed.logs] == [4, 5]  # no step done twice
    assert [round(x.loss, 6) for x in resumed.logs] == [round(x.loss, 6) for x in whole.logs[3:]]
    wa, wb = get_peft_model_state_dict(a.model), get_peft_model_state_dict(b.model)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) == 0.0


def test_data_order_and_step_plan():
    config = TrainConfig(batch_size=3, grad_accum=2, epochs=2)
    plan = run_plan(10, config)
    assert (plan.steps_per_epoch, plan.total_steps, plan.micro_per_epoch) == (2, 4, 4)  # 4 micro-batches per epoch, 2 per step
    order = Order(plan, seed=0)
    batches = [order.micro_batch(k).tolist() for k in range(plan.total_micro)]
    assert len(batches) == 8 and sorted(i for b in batches[:4] for i in b) == list(range(10))
    assert batches == [Order(plan, seed=0).micro_batch(k).tolist() for k in range(plan.total_micro)]  # a pure function of the seed
    assert batches[:4] != batches[4:]  # a fresh permutation per epoch
    assert run_plan(10, TrainConfig(batch_size=3, grad_accum=2, max_steps=3)).total_steps == 3
    # two processes of batch 2 make the global micro-batches of one process of batch 4, and share each
    assert run_plan(10, TrainConfig(batch_size=2, nproc=2)) == run_plan(10, TrainConfig(batch_size=4))
    assert [rank_share(order.micro_batch(0), r, 2).tolist() for r in (0, 1)] == [batches[0][:2], batches[0][2:]]
    # grouping by length: each micro-batch holds neighbours in length, every sample once per epoch, seeded
    lengths = np.random.default_rng(1).integers(10, 1000, size=400)
    grouped_plan = run_plan(400, TrainConfig(batch_size=8, epochs=1))
    grouped = Order(grouped_plan, 0, lengths)
    micro = [grouped.micro_batch(k) for k in range(grouped_plan.total_micro)]
    assert sorted(np.concatenate(micro).tolist()) == list(range(400))
    spread = np.mean([np.ptp(lengths[b]) for b in micro])
    random_spread = np.mean([np.ptp(lengths[b]) for b in (Order(grouped_plan, 0).micro_batch(k) for k in range(grouped_plan.total_micro))])
    assert spread < random_spread / 5, (spread, random_spread)
    assert [b.tolist() for b in micro] == [Order(grouped_plan, 0, lengths).micro_batch(k).tolist() for k in range(grouped_plan.total_micro)]


def test_accelerator_options_are_refused_with_a_message_on_cpu():
    with pytest.raises(AcceleratorError, match="4-bit loading .* need\\(s\\) a CUDA GPU"):
        check_accelerator_options(TrainConfig(load_4bit=True))
    with pytest.raises(AcceleratorError, match="FlashAttention-2"):
        check_accelerator_options(TrainConfig(flash_attention=True, device="cuda"))
    check_accelerator_options(TrainConfig())


def test_image_options_and_multi_image_prompt(tiny_models):
    adapter = load_for_training(tiny_models["idefics2"], TrainConfig(images=PRESETS["paper"].images))
    def image_tokens():
        return len(adapter.encode(Sample([Image.new("RGB", (64, 48))], "Q?", "A.", None)).image_positions)

    one = image_tokens()
    adapter.configure_images(splitting=True)
    assert image_tokens() == 5 * one  # 4 crops and the whole image
    adapter.configure_images(splitting=False, longest_edge=32)
    assert adapter.processor.image_processor.size["longest_edge"] == 32
    ims = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    enc = adapter.encode(Sample(ims, "Which photo shows the damage?", "Photo [2].", "SUNVALE"))
    text = adapter.tokenizer.decode(enc.input_ids)
    assert "[1]" in text and "[2]" in text and "[3]" in text and "###" in text
    llava = load_for_training(tiny_models["llava"], SMALL)
    with pytest.raises(ValueError, match="fixed size"):
        llava.configure_images(splitting=True)


def test_build_examples_skips_bad_rows_and_counts_them(tiny_models, tmp_path):
    adapter = load_for_training(tiny_models["idefics2"], SMALL)
    Image.new("RGB", (40, 30)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [
        {"sample_id": "a", "question": "Q?", "answer": "A.", "blob_paths": ["ok.png"], "ocr_texts": ["X"]},
        {"sample_id": "b", "question": "Q?", "answer": "A.", "blob_paths": ["broken.png"], "ocr_texts": [""]},
        {"sample_id": "c", "question": "Q?", "answer": "A.", "blob_paths": [], "ocr_texts": []},
        {"sample_id": "d", "question": "Q?", "answer": "  ", "blob_paths": ["ok.png"], "ocr_texts": [""]},
    ]
    examples, skipped = build_examples(adapter, rows, tmp_path, ocr=True)
    assert [e.sample_id for e in examples] == ["a"]
    assert skipped == {"unreadable_image": 1, "image_count": 1, "empty_text": 1}
    _, multi = build_examples(adapter, rows[:1], tmp_path, ocr=True, min_images=2)
    assert multi == {"image_count": 1}


def _rows():
    rows = []
    for p in range(40):
        base = {"product": f"P{p}", "category": "hair" if p % 2 else "coffee", "blob_paths": [f"{p}.png"], "ocr_texts": [""], "item_id": f"i{p}",
                "title": f"B{p % 4} product {p}", "brand": f"B{p % 4}", "attributes": {"Color": "Unanswerable", "size": f"{100 + p} ml"}}
        rows.append({**base, "sample_id": f"dd{p}", "task": "damage_detection", "question": "Is it damaged?", "answer": "Yes." if p % 3 == 0 else "No.",
                     "answer_format": "yes_no", "label": "yes" if p % 3 == 0 else "no"})
        rows.append({**base, "sample_id": f"pm{p}", "task": "matching", "question": f"Does the photo show P{p}?", "answer": "Yes.",
                     "answer_format": "yes_no", "label": "yes"})
        rows.append({**base, "sample_id": f"pn{p}", "task": "matching", "question": "Does the photo show Q?", "answer": "No.",
                     "answer_format": "yes_no", "label": "no"})
        rows.append({**base, "sample_id": f"ae{p}", "task": "attribute_extraction", "question": "Attributes?", "answer_format": "json", "label": None,
                     "answer": f'{{"Brand": "B{p % 4}", "Color": "Unanswerable", "Size": "{100 + p} ml"}}'})
    return rows


def test_held_out_split_is_by_product_and_objective_items_are_balanced():
    rows = _rows()
    train_rows, held = split_rows(rows, 0.3, seed=0)
    assert {r["product"] for r in train_rows}.isdisjoint({r["product"] for r in held})
    assert split_rows(rows, 0.3, seed=0) == (train_rows, held) and 0.15 < len(held) / len(rows) < 0.45
    items = objective_items(held, seed=0)
    for task in ("AE", "DD", "PM"):
        labels = [i.reference for i in items if i.task == task]
        assert labels and labels.count("yes") == labels.count("no"), task
    # AE questions: about the item's own attributes, never an unanswerable one; the "no" value is another product's
    ae = [i for i in items if i.task == "AE"]
    assert not any("color" in i.question for i in ae) and any(i.question.startswith("Is the size of this product") for i in ae)
    assert all(i.question.rstrip("?").split(" ")[-2:] != [f"{100 + int(i.product[1:])}", "ml"] for i in ae if i.reference == "no")
    add_examples(items, train_rows, 2, seed=1)
    assert all(len(i.examples) == 2 and all(e["category"] == i.category for e in i.examples) for i in items)
    q = prompt_question(items[0], "objective")
    assert q.startswith("### Example 1 (image [1])") and "### Now image [3]" in q and "Answer in a single word" in q
    assert item_images(items[0])[-1] == items[0].blob_paths[0] and len(item_images(items[0])) == 3
    with pytest.raises(ValueError, match="not among"):
        add_examples(items, train_rows, 0, picked=["nope"])


def test_ablation_grid_and_table():
    grid = ablation.parse_grid(["ocr=on,off", "resolution=native,224", "4bit=on"])
    cells = ablation.cells(grid)
    assert [ablation.label(c) for c in cells] == ["default", "ocr=off", "resolution=224", "4bit=on"]
    assert len(ablation.cells(grid, full=True)) == 5  # the default, then 2 x 2 x 1 combinations with 4-bit on
    settings, adapter_on = ablation.overrides({**ablation.DEFAULTS, "ocr": "off", "adapter": "off"})
    assert settings["ocr"] is False and adapter_on is False
    with pytest.raises(ValueError, match="FACTOR"):
        ablation.parse_grid(["colour=red"])
    with pytest.raises(ValueError, match="resolution takes"):
        ablation.parse_grid(["resolution=999"])
    scores = {t: {"accuracy": a} for t, a in (("AE", 0.5), ("DD", 0.75), ("overall", 0.6))}
    text = ablation.table([
        {"label": "default", "scores": scores, "seconds_per_item": 0.1, "peak_memory_gb": 1.0},
        {"label": "ocr=off", "scores": {**scores, "AE": {"accuracy": 0.25}}, "seconds_per_item": 0.08, "peak_memory_gb": 0.9},
        {"label": "4bit=on", "unavailable": "needs a CUDA GPU"},
    ])
    assert "| ocr=off | 25.0 (-25.0) | 75.0 (+0.0) | - | 60.0 (+0.0) | 0.080 | 0.90 |" in text
    assert "4bit=on (not run: needs a CUDA GPU)" in text
