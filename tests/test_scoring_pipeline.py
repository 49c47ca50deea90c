"""CLIPScore, VisAttnScore and OCR stats store-wide, as jobs through the broker (gpu and cpu queues), their units
run by the workers' own task in this process (tests/inprocess.py), the commands through click's CliRunner."""
import json
import re

import numpy as np
import pytest

from config.settings import load_settings
from curation import judge
from curation.mapping import ColumnMapping
from db.reads import embedding_reads, queries
from db.store import open_store
from jobs.ingest import IngestJob
from jobs.submit import submit_job
from vitpro.demo_data import write_demo_data

from .conftest import wait_job

pytestmark = pytest.mark.slow


def test_scores_run_store_wide_and_percentiles_are_queryable(home, inprocess_worker, tiny_models, tmp_path, cli):
    inprocess_worker("cpu,gpu")
    data = tmp_path / "demo"
    write_demo_data(data, products=6, complaints=8)
    for source, mapping in (("catalog.csv", "catalog.yaml"), ("complaints.jsonl", "complaints.yaml")):
        params = IngestJob(source=str(data / source), format=None, mapping=ColumnMapping.from_yaml(data / mapping), name=source, image_root=str(data), redact=True).params()
        assert wait_job(submit_job("ingest", params)).status == "succeeded"
    lake = open_store(load_settings().store)
    n_items = lake.scalar("SELECT count(*) FROM items WHERE n_images > 0")
    assert n_items == 14
    # a photo damaged on disk after ingest: grounding flags that item, the rest go on
    broken = lake.fetchone("SELECT item_id, blob_path FROM images ORDER BY item_id LIMIT 1")
    (home / "blobs" / broken[1]).write_bytes(b"\xff\xd8 broken")

    cli("ocr", check=True)
    assert "rows_written" in cli("score", "aux", check=True).stdout
    out = cli("score", "clip", "--model", str(tiny_models["clip"]), "--batch-size", "4", check=True)
    assert "demo model" in out.stderr and "items_scored 14" in out.stdout and "images_failed 1" in out.stdout
    # each readable image content's CLIP vector is stored beside the scores, L2-normalised
    clip_id = lake.scalar("SELECT DISTINCT model_id FROM scores WHERE metric = 'clip_score'")
    broken_sha = lake.scalar("SELECT sha256 FROM images WHERE blob_path = ?", [broken[1]])
    shas, vectors = embedding_reads.embeddings(lake, clip_id)
    assert shas == [r[0] for r in lake.fetchall("SELECT DISTINCT sha256 FROM images WHERE sha256 <> ? ORDER BY 1", [broken_sha])]
    assert vectors.dtype == np.float32 and vectors.shape[1] > 0 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # a store scored before vectors were stored gets them on the next run, its scores untouched; the broken image is not retried
    rows_before = lake.scalar("SELECT count(*) FROM scores WHERE model_id = ?", [clip_id])
    lake.execute("DELETE FROM image_embeddings WHERE sha256 IN (SELECT sha256 FROM image_embeddings ORDER BY sha256 LIMIT 3)")
    again = cli("score", "clip", "--model", str(tiny_models["clip"]), "--batch-size", "4", check=True).stdout
    assert "images_embedded 3" in again and lake.scalar("SELECT count(*) FROM scores WHERE model_id = ?", [clip_id]) == rows_before
    assert embedding_reads.embeddings(lake, clip_id)[0] == shas
    assert "items_to_score 0" in cli("score", "clip", "--model", str(tiny_models["clip"]), check=True).stdout
    out = cli("score", "grounding", "--on", "items", "--model", str(tiny_models["idefics2"]), "--batch-size", "3", check=True)
    assert "items_scored 13" in out.stdout and "items_failed 1" in out.stdout
    assert lake.scalar("SELECT count(*) FROM scores WHERE metric = 'vis_attn_nosink'") == 0
    # asking for the option scores later scores the items again and adds only what is missing
    out = cli("score", "grounding", "--on", "items", "--model", str(tiny_models["idefics2"]), "--batch-size", "3", "--exclude-sinks", "--distance-correction", check=True)
    assert "items_to_score 14" in out.stdout and "items_scored 13" in out.stdout

    per_metric = dict(lake.fetchall("SELECT metric, count(value) FROM scores WHERE subject_kind = 'item' GROUP BY metric"))
    assert per_metric["vis_attn"] == per_metric["vis_attn_mass"] == per_metric["vis_attn_nosink"] == per_metric["vis_attn_dist"] == 13
    # the visual information gain came with the first run (--signals attention,gain is the default): per token
    # beside A(t), the same tokens in the same order, and its means as metrics
    assert per_metric["vis_gain"] == per_metric["blind_logp"] == per_metric["with_logp"] == per_metric["judge_yes"] == 13
    versions = lake.fetchall("SELECT DISTINCT flags->>'judge_version' FROM scores WHERE metric = 'judge_yes' AND value IS NOT NULL")
    assert versions == [(judge.JUDGE_VERSION,)]
    assert lake.scalar("SELECT min(value) > 0 AND max(value) < 1 FROM scores WHERE metric = 'judge_yes'")
    assert lake.scalar("SELECT count(*) FROM token_gains") == 13
    for subject, with_logp, blind_logp, gain, tokens, vis_gain in lake.fetchall(
            "SELECT g.subject_id, g.with_logp, g.blind_logp, g.gain, t.tokens, s.value FROM token_gains g "
            "JOIN token_scores t USING (subject_kind, subject_id, model_id, segment) "
            "JOIN scores s ON s.subject_id = g.subject_id AND s.model_id = g.model_id AND s.segment = g.segment AND s.metric = 'vis_gain'"):
        with_logp, blind_logp, gain = json.loads(with_logp), json.loads(blind_logp), json.loads(gain)
        assert len(gain) == len(json.loads(tokens)) > 0 and all(w <= 0 and b <= 0 for w, b in zip(with_logp, blind_logp))
        assert gain == pytest.approx([w - b for w, b in zip(with_logp, blind_logp)]) and vis_gain == pytest.approx(sum(gain) / len(gain))
    assert lake.fetchone("SELECT value, flags->>'error' FROM scores WHERE subject_id = ? AND metric = 'vis_gain'", [broken[0]]) == (None, "image_unreadable")
    assert per_metric["clip_score"] == 13  # the item whose only photo is broken has no readable image
    assert lake.scalar("SELECT count(*) FROM token_scores") == 13
    failed = lake.fetchone("SELECT value, flags->>'error' FROM scores WHERE subject_id = ? AND metric = 'vis_attn'", [broken[0]])
    assert failed == (None, "image_unreadable")
    # one error row per run that tried it (the second run asked for option scores it could not give)
    assert lake.scalar("SELECT count(*) FROM errors WHERE stage = 'grounding' AND item_id = ?", [broken[0]]) == 2
    demo_flags = lake.scalar("SELECT count(*) FROM scores WHERE metric = 'vis_attn' AND (flags->>'demo_model')::BOOLEAN")
    assert demo_flags == 14
    words, scores = lake.fetchone("SELECT words, word_scores FROM token_scores LIMIT 1")
    assert len(json.loads(words)) == len(json.loads(scores)) > 0
    # every image OCR could read (the broken one it could not) has its OCR stats
    assert lake.scalar("SELECT count(*) FROM scores WHERE metric = 'ocr_chars'") == lake.scalar(
        "SELECT count(*) FROM images WHERE sha256 IN (SELECT sha256 FROM ocr)"
    ) == 13

    # nothing new to score the second time
    again = cli("score", "grounding", "--on", "items", "--model", str(tiny_models["idefics2"]), check=True)
    assert "items_to_score 0" in again.stdout
    assert lake.scalar("SELECT count(*) FROM scores WHERE metric = 'vis_attn'") == 14

    summary = cli("score", "summary", check=True).stdout
    for metric in ("clip_score", "vis_attn", "vis_attn_mass", "ocr_chars", "text_tokens"):
        assert metric in summary
    lo, hi = lake.fetchone("SELECT min(value), max(value) FROM scores WHERE metric = 'vis_attn'")
    line = cli("score", "threshold", "--metric", "vis_attn", "--percentile", "25", check=True).stdout
    value = float(re.search(r": ([0-9.e-]+)$", line.strip()).group(1))
    assert lo <= value <= hi and "of 13 value(s)" in line
    assert queries.score_threshold(lake, "vis_attn", 0, segment="answer")[0] == pytest.approx(lo)
    assert queries.score_threshold(lake, "vis_attn", 100, segment="answer")[0] == pytest.approx(hi)
    mixed = cli("score", "threshold", "--metric", "clip_score", "--percentile", "50")
    assert mixed.returncode == 2 and "stored for image, item" in mixed.stderr
    assert "of 13 value(s)" in cli("score", "threshold", "--metric", "clip_score", "--percentile", "50", "--of", "item", check=True).stdout
    # the prompt without its OCR text (the paper's setting, the default, has it) makes other scores: kept apart under their own model id
    cli("score", "grounding", "--on", "items", "--model", str(tiny_models["idefics2"]), "--without-ocr", check=True)
    assert {m.endswith("#ocr") for (m,) in lake.fetchall("SELECT DISTINCT model_id FROM scores WHERE metric = 'vis_attn'")} == {True, False}
    bad = cli("score", "threshold", "--metric", "no_such_metric", "--percentile", "10")
    assert bad.returncode == 2 and "no no_such_metric scores" in bad.stderr
    # a VLM whose tokenizer writes the judge's "Yes" in more than one token: per-item judge errors, with why;
    # attention and gain stored all the same (here a wording no tokenizer has as one token stands in for it)
    from curation.vlm import answer_tokens

    with pytest.MonkeyPatch.context() as patched:  # the units run in this process (tests/inprocess.py)
        patched.setattr(answer_tokens, "ANSWER_SPELLINGS", {"yes": ("Yes-indeed-certainly",), "no": ("No", "no")})
        out = cli("score", "grounding", "--on", "items", "--model", str(tiny_models["qwen2_vl"]), "--batch-size", "4", check=True).stdout
    assert "items_scored 13" in out
    qwen = str(tiny_models["qwen2_vl"].resolve()) + "#ocr"
    per_metric = dict(lake.fetchall("SELECT metric, count(value) FROM scores WHERE model_id = ? GROUP BY metric", [qwen]))
    assert per_metric["vis_attn"] == per_metric["vis_gain"] == 13 and per_metric["judge_yes"] == 0
    # one per item whose images could be read (the broken photo's item fails before, with its own error)
    assert lake.scalar("SELECT count(*) FROM errors WHERE stage = 'grounding_judge' AND code = 'judge_token' AND message LIKE '%not one%'") == 13
