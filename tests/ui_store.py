"""A store for the web app's tests: real ingested demo data and generated samples (tests/curation_store.py),
synthetic scores with per-word grounding, one sample whose text is an HTML injection, two users, a saved
filter and a pilot."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from config.settings import load_settings
from curation.filters import Condition, FilterConfig, resolve
from db.app import pilots, saved_filters, users
from db.app.engine import write_engine
from db.lake import batches
from db.store import open_store

from .curation_store import CLIP_MODEL, VIS_MODEL, add_scores, ingest_and_generate
from .store_templates import built_once

XSS = "<img src=x onerror=alert(1)>"
XSS_ID = "xss0000000000000000000000"
PASSWORDS = {"admin": "admin-pass-1", "anna": "annotator-pass-1"}


def _xss_sample(lake) -> None:
    """A copy of a real sample whose question and answer carry markup (as scraped customer text can)."""
    def body(con):
        con.execute(
            "INSERT INTO samples SELECT ?, item_id, task, ? || ' what is shown?', ?, answer_format, image_ids, label, backend, model_id, "
            "prompt_version, lineage, 'xss-run', created_at, NULL FROM samples ORDER BY sample_id LIMIT 1", [XSS_ID, XSS, XSS])
    lake.transaction(body)


def token_rows(lake, *, seed: int = 1) -> list[dict]:
    """Per-word (and per-piece) A(t) for every sample with a VisAttnScore: what the grounding job stores."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    out = []
    for sid, question, answer in lake.fetchall(
        "SELECT x.sample_id, any_value(x.question), any_value(x.answer) FROM samples x JOIN scores s ON s.subject_id = x.sample_id "
        "AND s.metric = 'vis_attn' AND s.value IS NOT NULL GROUP BY 1 ORDER BY 1"):
        for segment, text in (("answer", answer), ("question", question)):
            words = text.split() or [text]
            scores = [round(rng.uniform(0.0, 0.2), 6) for _ in words]
            pieces = [f"\u2581{w}" for w in words]
            out.append({"subject_kind": "sample", "subject_id": sid, "model_id": VIS_MODEL, "segment": segment, "tokens": pieces,
                        "token_ids": list(range(len(pieces))), "scores": scores, "mass": scores, "words": words, "word_scores": scores,
                        "positions": {}, "run_id": "synthetic-tokens", "created_at": now})
    return out


SECOND_VIS_MODEL = "/models/tiny/qwen2_5_vl#ocr"  # a second VLM's VisAttnScore, shown beside the first on Inspect


def second_model_scores(lake, *, seed: int = 2) -> None:
    """The same samples scored by a second VLM: other values (absolute values differ between models)."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    rows = [{"subject_kind": "sample", "subject_id": sid, "metric": metric, "model_id": SECOND_VIS_MODEL, "segment": segment,
             "value": None if value is None else round(value * rng.uniform(0.5, 1.5), 6), "flags": None, "run_id": "second-model", "created_at": now}
            for sid, metric, segment, value in lake.fetchall(
                "SELECT subject_id, metric, segment, value FROM scores WHERE subject_kind = 'sample' AND model_id = ? AND metric IN ('vis_attn', 'vis_attn_mass')",
                [VIS_MODEL])]
    tokens = [{**t, "model_id": SECOND_VIS_MODEL, "run_id": "second-model"} for t in token_rows(lake, seed=seed)]
    batches.write_scores(lake, "second-model", rows, token_scores=tokens)


def build(data_dir):
    """The store every page test reads; built once per test session and copied (tests/store_templates.py)."""
    built_once(("ui_store",), lambda: _build(data_dir), data_dir=data_dir)
    return open_store(load_settings().store), write_engine(load_settings().app_url)


def _build(data_dir) -> None:
    lake = ingest_and_generate(data_dir)
    add_scores(lake)
    _xss_sample(lake)
    now = datetime.now(timezone.utc)
    lake_scores = [{"subject_kind": "sample", "subject_id": XSS_ID, "metric": "vis_attn", "model_id": VIS_MODEL, "segment": "answer",
                    "value": 0.11, "flags": None, "run_id": "xss-scores", "created_at": now}]
    batches.write_scores(lake, "xss-scores", lake_scores)
    batches.write_scores(lake, "synthetic-tokens", [], token_scores=token_rows(lake))
    s = load_settings()
    engine = write_engine(s.app_url)
    users.add(engine, "admin", PASSWORDS["admin"], "admin")
    users.add(engine, "anna", PASSWORDS["anna"], "annotator")
    config = FilterConfig([Condition.parse("vis_attn >= p25"), Condition.parse("clip_score >= p20 or missing")])
    config = resolve(lake, config)  # saved with its models, as the pages save one
    saved_filters.save(engine, "ui-filter", config.to_dict(), "admin")
    pilots.draw_and_create(lake, engine, name="ui-pilot", size=20, seed=0, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, created_by="admin")
    second_model_scores(lake)
