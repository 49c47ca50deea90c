"""A store with real ingested demo data and generated samples, plus scores written the way the scoring jobs
write them (batches.write_scores) with values drawn from a seed: filters, pilots and snapshots need stats,
not the models that made them, and the tiny models' scores would take minutes to compute here."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from config.settings import load_settings
from curation.mapping import ColumnMapping
from db.lake import batches
from db.store import open_store
from jobs.generate import GenerateJob
from jobs.ingest import IngestJob
from vitpro.demo_data import write_demo_data

from .store_templates import built_once
from .test_generation import _run_job

VIS_MODEL, CLIP_MODEL = "vlm-a", "clip-a"


def ingest_and_generate(data_dir, *, products=12, complaints=10, names=("catalog", "complaints")):
    """The demo data written to ``data_dir``, ingested through the real job, and template samples generated;
    built once per test session and copied for later tests (tests/store_templates.py)."""
    built_once(("ingest_and_generate", products, complaints, tuple(names)), lambda: _ingest_and_generate(data_dir, products, complaints, names),
               data_dir=data_dir)
    return open_store(load_settings().store)


def _ingest_and_generate(data_dir, products, complaints, names) -> None:
    write_demo_data(data_dir, products=products, complaints=complaints)
    for (source, mapping), name in zip((("catalog.csv", "catalog.yaml"), ("complaints.jsonl", "complaints.yaml")), names):
        params = IngestJob(source=str(data_dir / source), format=None, mapping=ColumnMapping.from_yaml(data_dir / mapping), name=name,
                           image_root=str(data_dir), redact=True).params()
        assert _run_job("ingest", params).status == "succeeded"
    assert _run_job("generate", GenerateJob(backend="template").params()).status == "succeeded"


def add_scores(lake, *, seed=0, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, run_id="synthetic-scores"):
    """VisAttnScore and image mass per sample, CLIPScore per item, OCR chars per image, for whatever has
    none yet: about 8% unscorable (NULL) and 5% never scored, as real runs leave them."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    rows = []

    def row(kind, sid, metric, model, segment, value):
        rows.append({"subject_kind": kind, "subject_id": sid, "metric": metric, "model_id": model, "segment": segment, "value": value,
                     "flags": None, "run_id": run_id, "created_at": now})

    have = {r[0] for r in lake.fetchall("SELECT DISTINCT subject_id FROM scores WHERE metric = 'vis_attn' AND model_id = ?", [vis_model])}
    for (sid,) in lake.fetchall("SELECT DISTINCT sample_id FROM samples ORDER BY 1"):
        if sid in have:
            continue
        u = rng.random()
        if u < 0.05:
            continue
        value = None if u < 0.13 else round(rng.uniform(0.0, 0.2), 6)
        row("sample", sid, "vis_attn", vis_model, "answer", value)
        row("sample", sid, "vis_attn_mass", vis_model, "answer", None if value is None else round(rng.uniform(0, 1), 6))
    have = {r[0] for r in lake.fetchall("SELECT DISTINCT subject_id FROM scores WHERE metric = 'clip_score' AND model_id = ?", [clip_model])}
    for (iid,) in lake.fetchall("SELECT DISTINCT item_id FROM items ORDER BY 1"):
        if iid not in have and rng.random() > 0.05:
            row("item", iid, "clip_score", clip_model, "", round(rng.uniform(10, 40), 4))
    have = {r[0] for r in lake.fetchall("SELECT DISTINCT subject_id FROM scores WHERE metric = 'ocr_chars'")}
    for (image_id,) in lake.fetchall("SELECT DISTINCT image_id FROM images ORDER BY 1"):
        if image_id not in have:
            row("image", image_id, "ocr_chars", "", "", float(rng.randint(0, 30)))
    batches.write_scores(lake, run_id + f"-{rng.random():.6f}", rows)
    return len(rows)
