"""Every VLM family on its tiny checkpoint: built from the family's own config classes, prompts rendered by
its chat template in the family's published layout, ids and pixel inputs from its own processor (batched as
the processor batches), the label mask exactly the answer and the end-of-turn token, LoRA on each part,
a training run stopped and resumed to the same weights, the objective and attribute benchmarks, and the
single-sample JSON from the command line; bad checkpoints and bad samples get clear errors."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from curation.tiny_models import is_tiny, vlm_families
from curation.vlm import FAMILIES, LoadOptions, Sample, SampleError, UnsupportedModel, adapter_for, load_vlm

from .helpers import lora_run

FAMILY_NAMES = vlm_families()
RED = Image.new("RGB", (96, 64), (200, 30, 30))
GREEN = Image.new("RGB", (32, 40), (20, 130, 30))
BLUE = Image.new("RGB", (60, 60), (30, 40, 200))

# The published conversation layout of each family, for one image, OCR text and a question (the user turn is
# the paper's: the image, a line break, "OCR Tokens: ..." and "###", then the question).
BODY = "{image}\nOCR Tokens: ACME 250 ml\n###\nWhat is shown?"
CHATML = "<|im_start|>user\n" + BODY + "<|im_end|>\n<|im_start|>assistant\n"
EXPECTED_PROMPT = {
    "idefics2": "User:" + BODY.format(image="<image>") + "<end_of_utterance>\nAssistant:",
    "idefics3": "<|im_start|>User:" + BODY.format(image="<image>") + "<end_of_utterance>\nAssistant:",
    "llava": "USER: " + BODY.format(image="<image>") + " ASSISTANT:",
    "llava_onevision": CHATML.format(image="<image>"),
    "qwen2_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + CHATML.format(image="<|vision_start|><|image_pad|><|vision_end|>"),
    "qwen2_5_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + CHATML.format(image="<|vision_start|><|image_pad|><|vision_end|>"),
    "qwen3_vl": CHATML.format(image="<|vision_start|><|image_pad|><|vision_end|>"),
    "gemma3": "<bos><start_of_turn>user\n" + BODY.format(image="<start_of_image>") + "<end_of_turn>\n<start_of_turn>model\n",
    "internvl": CHATML.format(image="<IMG_CONTEXT>\n"),
    "mistral3": "<s>[INST]" + BODY.format(image="[IMG]") + "[/INST]",
}
# what follows the prompt in a training sample: the answer and the turn's end
EXPECTED_ANSWER = {
    "idefics2": " A red box.<end_of_utterance>\n", "idefics3": " A red box.<end_of_utterance>\n", "llava": " A red box.</s>",
    "gemma3": "A red box.<end_of_turn>\n", "mistral3": "A red box.</s>",
}
END_OF_TURN = {"idefics2": "<end_of_utterance>", "idefics3": "<end_of_utterance>", "llava": "</s>", "gemma3": "<end_of_turn>", "mistral3": "</s>"}
SAMPLE = Sample([RED], "What is shown?", "A red box.", "ACME 250 ml")


def test_every_family_of_the_issue_is_registered_with_a_tiny_checkpoint():
    wanted = {"idefics2", "idefics3", "llava", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3", "internvl", "mistral3"}
    assert wanted <= set(FAMILIES) and wanted <= set(FAMILY_NAMES)
    for name, cls in FAMILIES.items():
        assert cls.family == name and cls.model_types and cls.hub_example and set(cls.parts) == {"vision", "connector", "language"}


@pytest.fixture(scope="module")
def adapters(tiny_models):
    return {}


def _adapter(adapters, tiny_models, family, attention="sdpa"):
    key = (family, attention)
    if key not in adapters:
        adapters[key] = load_vlm(tiny_models[family], language_model_attention=attention)
    return adapters[key]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_tiny_checkpoint_is_the_family_built_from_its_own_classes(tiny_models, family):
    folder = tiny_models[family]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] in FAMILIES[family].model_types and adapter_for(folder) is FAMILIES[family] and is_tiny(folder)
    assert (folder / "chat_template.jinja").is_file()  # the processor carries the family's template
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(folder)
    text = model.config.get_text_config()
    assert text.num_key_value_heads < text.num_attention_heads  # grouped KV heads, as the real models have


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_chat_template_renders_the_published_layout(adapters, tiny_models, family):
    adapter = _adapter(adapters, tiny_models, family)
    assert adapter.template_source == "checkpoint"
    prompt = adapter.encode_prompt(SAMPLE)
    assert prompt.text == EXPECTED_PROMPT[family]
    full = adapter.encode(SAMPLE)
    assert full.text == EXPECTED_PROMPT[family] + EXPECTED_ANSWER.get(family, "A red box.<|im_end|>\n")
    # the ids are the processor's own expansion and tokenization of that text
    ids = adapter.processor(text=[full.text], images=[[RED]], add_special_tokens=adapter._adds_bos(full.text))["input_ids"][0]
    assert full.input_ids == [int(i) for i in ids]
    assert adapter.tokenizer.decode([full.input_ids[p] for p in full.segments["question"]]).strip() == "What is shown?"
    assert adapter.tokenizer.decode([full.input_ids[p] for p in full.segments["answer"]]).strip() == "A red box."


@pytest.mark.parametrize("n_images", [1, 3])
def test_training_and_the_exports_lay_a_store_row_out_in_the_same_prompt(adapters, tiny_models, tmp_path, n_images):
    """One layout for the prompts a model is tuned and scored on and those an export gives other trainers:
    numbered images and ``###`` after the image block when there are several, the OCR section closed by ``###``."""
    from curation.exports import ExportSample, user_prompt
    from trainer.data import sample_from_row

    names = [f"im{k}.png" for k in range(n_images)]
    for name, image in zip(names, [RED, GREEN, BLUE]):
        image.save(tmp_path / name)
    row = {"sample_id": "s", "question": "Which box is dented?", "answer": "The second.", "blob_paths": names, "ocr_texts": ["ACME", "", "250 ml"][:n_images]}
    adapter = _adapter(adapters, tiny_models, "idefics2")  # its image placeholder is the exports' <image> tag
    trained = adapter.encode(sample_from_row(row, tmp_path, ocr=True)).text
    exported = user_prompt(ExportSample("s", "damage_detection", row["question"], row["answer"], tuple(names), tuple(row["ocr_texts"])), ocr=True)
    turn = "User:" if n_images == 1 else "User: "  # the IDEFICS2 layout: a space before a turn that starts with text
    assert trained == turn + exported + "<end_of_utterance>\nAssistant: The second.<end_of_utterance>\n"
    assert exported == {1: "<image>\nOCR Tokens: ACME\n###\nWhich box is dented?",
                        3: "[1] <image>\n[2] <image>\n[3] <image>\n###\nOCR Tokens: [1] ACME [3] 250 ml\n###\nWhich box is dented?"}[n_images]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_label_mask_is_the_answer_and_the_end_of_turn_token(adapters, tiny_models, family):
    from trainer.data import IGNORE, make_example

    adapter = _adapter(adapters, tiny_models, family)
    example = make_example(adapter, "s", SAMPLE)
    enc = example.encoded
    kept = [k for k, t in enumerate(example.labels) if t != IGNORE]
    answer = enc.segments["answer"]
    end = END_OF_TURN.get(family, "<|im_end|>")
    assert kept == list(range(answer[0], answer[-1] + 2))  # the answer, then exactly one token: the turn's end
    assert enc.input_ids[kept[-1]] == adapter.tokenizer.convert_tokens_to_ids(end) == adapter.end_of_turn_id
    assert adapter.tokenizer.decode([enc.input_ids[k] for k in kept]).strip() == "A red box." + end
    assert not set(kept) & (set(enc.image_positions) | set(enc.segments["question"]))
    assert adapter.end_of_turn_id in adapter.stop_token_ids()  # generation stops where the turn ends


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_our_batch_is_the_processors_own_batch(adapters, tiny_models, family):
    adapter = _adapter(adapters, tiny_models, family)
    limit = adapter.image_limit or 3
    samples = [Sample([RED, GREEN][:limit], "Compare them.", "The red one is bigger."), Sample([BLUE], "Colour?", "Blue."),
               Sample([GREEN], "What is it?", "A green jar, its lid cracked on one side.")]
    encoded = [adapter.encode(s) for s in samples]
    ours = adapter.collate(encoded)
    theirs = adapter.processor(text=[e.text for e in encoded], images=[s.images for s in samples], padding=True, padding_side="right",
                               return_tensors="pt", add_special_tokens=adapter._adds_bos(encoded[0].text))
    assert torch.equal(ours["input_ids"], theirs["input_ids"]) and torch.equal(ours["attention_mask"], theirs["attention_mask"])
    with torch.inference_mode():
        a = adapter.model(**ours).logits
        b = adapter.model(**{k: v for k, v in theirs.items() if k in adapter._model_inputs or k in ("input_ids", "attention_mask")}).logits
    mask = ours["attention_mask"].bool()
    assert torch.allclose(a[mask], b[mask], atol=1e-5)


def _in_attention(model, name: str) -> bool:
    """Whether a module sits inside an attention block (its class name says so)."""
    parent = name.rsplit(".", 1)[0]
    return type(model.get_submodule(parent)).__name__.endswith("Attention")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_lora_goes_on_each_part_asked_for_and_on_every_attention_projection_there(tiny_models, family):
    from trainer.config import TrainConfig
    from trainer.lora import full_modules, load_for_training, target_modules

    adapter = load_for_training(tiny_models[family], TrainConfig())
    model = adapter.model
    for part in ("vision", "connector", "language"):
        names = target_modules(adapter, model, (part,)) + full_modules(adapter, model, (part,))
        assert names and {adapter.part_of(n) for n in names} == {part}, (part, names[:3])
        if part != "connector":  # every linear layer of every attention block of the part, nothing else
            expected = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and adapter.part_of(n) == part and _in_attention(model, n)}
            assert set(names) == expected, (part, sorted(expected ^ set(names))[:4])
    all_parts = target_modules(adapter, model, ("vision", "connector", "language"))
    assert not any(".mlp." in n and adapter.part_of(n) != "connector" for n in all_parts)


def _examples(adapter, n=4):
    from trainer.data import make_example

    answers = ["A red bottle of shampoo.", "A blue box of cereal.", "A green jar of coffee."]
    images = [RED, BLUE, GREEN]
    return [make_example(adapter, f"s{i}", Sample([images[i % 3]], "What is shown?", answers[i % 3], "SUNVALE 300 ml")) for i in range(n)]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_lora_run_stopped_and_resumed_ends_with_the_same_weights_and_is_evaluated(tiny_models, family, tmp_path):
    from peft import get_peft_model_state_dict

    from trainer.benchmarks import EvalItem
    from trainer.config import LoraSettings, TrainConfig
    from trainer.evaluate import load_for_eval, predict, score_attributes, score_objective
    from trainer.loop import StopTraining, save_final

    config = TrainConfig(batch_size=2, learning_rate=1e-2, lora=LoraSettings(r=4, alpha=8, dropout=0.1), epochs=5, max_steps=3,
                         checkpoint_every=1, warmup_ratio=0.0)

    def run(out, stop_after=None):
        return lora_run(tiny_models[family], config, _examples, out, stop_after)

    whole, a = run(tmp_path / "a")
    with pytest.raises(StopTraining):
        run(tmp_path / "b", stop_after=2)
    resumed, b = run(tmp_path / "b")
    assert (whole.steps, resumed.steps, resumed.resumed_from) == (3, 3, 2) and [log.step for log in resumed.logs] == [3]
    assert resumed.logs[0].loss == pytest.approx(whole.logs[2].loss, abs=1e-6)
    wa, wb = get_peft_model_state_dict(a.model), get_peft_model_state_dict(b.model)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) == 0.0
    final = save_final(b, tmp_path / "b", {"base_model": str(tiny_models[family])})

    # the objective (yes/no) and attribute benchmarks through the tuned model
    for k, im in enumerate((RED, BLUE)):
        im.save(tmp_path / f"{k}.png")
    items = [EvalItem(f"pm{k}", "PM", "Does the photo show a red box?", "yes" if k == 0 else "no", [f"{k}.png"], ["ACME"], "c", f"p{k}")
             for k in range(2)]
    attributes = [EvalItem("ae0", "attribute_extraction", "Extract the attributes as JSON.", '{"Color": "Red"}', ["0.png"], [""], "c", "p0")]
    tuned = load_for_eval(str(tiny_models[family]), adapter_dir=str(final), config=config)
    objective = predict(tuned, items, "objective", tmp_path, ocr=True)
    extracted = predict(tuned, attributes, "attributes", tmp_path, ocr=False)
    assert all(p.error is None and isinstance(p.text, str) for p in objective + extracted), [p.error for p in objective + extracted]
    scores = score_objective(objective)
    assert scores["PM"]["n"] == 2 and 0.0 <= scores["PM"]["accuracy"] <= 1.0
    assert "Color" in score_attributes(extracted)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_single_sample_command_prints_the_same_json_for_every_family(tiny_models, family, tmp_path, cli):
    RED.save(tmp_path / "red.png")
    GREEN.save(tmp_path / "green.png")
    images = ["--image", str(tmp_path / "red.png")] + (["--image", str(tmp_path / "green.png")] if family != "llava" else [])
    out = cli("score", "grounding", "--model", str(tiny_models[family]), *images, "--question", "What is shown?",
                     "--answer", "A leaking shampoo bottle", "--json", "--check")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["family"] == family and data["chat_template"] == "checkpoint" and data["eager_max_abs_diff"] < 1e-5
    ids, positions = data["input_ids"], data["positions"]
    assert [t["id"] for t in data["tokens"]] == [ids[p] for p in positions["segment"]] == [ids[p] for p in positions["answer"]]
    assert data["segment_score"] == pytest.approx(sum(t["score"] for t in data["tokens"]) / len(data["tokens"]))
    assert len(positions["image"]) == data["n_image_tokens"] > 0
    assert [w["text"] for w in data["words"]] == ["A", "leaking", "shampoo", "bottle"]


# ---- bad checkpoints and bad samples ----------------------------------------------------------------------
def test_an_unsupported_family_is_refused_with_the_supported_ones_listed(tmp_path, cli, home):
    folder = tmp_path / "paligemma"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "paligemma"}))
    with pytest.raises(UnsupportedModel, match="no adapter for model type 'paligemma'.*qwen2_5_vl"):
        adapter_for(folder)
    out = cli("score", "grounding", "--model", str(folder))
    assert out.returncode == 2 and "paligemma" in out.stderr and "gemma3" in out.stderr and "Traceback" not in out.stderr


def test_a_checkpoint_without_a_chat_template_gets_the_familys_layout_and_says_so(tiny_models, tmp_path, cli):
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_models["qwen2_5_vl"], folder)
    (folder / "chat_template.jinja").unlink()
    adapter = load_vlm(folder)
    assert adapter.template_source == "fallback:qwen2_5_vl"
    assert adapter.encode(SAMPLE).text == load_vlm(tiny_models["qwen2_5_vl"]).encode(SAMPLE).text  # the documented layout
    RED.save(tmp_path / "red.png")
    out = cli("score", "grounding", "--model", str(folder), "--image", str(tmp_path / "red.png"), "--answer", "Red.", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["chat_template"] == "fallback:qwen2_5_vl"
    assert "has no chat template" in out.stderr and "chat_template.jinja" in out.stderr


def test_a_template_that_drops_the_image_is_a_per_sample_error(tiny_models, tmp_path):
    folder = tmp_path / "blind"
    shutil.copytree(tiny_models["qwen3_vl"], folder)
    # a template that writes only the text parts: the image placeholder never reaches the processor
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(SampleError) as info:
        load_vlm(folder).encode(SAMPLE)
    assert info.value.code == "image_placeholder" and "0 image placeholder(s)" in info.value.message


def test_images_that_expand_past_the_context_are_a_clear_error(tiny_models):
    # IDEFICS3 splits a 96x64 photo into a 4x3 grid of crops plus the whole: 52 image tokens
    adapter = load_vlm(tiny_models["idefics3"], LoadOptions(max_length=40))
    with pytest.raises(SampleError) as info:
        adapter.encode(Sample([RED], "What is shown? " * 5, "A red box.", "ACME " * 10))
    assert info.value.code == "too_long" and "52 image tokens" in info.value.message and "40" in info.value.message
    short = load_vlm(tiny_models["idefics3"], LoadOptions(max_length=130)).encode(Sample([RED], "What is shown? " * 5, "A red box.", "ACME " * 40))
    assert short.truncated and short.length <= 130  # the OCR text was cut, the answer kept


def test_more_images_than_the_family_takes_is_a_per_sample_error_and_the_limit_can_be_set(tiny_models):
    with pytest.raises(SampleError, match="llava takes at most 1 image"):
        load_vlm(tiny_models["llava"]).encode(Sample([RED, GREEN], "Q?", "A."))
    with pytest.raises(SampleError, match="at most 2 image"):
        load_vlm(tiny_models["qwen2_vl"], LoadOptions(max_images=2)).encode(Sample([RED, GREEN, BLUE], "Q?", "A."))


def test_hub_ids_tell_their_family():
    from curation.vlm import family_for_hub_id

    cases = {"Qwen/Qwen2.5-VL-7B-Instruct": "qwen2_5_vl", "Qwen/Qwen2-VL-2B-Instruct": "qwen2_vl", "Qwen/Qwen3-VL-8B-Instruct": "qwen3_vl",
             "google/gemma-3-4b-it": "gemma3", "HuggingFaceTB/SmolVLM-Instruct": "idefics3", "HuggingFaceM4/idefics2-8b": "idefics2",
             "llava-hf/llava-1.5-7b-hf": "llava", "llava-hf/llava-onevision-qwen2-7b-ov-hf": "llava_onevision",
             "OpenGVLab/InternVL3-8B-hf": "internvl", "mistralai/Mistral-Small-3.1-24B-Instruct-2503": "mistral3"}
    assert {k: family_for_hub_id(k).family for k in cases} == cases
    assert family_for_hub_id("bert-base-uncased") is None


def test_smolvlm2_checkpoints_are_served_by_the_idefics3_adapter(tmp_path):
    """SmolVLM2 ships under its own classes (model type smolvlm, a video processor besides the image one)."""
    from curation.tiny_models import make_tiny
    from curation.vis_attn import ATTN_NAME, eager_reference, score_batch

    folder = make_tiny("idefics3", tmp_path / "smolvlm", smolvlm=True)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "smolvlm" and adapter_for(folder) is FAMILIES["idefics3"]
    fast = load_vlm(folder, language_model_attention=ATTN_NAME)
    assert type(fast.processor).__name__ == "SmolVLMProcessor" and fast.encode(SAMPLE).text.startswith("<|im_start|>User:<image>\n")
    encoded = [fast.encode(Sample([RED, GREEN], "Compare them.", "The red one is bigger.")), fast.encode(SAMPLE)]
    results = score_batch(fast, encoded)
    reference = eager_reference(load_vlm(folder, language_model_attention="eager"), encoded)
    assert max(abs(s - ref[p]) for r, ref in zip(results, reference) for s, p in zip(r.token_scores, r.positions["segment"])) < 1e-5


def test_the_families_command_lists_what_is_supported(cli, tmp_path):
    listed = json.loads(cli("models", "families", "--json", check=True).stdout)
    assert [r["family"] for r in listed] == sorted(FAMILIES) and all(r["tiny"] for r in listed)
    qwen = next(r for r in listed if r["family"] == "qwen2_5_vl")
    assert qwen["model_types"] == ["qwen2_5_vl"] and qwen["llamafactory_template"] == "qwen2_vl" and qwen["example"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    table = cli("models", "families", check=True).stdout
    assert "IDEFICS3 / SmolVLM" in table and "mistralai/Mistral-Small-3.1-24B-Instruct-2503" in table
    made = cli("models", "make-tiny", "--family", "internvl", "--out", str(tmp_path / "internvl"), check=True)
    assert "internvl tiny checkpoint" in made.stdout and adapter_for(tmp_path / "internvl") is FAMILIES["internvl"]
