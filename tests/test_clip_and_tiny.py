"""CLIPScore's batched pipeline and the tiny checkpoints."""
import hashlib
import io

import pytest
from PIL import Image

from curation.clip_score import ClipConfig, ClipScorer, Timing, item_text, reduce_scores
from curation.tiny_models import is_tiny, make_tiny

from .helpers import label_image


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40 + color[0] % 20, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def test_tiny_checkpoints_load_with_the_libraries_own_loaders(tiny_models):
    import open_clip
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    for family in ("idefics2", "llava"):
        model = AutoModelForImageTextToText.from_pretrained(tiny_models[family])
        processor = AutoProcessor.from_pretrained(tiny_models[family])
        assert model.config.model_type == family and "<image>" in processor.tokenizer.get_vocab()
        assert is_tiny(tiny_models[family])
    lm = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    assert lm.config.model_type == "llama" and tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_models['clip']}")
    assert model.visual.image_size == (32, 32)


def test_tiny_checkpoints_are_deterministic(tmp_path, tiny_models):
    again = make_tiny("idefics2", tmp_path / "again")
    digest = lambda p: hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest(again) == digest(tiny_models["idefics2"])
    assert (again / "tokenizer.json").read_text() == (tiny_models["idefics2"] / "tokenizer.json").read_text()
    with pytest.raises(ValueError, match="unknown family"):
        make_tiny("gpt5", tmp_path / "x")


def test_batched_clip_equals_one_by_one_and_bad_images_are_flagged(tiny_models):
    scorer = ClipScorer(ClipConfig(model=str(tiny_models["clip"]), batch_size=4, decode_threads=2))
    assert scorer.model_id.startswith("local-dir:")
    images = [_png((i * 40 % 255, 255 - i * 30 % 255, i * 7 % 255)) for i in range(9)] + [label_image("ACME")]
    texts = [f"a product photo number {i}" for i in range(10)]
    pairs = list(zip(images, texts))
    pairs.insert(3, (b"not an image", "broken"))
    timing = Timing()
    batched = scorer.score_pairs(pairs, timing)
    assert batched[3].error and batched[3].score is None
    rest = [r for i, r in enumerate(batched) if i != 3]
    single = [scorer.score_one(img, txt) for img, txt in zip(images, texts)]
    for a, b in zip(rest, single):
        assert a.cosine == pytest.approx(b.cosine, abs=1e-5)
        assert a.score == pytest.approx(100 * max(b.cosine, 0), abs=1e-4)
    assert timing.pairs == 11 and 0 < timing.forward <= timing.total
    long = scorer.score_pairs([(images[0], "word " * 100)])[0]
    assert long.truncated and not rest[0].truncated


def test_reductions_and_item_text():
    assert reduce_scores([10.0, None, 30.0], "mean") == 20.0
    assert reduce_scores([10.0, 30.0], "max") == 30.0 and reduce_scores([10.0, 30.0], "min") == 10.0
    assert reduce_scores([None], "mean") is None
    assert item_text({"title": "", "description": None, "feedback_text": "It leaked"}) == "It leaked"
    with pytest.raises(ValueError):
        ClipConfig(reduce="median")


def test_make_tiny_command(tmp_path, cli):
    out = cli("models", "make-tiny", "--family", "clip", "--out", str(tmp_path / "clip"), check=True)
    assert "scores mean nothing" in out.stdout
    assert (tmp_path / "clip" / "open_clip_config.json").exists()


def test_text_with_a_token_that_is_id_zero_scores_the_same_batched(tiny_models):
    scorer = ClipScorer(ClipConfig(model=str(tiny_models["clip"]), batch_size=8))
    image = _png((200, 10, 10))
    texts = ["Sale!$ price", "Sale!$ price!( now!/ 50%", "plain words"]
    batched = scorer.score_pairs([(image, t) for t in texts])
    for result, text in zip(batched, texts):
        assert result.cosine == pytest.approx(scorer.score_one(image, text).cosine, abs=1e-5)


def test_clip_job_params_carry_an_absolute_model_path(tiny_models, tmp_path, monkeypatch):
    from jobs.clip_score import ClipScoreJob

    monkeypatch.chdir(tiny_models["clip"].parent)
    params = ClipScoreJob(ClipConfig(model="clip")).params()
    assert params["config"]["model"] == f"local-dir:{tiny_models['clip']}" == params["model_id"]
    assert params["demo_model"] is True
