"""Visual information gain (curation/visual_gain.py) on every VLM family's tiny checkpoint: the per-token
gain equals what two plain forwards give (eager attention, none of the scoring code: the prompt with the
images through the processor, and the same messages without them through the tokenizer), in a padded batch
with several images; the OCR text stays in the blind prompt unless asked; a template that cannot render a
turn without images, or a segment tokenized differently without them, is a per-sample error; and the
command line's JSON carries what anyone needs to redo the arithmetic."""
from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image

from curation import visual_gain
from curation.vis_attn import ATTN_NAME, VisAttnConfig, score_batch
from curation.vlm import Sample, SampleError, chat, load_vlm

from .test_ui_pages import texts, ui_store  # noqa: F401 - ui_store is a fixture
from .test_vlm_families import FAMILY_NAMES, GREEN, RED

TOLERANCE = 1e-4  # float32 (the bound); measured here: under 1e-6 on every family


@pytest.fixture(scope="module")
def loaded():
    return {}


def _pair(loaded, tiny_models, family):
    if family not in loaded:
        loaded[family] = (load_vlm(tiny_models[family], language_model_attention=ATTN_NAME),
                          load_vlm(tiny_models[family], language_model_attention="eager"))
    return loaded[family]


def _reference_gain(reference, encoded, sample: Sample) -> list[float]:
    """Two plain forwards: log p of the answer's tokens with the images (the processor's ids) and without
    them (the same messages with no image part, rendered by the template and tokenized by the tokenizer);
    the answer is found in the blind ids as its own token sequence, last occurrence."""
    answer_ids = [encoded.input_ids[p] for p in encoded.segments["answer"]]
    text = reference._apply(chat.messages(0, sample.question, sample.answer, sample.ocr or ""), False)
    blind_ids = reference.tokenizer(text, add_special_tokens=not text.startswith(reference.tokenizer.bos_token or "\0"))["input_ids"]
    start = max(k for k in range(len(blind_ids) - len(answer_ids) + 1) if blind_ids[k : k + len(answer_ids)] == answer_ids)
    with torch.inference_mode():
        with_image = torch.log_softmax(reference.model(**reference.collate([encoded]), use_cache=False).logits[0].float(), -1)
        without = torch.log_softmax(reference.model(input_ids=torch.tensor([blind_ids]), use_cache=False).logits[0].float(), -1)
    return [float(with_image[p - 1, t] - without[start + k - 1, t]) for k, (p, t) in enumerate(zip(encoded.segments["answer"], answer_ids))]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_gain_is_what_two_plain_forwards_give(loaded, tiny_models, family):
    adapter, reference = _pair(loaded, tiny_models, family)
    two = [RED, GREEN] if (adapter.image_limit or 2) >= 2 else [RED]
    samples = [Sample([RED], "What colour is the bag?", "The bag is red.", "ACME 250 ml"),  # shorter: padded in the batch
               Sample(two, "Compare the two photos.", "The first one is red and the second one is a green box, taller than the first.", None)]
    encoded = [adapter.encode(s) for s in samples]
    assert encoded[0].length != encoded[1].length
    results = score_batch(adapter, encoded, VisAttnConfig(), logprobs=True)
    blinds = [visual_gain.encode_blind(adapter, s) for s in samples]
    found = visual_gain.gains(adapter, results, blinds, "answer")
    for sample, enc, g, res in zip(samples, encoded, found, results):
        want = _reference_gain(reference, enc, sample)
        assert len(g.gain) == len(res.token_scores) == len(want) > 0
        assert max(abs(a - b) for a, b in zip(g.gain, want)) < TOLERANCE
        assert g.metrics()["vis_gain"] == pytest.approx(sum(want) / len(want), abs=TOLERANCE)
        assert g.gain == pytest.approx([w - b for w, b in zip(g.with_logp, g.blind_logp)])
        assert len(g.words) == len(g.word_gain) == len(res.words)
        assert not any(t == adapter.image_token_id for t in g.blind.input_ids)  # no image in the blind prompt
    # the same sample alone: padding in the batch changed nothing
    alone = visual_gain.gains(adapter, score_batch(adapter, encoded[:1], VisAttnConfig(), logprobs=True), blinds[:1], "answer")[0]
    assert alone.gain == pytest.approx(found[0].gain, abs=1e-5)


def test_the_ocr_text_stays_in_the_blind_prompt_unless_asked(loaded, tiny_models):
    adapter, _ = _pair(loaded, tiny_models, "qwen2_vl")
    sample = Sample([RED], "What is the volume?", "It holds 250 ml.", "ACME 250 ml")
    kept, dropped = visual_gain.encode_blind(adapter, sample), visual_gain.encode_blind(adapter, sample, ocr=False)
    decoded = adapter.tokenizer.decode(kept.input_ids)
    assert "ACME 250 ml" in decoded and "ACME" not in adapter.tokenizer.decode(dropped.input_ids)
    assert len(dropped.input_ids) < len(kept.input_ids) and "ocr" in kept.segments and "ocr" not in dropped.segments
    encoded = adapter.encode(sample)
    visual_gain.check_same_tokens(encoded, kept, "answer")
    visual_gain.check_same_tokens(encoded, dropped, "answer")
    result = score_batch(adapter, [encoded], VisAttnConfig(), logprobs=True)
    with_ocr, without_ocr = (visual_gain.gains(adapter, result, [b], "answer")[0] for b in (kept, dropped))
    assert with_ocr.with_logp == without_ocr.with_logp and with_ocr.blind_logp != without_ocr.blind_logp


def test_a_template_without_a_turn_for_no_image_and_a_segment_tokenized_apart_are_per_sample_errors(loaded, tiny_models, monkeypatch):
    adapter, _ = _pair(loaded, tiny_models, "llava")
    sample = Sample([RED], "What is shown?", "A red box.", None)
    original = adapter._apply

    def needs_an_image(messages, add_generation_prompt):
        if not any(part.get("type") == "image" for m in messages for part in (m["content"] if isinstance(m["content"], list) else [])):
            raise chat.TemplateError("chat_template", "this template requires an image in the user turn")
        return original(messages, add_generation_prompt)

    monkeypatch.setattr(adapter, "_apply", needs_an_image)
    adapter.encode(sample)  # with its image: fine
    with pytest.raises(SampleError) as refused:
        visual_gain.encode_blind(adapter, sample)
    assert refused.value.code == "blind_template" and "without its images" in refused.value.message
    monkeypatch.setattr(adapter, "_apply", original)
    encoded, blind = adapter.encode(sample), visual_gain.encode_blind(adapter, sample)
    blind.input_ids[blind.segments["answer"][0]] += 1  # as if the tokenizer had split the answer otherwise
    with pytest.raises(SampleError) as apart:
        visual_gain.check_same_tokens(encoded, blind, "answer")
    assert apart.value.code == "blind_tokens"


def test_the_command_line_json_lets_anyone_redo_the_gain_with_two_plain_forwards(tiny_models, tmp_path, cli):
    image = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)
    folder = tiny_models["idefics3"]
    out = cli("score", "grounding", "--model", str(folder), "--image", str(image), "--question", "What colour?",
              "--answer", "A red bag with a zip.", "--ocr", "SALE", "--json", check=True)
    payload = json.loads(out.stdout)
    assert {"vis_gain", "blind_logp", "with_logp", "blind", "word_gain"} <= set(payload)
    reference = load_vlm(folder, language_model_attention="eager")
    blind_ids, where = payload["blind"]["input_ids"], payload["blind"]["positions"]["segment"]
    with torch.inference_mode():
        without = torch.log_softmax(reference.model(input_ids=torch.tensor([blind_ids]), use_cache=False).logits[0].float(), -1)
    token_ids = [t["id"] for t in payload["tokens"]]
    assert [blind_ids[p] for p in where] == token_ids  # the same tokens, found where the payload says
    redone = [float(without[p - 1, t]) for p, t in zip(where, token_ids)]
    assert [t["blind_logp"] for t in payload["tokens"]] == pytest.approx(redone, abs=TOLERANCE)
    assert [t["gain"] for t in payload["tokens"]] == pytest.approx([t["with_logp"] - b for t, b in zip(payload["tokens"], redone)], abs=TOLERANCE)
    assert payload["vis_gain"] == pytest.approx(sum(t["gain"] for t in payload["tokens"]) / len(token_ids))
    # attention alone: no gain fields; gain without attention: refused, with why
    plain = json.loads(cli("score", "grounding", "--model", str(folder), "--image", str(image), "--answer", "A red bag.", "--signals", "attention",
                           "--json", check=True).stdout)
    assert "vis_gain" not in plain and "gain" not in plain["tokens"][0]
    refused = cli("score", "grounding", "--model", str(folder), "--image", str(image), "--answer", "A red bag.", "--signals", "gain")
    assert refused.returncode != 0 and "attention is always computed" in refused.stderr


def test_inspect_colours_the_answer_by_its_gain_and_gallery_tiles_show_it(ui_store):
    """On the app's store (synthetic values: the pages are under test here): a sample's gain on Inspect, on a
    diverging scale centred at 0, and on its Gallery tile."""
    from datetime import datetime, timezone

    from db.lake import batches
    from ui.heat import gain_colour

    from .test_ui_gallery import _tiles
    from .test_ui_pages import page
    from .ui_store import VIS_MODEL

    home, lake, engine = ui_store
    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12)
    on_page = list(_tiles(at))
    first, words = next((sid, json.loads(w)) for sid in on_page for w in [lake.scalar(
        "SELECT words FROM token_scores WHERE subject_id = ? AND model_id = ? AND segment = 'answer'", [sid, VIS_MODEL])] if w and len(json.loads(w)) >= 3)
    gain = [(-1) ** k * 0.5 * (k + 1) for k in range(len(words))]  # alternating signs, growing
    now = datetime.now(timezone.utc)
    rows = [{"subject_kind": "sample", "subject_id": first, "metric": m, "model_id": VIS_MODEL, "segment": "answer", "value": v, "flags": None,
             "run_id": "gain-ui", "created_at": now} for m, v in (("vis_gain", sum(gain) / len(gain)), ("blind_logp", -4.25), ("with_logp", -3.5),
                                                                  ("judge_yes", 0.875))]
    batches.write_scores(lake, "gain-ui", rows, token_gains=[{
        "subject_kind": "sample", "subject_id": first, "model_id": VIS_MODEL, "segment": "answer", "with_logp": [-1.0] * len(words),
        "blind_logp": [-1.0 - g for g in gain], "gain": gain, "words": words, "word_gain": gain, "blind_input_ids": [], "blind_positions": [],
        "run_id": "gain-ui", "created_at": now}])
    shown = page("inspect", insp_vis=VIS_MODEL, insp_pinned=first)
    assert not shown.exception and shown.query_params["sample"] == first
    blocks = [h.proto.body for h in shown.get("html") if "data-gain" in h.proto.body]
    assert len(blocks) == 1 and "Answer, by visual information gain" in blocks[0]
    values = [float(v) for v in re.findall(r'data-gain="([^"]+)"', blocks[0])]
    assert values == pytest.approx(gain, rel=1e-5)
    spans = re.findall(r'data-gain="[^"]+"[^>]*solid rgb\((\d+),(\d+),(\d+)\)', blocks[0])
    assert [tuple(map(int, c)) for c in spans] == [gain_colour(g) for g in gain]  # each word on the fixed scale
    assert gain_colour(gain[0])[0] < gain_colour(gain[0])[2] and gain_colour(gain[1])[0] > gain_colour(gain[1])[2]  # purple above 0, orange below
    assert f"visual information gain (answer): {sum(gain) / len(gain):+.4g} nats per token" in texts(shown)
    assert "VLM judge: p(yes) = 0.875 that the image shows what the answer says" in texts(shown)
    shown.toggle(key="insp_gain").set_value(False).run()
    assert not [h for h in shown.get("html") if "data-gain" in h.proto.body]
    thresholds = page("thresholds")  # a stat like every other: offered for a cut
    assert not thresholds.exception
    offered = thresholds.multiselect(key="thr_stats").options
    assert any(o.startswith("visual information gain") for o in offered) and any(o.startswith("VLM judge: probability of yes") for o in offered)
    tiles = _tiles(page("gallery", gal_vis=VIS_MODEL, gal_size=12))
    assert f"gain {sum(gain) / len(gain):+.3g} · judge 0.88" in tiles[first] and not any("gain" in t for sid, t in tiles.items() if sid != first)


def test_the_gain_scale_is_fixed_and_centred_at_zero():
    from ui.heat import GAIN_SCALE, GAIN_STOPS, gain_block, gain_colour

    assert gain_colour(0.0) == GAIN_STOPS[3] == (247, 247, 247)
    assert gain_colour(GAIN_SCALE) == gain_colour(50.0) == GAIN_STOPS[-1] and gain_colour(-GAIN_SCALE) == gain_colour(-9.0) == GAIN_STOPS[0]
    html = gain_block(["<b>red</b>", "bag"], [0.3, None])
    assert "&lt;b&gt;red&lt;/b&gt;" in html and "<b>red" not in html and 'title="no gain"' in html and 'title="gain = +0.3 nats"' in html


def test_a_pilot_measures_the_gain_and_the_blind_log_probability_against_its_labels(ui_store):
    from datetime import datetime, timezone

    from curation import pilot_results
    from db.app import pilots
    from db.lake import batches

    from .ui_store import VIS_MODEL

    home, lake, engine = ui_store
    p = pilots.get(engine, "ui-pilot")
    chosen = [x.sample_id for x in pilots.samples(engine, p.id)][:12]
    now = datetime.now(timezone.utc)
    rows = []
    for k, sid in enumerate(chosen):  # the gain tells the labels apart perfectly; blind_logp the other way round
        grounded = k % 2 == 0
        pilots.set_label(engine, p.id, sid, "gain-tester", "grounded" if grounded else "not_grounded")
        rows += [{"subject_kind": "sample", "subject_id": sid, "metric": m, "model_id": VIS_MODEL, "segment": "answer", "value": v, "flags": None,
                  "run_id": "gain-pilot", "created_at": now} for m, v in (("vis_gain", (1.0 if grounded else -1.0) + k / 100),
                                                                            ("blind_logp", (-5.0 if grounded else -1.0) - k / 100))]
    batches.write_scores(lake, "gain-pilot", rows)
    try:
        found = pilot_results.results(lake, engine, "ui-pilot")
        gain, blind = found.report.scores["vis_gain"], found.report.scores["blind_logp"]
        assert (gain.n, gain.auc, blind.n, blind.auc) == (12, 1.0, 12, 0.0)
        assert {"vis_attn", "vis_gain", "blind_logp"} <= set(found.report.scores)
    finally:
        for sid in chosen:
            pilots.clear_label(engine, p.id, sid, "gain-tester")
