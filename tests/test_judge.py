"""The VLM judge (curation/judge.py) on every family's tiny checkpoint: its p(yes) is what a plain eager
forward of the same conversation gives at its last position, in a padded batch with several images; the
judge's turn after the answer changes neither A(t) nor the answer's log-probabilities (attention is causal);
a model that cannot spell yes or no in one token is refused with why; the command line says the verdict."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from curation import judge
from curation.vis_attn import ATTN_NAME, VisAttnConfig, score_batch
from curation.vlm import Sample, SampleError, answer_tokens, load_vlm

from .test_vlm_families import FAMILY_NAMES, GREEN, RED


@pytest.fixture(scope="module")
def loaded():
    return {}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_verdict_is_a_plain_forwards_and_the_turn_after_the_answer_changes_nothing_before_it(loaded, tiny_models, family):
    if family not in loaded:
        loaded[family] = (load_vlm(tiny_models[family], language_model_attention=ATTN_NAME),
                          load_vlm(tiny_models[family], language_model_attention="eager"))
    adapter, reference = loaded[family]
    tokens = judge.judge_tokens(adapter)
    assert len(tokens.yes) >= 1 and len(tokens.no) >= 1 and not set(tokens.yes) & set(tokens.no)
    spelled = lambda ids: sorted(adapter.tokenizer.decode([t]).strip() for t in ids)  # noqa: E731
    assert spelled(tokens.yes) == ["Yes", "yes"] and spelled(tokens.no) == ["No", "no"]
    two = [RED, GREEN] if (adapter.image_limit or 2) >= 2 else [RED]
    samples = [Sample([RED], "What colour is the bag?", "The bag is red.", "ACME"),
               Sample(two, "Compare the two photos.", "The first one is red and the second one is a green box.", None)]
    plain = [adapter.encode(s) for s in samples]
    asked = [adapter.encode(s, follow_up=judge.JUDGE_QUESTION) for s in samples]
    assert all(a.length > p.length and a.input_ids[: p.length - 2] == p.input_ids[: p.length - 2] for a, p in zip(asked, plain))
    without = score_batch(adapter, plain, VisAttnConfig(), logprobs=True)
    with_turn = score_batch(adapter, asked, VisAttnConfig(), logprobs=True, judge=tokens)
    for a, b, enc in zip(without, with_turn, asked):
        assert b.token_scores == pytest.approx(a.token_scores, abs=1e-6) and b.token_logp == pytest.approx(a.token_logp, abs=1e-5)
        with torch.inference_mode():
            probs = torch.softmax(reference.model(**reference.collate([enc]), use_cache=False).logits[0, -1].float(), -1)
        p_yes, p_no = float(probs[list(tokens.yes)].sum()), float(probs[list(tokens.no)].sum())
        assert b.judge_yes == pytest.approx(p_yes / (p_yes + p_no), abs=1e-4) and b.judge_mass == pytest.approx(p_yes + p_no, rel=1e-3)
        assert enc.notes["follow_up_at"] == enc.length - 1
    with pytest.raises(ValueError, match="judge's turn"):
        score_batch(adapter, plain, VisAttnConfig(), judge=tokens)


def test_a_reply_the_tokenizer_splits_is_refused_with_why(tiny_models, monkeypatch):
    adapter = load_vlm(tiny_models["qwen2_vl"], language_model_attention=ATTN_NAME)
    monkeypatch.setattr(answer_tokens, "ANSWER_SPELLINGS", {"yes": ("Yes-indeed-certainly",), "no": ("No", "no")})
    with pytest.raises(SampleError) as refused:
        judge.judge_tokens(adapter)
    assert refused.value.code == "judge_token" and "'Yes-indeed-certainly' as" in refused.value.message and "not one" in refused.value.message


def test_the_command_line_says_the_verdict(tiny_models, tmp_path, cli):
    image = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)
    args = ("score", "grounding", "--model", str(tiny_models["llava"]), "--image", str(image), "--question", "What colour?", "--answer", "A red bag.")
    payload = json.loads(cli(*args, "--json", check=True).stdout)
    verdict = payload["judge"]
    assert 0.0 < payload["judge_yes"] == verdict["yes"] < 1.0 and 0.0 < verdict["mass"] <= 1.0
    assert verdict["question"] == judge.JUDGE_QUESTION and verdict["version"] == judge.JUDGE_VERSION
    assert verdict["position"] == len(payload["input_ids"]) - 1
    assert "VLM judge, p(yes)" in cli(*args, check=True).stdout
    assert "judge" not in json.loads(cli(*args, "--signals", "attention,gain", "--json", check=True).stdout)
