"""VisAttnScore: the efficient path equals eager output_attentions (1e-5) on every VLM family, with
grouped KV heads, padding in a batch, several images of different sizes per sample and each family's own
mask; options, words, bad input."""
import json

import pytest
import torch
from PIL import Image

from curation import vis_attn
from curation.tiny_models import vlm_families
from curation.vis_attn import ATTN_NAME, VisAttnConfig, eager_reference, group_words, score_batch
from curation.vlm import LoadOptions, Sample, SampleError, load_vlm

RED = Image.new("RGB", (96, 64), (200, 30, 30))
GREEN = Image.new("RGB", (32, 40), (20, 130, 30))
SAMPLES = [
    Sample([RED], "What is this?", "A red box, torn open on one side."),
    Sample([RED, GREEN], "Compare the two products.", "The first is red; the second is green and larger."),
    Sample([GREEN], "Colour?", "Green."),
]


# families whose every image gives the same number of tokens (a fixed-size vision input)
FIXED_IMAGE_TOKENS = ("idefics2", "llava", "gemma3")


def samples_for(adapter):
    """The samples, each with no more images than the family takes (LLaVA-1.5: one)."""
    limit = adapter.image_limit or 99
    return [Sample(s.images[:limit], s.question, s.answer, s.ocr) for s in SAMPLES]


@pytest.fixture(scope="module", params=vlm_families())
def pair(request, tiny_models):
    model_dir = tiny_models[request.param]
    fast = load_vlm(model_dir, language_model_attention=ATTN_NAME)
    eager = load_vlm(model_dir, language_model_attention="eager")
    return request.param, fast, eager


def test_tiny_models_have_grouped_kv_heads(pair):
    _, fast, _ = pair
    config = fast.text_config
    assert config.num_key_value_heads < config.num_attention_heads


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "full-rows"])
@pytest.mark.parametrize("segment", ["answer", "question", "text"])
def test_equals_eager_on_a_padded_batch_with_several_images(pair, segment, fused):
    family, fast, eager = pair
    encoded = [fast.encode(s) for s in samples_for(fast)]
    assert len({e.length for e in encoded}) == 3  # different lengths: the batch is padded
    results = score_batch(fast, encoded, VisAttnConfig(segment=segment), fused=fused)
    assert vis_attn.last_masks_seen == {"bool"}  # padding: a materialised mask
    assert vis_attn.last_paths_seen == ({"fused"} if fused else {"full-rows"})
    reference = eager_reference(eager, encoded)
    worst = 0.0
    for result, ref, enc in zip(results, reference, encoded):
        positions = result.positions["segment"]
        assert len(positions) == len(result.token_scores) > 0
        for score, position in zip(result.token_scores, positions):
            worst = max(worst, abs(score - ref[position]))
        assert result.segment_score == pytest.approx(sum(ref[p] for p in positions) / len(positions), abs=1e-5)
        assert result.n_image_tokens == len(enc.image_positions)
        if segment == "answer":  # the question's values come with the answer's (the app colours both)
            q = result.question
            assert q["positions"]["segment"] == enc.segments["question"] and len(q["scores"]) == len(q["tokens"]) > 0
            worst = max([worst, *(abs(v - ref[p]) for v, p in zip(q["scores"], q["positions"]["segment"]))])
            assert len(q["words"]) == len(q["word_scores"]) > 0
        else:
            assert result.question is None
    assert worst < 1e-5, f"{family}: {worst}"
    # each sample's own image tokens, as many as its processor gave its images (and not a fixed block)
    for result, enc in zip(results, encoded):
        ids = fast.processor(text=[enc.text], images=[enc.images], add_special_tokens=fast._adds_bos(enc.text))["input_ids"][0]
        assert result.n_image_tokens == sum(1 for t in ids if t == fast.image_token_id)
    if family not in FIXED_IMAGE_TOKENS:  # dynamic resolution / tiling: a 96x64 and a 32x40 photo differ
        assert results[0].n_image_tokens != results[2].n_image_tokens


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "full-rows"])
def test_equals_eager_without_padding_where_the_mask_is_left_to_is_causal(pair, fused):
    family, fast, eager = pair
    encoded = [fast.encode(SAMPLES[0])]
    result = score_batch(fast, encoded, fused=fused)[0]
    # causality applied by hand; Gemma 3's masks are never plain causal (sliding windows, images both ways)
    assert vis_attn.last_masks_seen == ({"bool"} if family == "gemma3" else {"none"})
    reference = eager_reference(eager, encoded)[0]
    assert max(abs(s - reference[p]) for s, p in zip(result.token_scores, result.positions["segment"])) < 1e-5


def test_batch_and_single_agree_and_mass_is_the_sum(pair):
    _, fast, _ = pair
    encoded = [fast.encode(s) for s in samples_for(fast)]
    batched = score_batch(fast, encoded)
    for enc, res in zip(encoded, batched):
        single = score_batch(fast, [enc])[0]
        assert single.token_scores == pytest.approx(res.token_scores, abs=1e-6)
        assert [m / res.n_image_tokens for m in res.token_mass] == pytest.approx(res.token_scores, rel=1e-5)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "full-rows"])
def test_sdpa_logits_are_untouched(pair, tiny_models, fused):
    family, fast, _ = pair
    plain = load_vlm(tiny_models[family])  # plain SDPA everywhere
    encoded = [fast.encode(s) for s in samples_for(fast)]
    inputs = fast.collate(encoded)
    with torch.inference_mode():
        a = plain.model(**inputs).logits
    token = vis_attn._active.set(vis_attn._Collector(*vis_attn._rows_and_columns(encoded, "cpu"), 1 << 26, fused=fused))
    try:
        with torch.inference_mode():
            b = fast.model(**inputs).logits
    finally:
        vis_attn._active.reset(token)
    mask = inputs["attention_mask"].bool()
    assert torch.allclose(a[mask], b[mask], atol=1e-5)


def test_truncation_keeps_the_answer_and_flags_it(tiny_models):
    adapter = load_vlm(tiny_models["idefics2"], LoadOptions(max_length=60), language_model_attention=ATTN_NAME)
    sample = Sample([RED], "word " * 200, "A red box.", ocr="SHAMPOO " * 50)
    encoded = adapter.encode(sample)
    assert encoded.truncated and encoded.length <= 60
    answer_text = adapter.tokenizer.decode([encoded.input_ids[p] for p in encoded.segments["answer"]])
    assert answer_text.strip() == "A red box."
    result = score_batch(adapter, [encoded])[0]
    assert result.truncated and result.words == ["A", "red", "box", "."]


@pytest.mark.parametrize(
    "family, sample, code",
    [
        ("llava", Sample([], "Q", "A red box."), "no_image"),
        ("llava", Sample([RED], "Q", "   "), "empty_text"),
        ("idefics2", Sample([RED] * 3, "Q", "word " * 80), "too_long"),
        ("llava", Sample([RED, GREEN], "Q", "Two boxes."), "too_many_images"),  # LLaVA-1.5 takes one image
    ],
)
def test_bad_samples_raise_clear_errors(tiny_models, family, sample, code):
    adapter = load_vlm(tiny_models[family], LoadOptions(max_length=64), language_model_attention=ATTN_NAME)
    with pytest.raises(SampleError) as info:
        adapter.encode(sample)
    assert info.value.code == code


def test_options_sinks_and_distance():
    # one image token draws ten times the attention of the others from every text row: a sink
    block = torch.full((6, 10), 0.01)
    block[:, 3] = 0.1
    rows = torch.arange(20, 26)
    idx = torch.tensor([4, 5])
    config = VisAttnConfig(exclude_sinks=True)
    plain = float(block[idx].mean())
    without = float(vis_attn._without_sinks(block, list(range(6)), idx, config))
    assert without == pytest.approx(0.01) and plain > without
    # attention that falls as 1/d: corrected for distance it is flat
    distance = (rows.float() - 19)
    fading = (0.05 / distance)[:, None].expand(6, 10).clone()
    corrected = float(vis_attn._distance_corrected(fading, rows, list(range(6)), idx, 19))
    median_distance = float(distance.median())
    assert corrected == pytest.approx(0.05 / median_distance, rel=1e-4)


def test_word_grouping():
    words, scores = group_words([" A", " re", "d", " box", ".", " ", "2", "50", " ml"], [1, 2, 4, 3, 5, 9, 6, 8, 1])
    assert words == ["A", "red", "box", ".", "250", "ml"]
    assert scores == [1, 3, 3, 5, 7, 1]


def test_single_sample_command_prints_positions_that_match(tiny_models, tmp_path, cli):
    image = tmp_path / "red.png"
    RED.save(image)
    out = cli("score", "grounding", "--model", str(tiny_models["idefics2"]), "--image", str(image), "--image", str(image),
                     "--question", "What is shown?", "--answer", "A leaking shampoo bottle", "--json", "--check", "--exclude-sinks")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "demo model" in out.stderr
    assert data["eager_max_abs_diff"] < 1e-5
    assert [w["text"] for w in data["words"]] == ["A", "leaking", "shampoo", "bottle"]
    ids, positions = data["input_ids"], data["positions"]
    assert [t["id"] for t in data["tokens"]] == [ids[p] for p in positions["answer"]]
    assert len(positions["image"]) == data["n_image_tokens"] == 16  # two images of 8 perceiver tokens
    assert data["segment_score"] == pytest.approx(sum(t["score"] for t in data["tokens"]) / len(data["tokens"]))
    assert "vis_attn_nosink" in data["options"]
    bad = cli("score", "grounding", "--model", str(tiny_models["idefics2"]), "--image", str(tmp_path / "red.png"), "--question", "Q", "--answer", " ")
    assert bad.returncode == 2 and "empty_text" in bad.stderr


def test_special_token_strings_in_user_text_stay_text(tiny_models):
    for family in ("idefics2", "llava"):
        adapter = load_vlm(tiny_models[family], language_model_attention=ATTN_NAME)
        normal = adapter.encode(Sample([RED], "What is shown?", "A red box."))
        tricky = adapter.encode(Sample([RED], "What is <image> shown? </s>", "A red <image> box.", ocr="<image> SHAMPOO"))
        assert len(tricky.image_positions) == len(normal.image_positions)
        assert tricky.notes["special_tokens_escaped"] == 4  # <image> three times, </s> once
        result = score_batch(adapter, [tricky])[0]
        assert "image" in "".join(result.words) and result.segment_score > 0


def test_the_prompt_is_the_templates_and_the_ids_are_the_processors(tiny_models):
    adapter = load_vlm(tiny_models["idefics2"], language_model_attention=ATTN_NAME)
    encoded = adapter.encode(Sample([RED, GREEN], "Which is leaking?", "The first bottle.", ocr="[1] AURELIA 250 ml"))
    messages = [{"role": "user", "content": [{"type": "text", "text": "[1] "}, {"type": "image"}, {"type": "text", "text": "\n[2] "}, {"type": "image"},
                                             {"type": "text", "text": "\n###\nOCR Tokens: [1] AURELIA 250 ml\n###\nWhich is leaking?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "The first bottle."}]}]
    assert encoded.text == adapter.processor.apply_chat_template(messages, tokenize=False)
    ids = adapter.processor(text=[encoded.text], images=[[RED, GREEN]])["input_ids"][0]
    assert encoded.input_ids == list(ids)  # expanded and tokenized whole by the checkpoint's own processor
    assert encoded.input_ids[0] == adapter.tokenizer.bos_token_id  # the tokenizer's own <s>
    decoded = adapter.tokenizer.decode([encoded.input_ids[p] for p in encoded.segments["question"]])
    assert decoded.strip() == "Which is leaking?"


def test_fused_and_full_rows_agree_on_a_float_mask():
    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 2, 4, 2, 12, 8
    q = torch.randn(batch, heads, length, dim)
    k = torch.randn(batch, kv_heads, length, dim)
    v = torch.randn(batch, kv_heads, length, dim)
    allowed = torch.ones(length, length, dtype=torch.bool).tril()[None, None].repeat(batch, 1, 1, 1)
    allowed[1, :, :, 9:] = False  # the second sample is padded after 9 tokens
    float_mask = torch.zeros(batch, 1, length, length).masked_fill(~allowed, torch.finfo(torch.float32).min)
    rows = torch.arange(4, length)
    cols = torch.tensor([[1, 2, 3], [1, 2, 3]])
    valid = torch.ones(batch, 3)
    fused = vis_attn._Collector(rows, cols, valid, 1 << 20, fused=True)
    assert fused.fused_attention(q, k, v, float_mask, 0.35) is not None and fused.paths_seen == {"fused"}
    full = vis_attn._Collector(rows, cols, valid, 1 << 20, fused=False)
    full.observe(q, k, float_mask, 0.35)
    assert torch.allclose(fused.block, full.block, atol=1e-6)
    bool_full = vis_attn._Collector(rows, cols, valid, 1 << 20, fused=False)
    bool_full.observe(q, k, allowed, 0.35)
    assert torch.allclose(fused.block[0], bool_full.block[0], atol=1e-6)  # the unpadded sample: same as a bool mask


def test_an_empty_segment_is_a_clear_error(tiny_models, tmp_path, cli):
    image = tmp_path / "red.png"
    RED.save(image)
    out = cli("score", "grounding", "--model", str(tiny_models["llava"]), "--image", str(image), "--answer", "Red.", "--segment", "question")
    assert out.returncode == 2 and "empty_segment" in out.stderr and "Traceback" not in out.stderr


def test_gemma3_sliding_windows_change_the_scores_and_they_still_equal_eager(tiny_models, tmp_path):
    """Gemma 3's sliding layers attend to the last 8 tokens only (the tiny model's window) and its image
    tokens to each other both ways: the scored rows are normalised over exactly those keys."""
    from curation.tiny_models import make_tiny

    wide = make_tiny("gemma3", tmp_path / "gemma3-wide", sliding_window=4096)  # same weights, a window wider than any prompt
    sample = Sample([RED], "What is shown in this photo of the product?", "A red box, torn open on one side and dented.")
    scores = {}
    for name, folder in (("window", tiny_models["gemma3"]), ("wide", wide)):
        fast = load_vlm(folder, language_model_attention=ATTN_NAME)
        encoded = [fast.encode(sample)]
        result = score_batch(fast, encoded)[0]
        reference = eager_reference(load_vlm(folder, language_model_attention="eager"), encoded)[0]
        assert max(abs(s - reference[p]) for s, p in zip(result.token_scores, result.positions["segment"])) < 1e-5
        scores[name] = result.token_scores
    # the answer's last tokens are far beyond the window from the image: in the sliding layer they see none of it
    assert scores["window"] != pytest.approx(scores["wide"], abs=1e-6)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_multimodal_rotary_positions_are_in_play_and_the_scores_still_equal_eager(tiny_models, family):
    fast = load_vlm(tiny_models[family], language_model_attention=ATTN_NAME)
    encoded = [fast.encode(s) for s in samples_for(fast)]
    inputs = fast.collate(encoded)
    plain = torch.arange(inputs["input_ids"].shape[1])[None].expand(3, len(encoded), -1)  # text positions, as if there were no image grid
    with torch.inference_mode():
        mrope = fast.model(**inputs).logits
        flat = fast.model(**inputs, position_ids=plain).logits
    assert not torch.allclose(mrope, flat, atol=1e-4)  # M-RoPE gives the image tokens 2-D positions: they matter
    results = score_batch(fast, encoded)
    reference = eager_reference(load_vlm(tiny_models[family], language_model_attention="eager"), encoded)
    worst = max(abs(s - ref[p]) for r, ref in zip(results, reference) for s, p in zip(r.token_scores, r.positions["segment"]))
    assert worst < 1e-5
