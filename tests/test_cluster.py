"""Workers that share no disk: two worker processes, each with its own VITPRO_HOME and no path in common,
a PostgreSQL catalog, the Redis broker and an S3-compatible server over real HTTP. They run ingest, OCR,
scores, generation, export and a short training job; one is killed by SIGKILL inside an ingest unit and
the other inside the training unit. Nothing is lost or doubled, the training resumes from the checkpoint
that reached the bucket, and the web app, from a third home, shows the result."""
from __future__ import annotations

import io
import os
import shutil
import signal
import time
from pathlib import Path

import boto3
import pytest
import streamlit as st
from PIL import Image
from sqlalchemy import text

from config.settings import load_settings
from curation.clip_score import ClipConfig
from curation.filters import Condition, FilterConfig
from curation.mapping import ColumnMapping
from curation.vis_attn import VisAttnConfig
from db.app import jobs, saved_filters, training
from db.app.engine import write_engine
from db.store import open_store
from jobs.aux_stats import AuxStatsJob
from jobs.clip_score import ClipScoreJob
from jobs.export import ExportJob
from jobs.generate import GenerateJob
from jobs.grounding import GroundingJob
from jobs.ingest import IngestJob
from jobs.ocr import OcrJob
from jobs.submit import submit_job
from jobs.train import TrainJob
from trainer.config import LoraSettings, TrainConfig

from .conftest import _reset_process_caches, wait_job
from .test_ui_pages import page, texts

pytestmark = pytest.mark.slow

N_ITEMS = 48  # 8 ingest units of 6 rows: the kill lands inside one with units still to go; more rows only add time


def _s3():
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _keys(bucket: str, prefix: str) -> list[str]:
    return sorted(o["Key"] for page_ in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix) for o in page_.get("Contents", []))


def _upload_sources(bucket: str, shared_data: Path) -> tuple[str, str]:
    """A CSV of N_ITEMS products with a photo each and the real ABO listings with theirs, all in the bucket."""
    s3 = _s3()
    rows = ["id,title,img"]
    for i in range(N_ITEMS):
        buf = io.BytesIO()
        Image.new("RGB", (160, 120), ((i * 37) % 255, (i * 91) % 255, (i * 13) % 255)).save(buf, format="JPEG", quality=90)
        s3.put_object(Bucket=bucket, Key=f"incoming/many/{i}.jpg", Body=buf.getvalue())
        rows.append(f"{i},Product {i},{i}.jpg")
    s3.put_object(Bucket=bucket, Key="incoming/many/many.csv", Body=("\n".join(rows) + "\n").encode())
    abo = shared_data / "abo-samples"
    for path in abo.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, "incoming/abo/" + path.relative_to(abo).as_posix())
    return f"s3://{bucket}/incoming/many/many.csv", f"s3://{bucket}/incoming/abo/listings.jsonl"


def _push_tiny_models(bucket: str, scratch: Path) -> dict[str, str]:
    """Tiny checkpoints built here, uploaded, and deleted: the workers can only get them from the bucket."""
    from curation.tiny_models import make_tiny
    from db.storage.model_files import upload_model

    urls = {}
    for family in ("qwen2_5_vl", "clip"):
        folder = make_tiny(family, scratch / family)
        urls[family] = f"s3://{bucket}/models/tiny-{family}"
        upload_model(folder, urls[family])
    shutil.rmtree(scratch)
    return urls


def _freeze_then_kill(worker, engine, job_id: str, ready) -> str:
    """Wait until ``ready()``, stop the worker, and SIGKILL it if it holds a unit of the job; the unit's id."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ready():
            os.killpg(worker.pid, signal.SIGSTOP)  # freeze it, then look: no race with a finishing unit
            leased = [u for u in jobs.job_units(engine, job_id) if u.status == "leased" and _pid(u) == worker.pid]
            if leased:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.proc.wait()
                return leased[0].id
            os.killpg(worker.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("never caught the worker inside a unit")


def _pid(unit) -> int | None:
    """The process holding a unit (owners are host:pid:tag)."""
    return int(unit.lease_owner.split(":")[1]) if unit.lease_owner else None


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_two_workers_with_no_common_disk_run_every_stage_through_a_kill(home, tmp_path, pg_url, redis_url, s3_env, start_worker, shared_data, monkeypatch):
    bucket = s3_env
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    shared = {"VITPRO_CATALOG": pg_url, "VITPRO_BROKER": redis_url, "VITPRO_DATA_PATH": f"s3://{bucket}/lake/",
              "VITPRO_BLOB_PATH": f"s3://{bucket}/blobs/", "VITPRO_OUT_PATH": f"s3://{bucket}/out"}
    for name, value in shared.items():
        monkeypatch.setenv(name, value)
    _reset_process_caches()
    homes = {"a": tmp_path / "node-a" / "home", "b": tmp_path / "node-b" / "home", "web": tmp_path / "node-web" / "home"}
    queues = "cpu,gpu,train"
    many, abo = _upload_sources(bucket, shared_data)
    models = _push_tiny_models(bucket, tmp_path / "build-models")
    a = start_worker(queues, env={"VITPRO_HOME": str(homes["a"])})
    b = start_worker(queues, env={"VITPRO_HOME": str(homes["b"])})
    engine = write_engine(load_settings().app_url)

    # ---- ingest, with worker a killed inside a unit ------------------------------------------------------
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    job_id = submit_job("ingest", IngestJob(source=many, format="csv", mapping=mapping, name="many", image_root=None, redact=True, rows_per_unit=6).params())
    killed = _freeze_then_kill(a, engine, job_id, lambda: sum(u.status == "done" and u.phase == 1 for u in jobs.job_units(engine, job_id)) >= 2)
    a = start_worker(queues, env={"VITPRO_HOME": str(homes["a"])})  # the node comes back, its disk as it was
    job = wait_job(job_id, timeout=180)
    assert job.status == "succeeded", job.error
    unit = next(u for u in jobs.job_units(engine, job_id) if u.id == killed)
    assert unit.status == "done" and unit.attempts == 2
    abo_job = wait_job(submit_job("ingest", IngestJob(source=abo, format=None, mapping=None, name="abo", image_root=None, redact=True).params()), timeout=180)
    assert abo_job.status == "succeeded", abo_job.error
    lake = open_store(load_settings().store)
    assert lake.fetchone("SELECT count(*), count(DISTINCT item_id) FROM items") == (N_ITEMS + 3, N_ITEMS + 3)
    assert lake.fetchone("SELECT count(*), count(DISTINCT image_id) FROM images") == (N_ITEMS + 12, N_ITEMS + 12)
    distinct_blobs = lake.scalar("SELECT count(DISTINCT blob_path) FROM images")
    assert len(_keys(bucket, "blobs/")) == distinct_blobs

    # ---- OCR, scores, generation ---------------------------------------------------------------------------
    for kind, spec in (("ocr", OcrJob(engine="tesseract", batch_size=16)), ("generate", GenerateJob(backend="template")), ("aux_stats", AuxStatsJob()),
                       ("clip_score", ClipScoreJob(ClipConfig(model=models["clip"], batch_size=16)))):
        done = wait_job(submit_job(kind, spec.params()), timeout=240)
        assert done.status == "succeeded", (kind, done.error)
    grounding = GroundingJob(model=models["qwen2_5_vl"], batch_size=8, items_per_unit=64, config=VisAttnConfig(), on="samples",
                             signals=["attention"]).params()  # the gain and the judge: tests/test_visual_gain.py, tests/test_judge.py
    assert wait_job(submit_job("grounding", grounding), timeout=300).status == "succeeded"
    n_samples = lake.scalar("SELECT count(DISTINCT sample_id) FROM samples")
    assert n_samples == lake.scalar("SELECT count(*) FROM samples") > N_ITEMS
    assert lake.scalar("SELECT count(DISTINCT sha256) FROM ocr") == distinct_blobs
    clip = lake.fetchone("SELECT count(*), count(DISTINCT (subject_kind, subject_id)), count(*) FILTER (WHERE subject_kind = 'item') FROM scores "
                         "WHERE metric = 'clip_score' AND model_id = ?", [models["clip"]])
    assert clip == (N_ITEMS + 3 + N_ITEMS + 12, N_ITEMS + 3 + N_ITEMS + 12, N_ITEMS + 3)  # each item, and each of its images
    scored = lake.fetchone("SELECT count(*), count(DISTINCT subject_id) FROM scores WHERE metric = 'vis_attn' AND segment = 'answer' AND model_id = ?",
                           [grounding["model_id"]])  # the model with "#ocr": the prompt had its OCR text
    assert scored == (n_samples, n_samples)

    # ---- snapshot, export to the bucket ---------------------------------------------------------------------
    from curation import snapshots

    config = FilterConfig(conditions=[Condition("clip_score", ">=", 0.0)])
    saved_filters.save(engine, "all", config.to_dict(), "tester")
    snap = snapshots.create(lake, engine, name="cluster", filter_name="all", config=config, created_by="tester")
    export = wait_job(submit_job("export", ExportJob(snapshot="cluster", formats=["llava", "parquet"], out=load_settings().output("exports", "cluster")).params()),
                      timeout=240)
    assert export.status == "succeeded", export.error
    for fmt in ("llava", "parquet"):
        keys = _keys(bucket, f"out/exports/cluster/{fmt}/")
        assert f"out/exports/cluster/{fmt}/manifest.json" in keys and any("/images/" in k for k in keys)

    # ---- a short training run, with worker b killed after its first checkpoint reached the bucket ---------------
    config = TrainConfig(lora=LoraSettings(r=8, alpha=16, dropout=0.1), batch_size=2, max_steps=8, checkpoint_every=1, holdout=0.25)
    train_id = submit_job("train", TrainJob(snapshot="cluster", model=models["qwen2_5_vl"], name="cluster-lora", config=config,
                                            out=load_settings().output("runs", "cluster-lora")).params())
    checkpoint_in_bucket = lambda: any(k.endswith("state.json") for k in _keys(bucket, "out/runs/cluster-lora/checkpoints/"))  # noqa: E731
    holder = None
    deadline = time.monotonic() + 240
    while holder is None and time.monotonic() < deadline:  # which worker trains: the one holding the unit
        leased = [u for u in jobs.job_units(engine, train_id) if u.status == "leased" and u.phase == 1 and u.lease_owner]
        if leased:
            holder = next(w for w in (a, b) if w.pid == _pid(leased[0]))
        time.sleep(0.05)
    assert holder is not None
    survivor = b if holder is a else a
    _freeze_then_kill(holder, engine, train_id, checkpoint_in_bucket)
    trained = wait_job(train_id, timeout=300)
    assert trained.status == "succeeded", trained.error
    run = training.get_run(engine, "cluster-lora")
    assert run.summary["resumed_from"] >= 1 and run.summary["steps"] == 8
    assert run.summary["adapter"] == f"s3://{bucket}/out/runs/cluster-lora/adapter"
    assert "out/runs/cluster-lora/adapter/adapter_config.json" in _keys(bucket, "out/runs/cluster-lora/adapter/")
    with engine.connect() as con:
        steps = con.execute(text("SELECT step FROM train_steps WHERE run_id = :r ORDER BY step"), {"r": run.id}).scalars().all()
    assert steps == list(range(1, 9))  # the steps redone after the kill are rewritten, never doubled
    assert survivor.proc.poll() is None

    # ---- no disk in common, no secret anywhere ---------------------------------------------------------------
    for node in ("a", "b"):
        top = {p.name for p in homes[node].iterdir()}
        assert not top & {"lake", "blobs", "exports", "runs", "catalog.sqlite", "app.sqlite", "broker.sqlite"}, top
        for path in _files(homes[node]):
            assert secret.encode() not in path.read_bytes(), path
    with engine.connect() as con:
        tables = con.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        for table in tables:
            dump = "\n".join(con.execute(text(f'SELECT t::text FROM "{table}" t')).scalars().all())
            assert secret not in dump, table
    for key in _keys(bucket, "lake/") + _keys(bucket, "out/"):
        if key.endswith((".json", ".jsonl", ".yaml", ".md")):
            assert secret.encode() not in _s3().get_object(Bucket=bucket, Key=key)["Body"].read(), key

    # ---- the web app, from a third home, shows the result ---------------------------------------------------
    monkeypatch.setenv("VITPRO_HOME", str(homes["web"]))
    _reset_process_caches()
    st.cache_data.clear()
    st.cache_resource.clear()
    from db.app import users

    users.add(engine, "admin", "admin-pass-1", "admin")
    overview = page("overview")
    assert not overview.exception, overview.exception
    shown = texts(overview) + "\n".join(str(m.value) for m in overview.get("metric"))
    assert f"{N_ITEMS + 3}" in shown.replace(",", "")
    snaps = page("snapshots", manifest_snap="cluster")
    assert not snaps.exception, snaps.exception
    assert f"s3://{bucket}/out/exports/cluster/llava" in texts(snaps)
    assert snap.counts["kept"] > 0
    runs = page("training")
    assert not runs.exception and "cluster-lora" in str([d.value for d in runs.dataframe])
    assert {p.name for p in homes["web"].iterdir()} <= {"cache", "scratch"}
