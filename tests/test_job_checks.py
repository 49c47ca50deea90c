"""Parameters checked before a job is queued: the device against the live workers of the job's queue (real
worker processes and registration rows), and the ingest source before anything else (engine and CLI)."""
from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from config.settings import load_settings
from curation.clip_score import ClipConfig
from curation.readers import SourceError
from db.app import jobs
from db.app.engine import write_engine
from db.app.models import WorkerRecord
from db.store import open_store
from jobs import devices as device_names
from jobs.clip_score import ClipScoreJob
from jobs.grounding import GroundingJob
from jobs.ingest import IngestJob
from jobs.submit import JobRefused, check_device, check_job, requested_device, submit_job
from jobs.train import TrainJob
from trainer.config import TrainConfig
from workers import devices


def _engine():
    s = load_settings()
    open_store(s.store)
    return write_engine(s.app_url)


def _vlm_folder(tmp_path: Path) -> Path:
    """A checkpoint folder as far as the launch checks read it (config.json with a supported model type);
    the refused jobs below never load it."""
    folder = tmp_path / "qwen"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    return folder


def _grounding(tmp_path: Path, device: str) -> dict:
    return GroundingJob(model=str(_vlm_folder(tmp_path)), device=device).params()


# ---- devices: what a worker records, what a job may ask for --------------------------------------------
def test_a_worker_records_its_devices_and_a_gpu_it_lacks_is_refused(home, start_worker, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this worker sees no GPU, whatever the machine has
    worker = start_worker("gpu")
    engine = _engine()
    [record] = jobs.live_workers(engine, 60, queue="gpu")
    assert record.pid == worker.pid and record.devices == "cpu"
    assert jobs.live_workers(engine, 60, queue="cpu") == []

    with pytest.raises(JobRefused) as refused:
        submit_job("grounding", _grounding(tmp_path, "cuda"))
    assert str(refused.value).startswith(f"no live worker of the 'gpu' queue has cuda (live workers: {record.id} cpu)")
    with pytest.raises(JobRefused, match="has cuda:0"):
        check_device("gpu", "cuda:0")
    assert jobs.list_jobs(engine) == []  # nothing was queued

    assert check_job("grounding", _grounding(tmp_path, "cpu")) == []  # a live worker, and it has a CPU
    job_id = submit_job("grounding", _grounding(tmp_path, "cpu"))
    assert jobs.get_job(engine, job_id).params["device"] == "cpu"
    jobs.request_cancel(engine, job_id)


def test_a_worker_with_a_gpu_takes_cuda_and_only_the_gpus_it_has(home, start_worker, monkeypatch, tmp_path):
    monkeypatch.setenv(devices.OVERRIDE_ENV, "cuda:0")  # a worker that declares one GPU
    start_worker("gpu")
    engine = _engine()
    [record] = jobs.live_workers(engine, 60, queue="gpu")
    assert record.devices == "cpu,cuda:0"
    assert check_device("gpu", "cuda") is None and check_device("gpu", "CUDA:0") is None
    with pytest.raises(JobRefused, match=r"has cuda:1 \(live workers: .* cpu\+cuda:0\)"):
        check_device("gpu", "cuda:1")
    assert check_job("grounding", _grounding(tmp_path, "cuda:0")) == []


def test_the_cli_refuses_a_device_no_live_worker_has(home, start_worker, monkeypatch, tmp_path, vitpro_cli):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    start_worker("gpu")
    out = vitpro_cli("score", "grounding", "--model", str(_vlm_folder(tmp_path)), "--device", "cuda", "--no-wait")
    assert out.returncode != 0
    assert "no live worker of the 'gpu' queue has cuda" in out.stderr
    assert jobs.list_jobs(_engine()) == []


def test_registration_rows_decide_by_queue_age_and_what_was_recorded(home, tmp_path):
    engine = _engine()
    # no live worker at all: queued anyway (one may start later), with a warning that says what it needs
    warning = check_device("gpu", "cuda:0")
    assert warning.startswith("no live worker serves the 'gpu' queue: the job waits until one starts on a machine with cuda:0")
    assert check_job("grounding", _grounding(tmp_path, "cuda:0")) == [warning]
    jobs.touch_worker(engine, "box:1", "box", 1, "cpu", "cpu,cuda:0,cuda:1")
    assert check_device("cpu", "cuda:1") is None
    assert "no live worker serves the 'gpu' queue" in check_device("gpu", "cuda:1")  # a GPU, but on another queue
    jobs.touch_worker(engine, "box:2", "box", 2, "gpu,train", "cpu")
    with pytest.raises(JobRefused, match=r"no live worker of the 'gpu' queue has cuda:1 \(live workers: box:2 cpu\)"):
        check_device("gpu", "cuda:1")
    with pytest.raises(JobRefused, match="'train' queue has cuda"):
        check_job("train", TrainJob(snapshot="s", model=str(tmp_path / "qwen"), name="r", config=TrainConfig(device="cuda"), out=str(tmp_path / "run")).params())
    # a later heartbeat records new devices; a worker that recorded none is given the benefit of the doubt
    jobs.touch_worker(engine, "box:2", "box", 2, "gpu,train", "cpu,cuda:0,cuda:1")
    assert check_device("gpu", "cuda:1") is None
    jobs.touch_worker(engine, "box:2", "box", 2, "gpu,train", "cpu")
    jobs.touch_worker(engine, "old:3", "old", 3, "gpu", None)
    assert check_device("gpu", "cuda:1") is None
    # a worker not seen for longer than the live window does not count
    with Session(engine) as s, s.begin():
        s.execute(update(WorkerRecord).where(WorkerRecord.id == "old:3").values(last_seen=WorkerRecord.last_seen - timedelta(minutes=10)))
    with pytest.raises(JobRefused, match=r"\(live workers: box:2 cpu\)"):
        check_device("gpu", "cuda:1")
    assert check_device("gpu", "cpu") is None and check_device("gpu", None) is None and check_device("gpu", "auto") is None


def test_the_device_is_found_wherever_a_kind_keeps_it(tmp_path):
    _vlm_folder(tmp_path)
    assert requested_device(_grounding(tmp_path, "cuda:1")) == "cuda:1"
    assert requested_device(ClipScoreJob(ClipConfig(model="ViT-B-32", device="cuda")).params()) == "cuda"
    assert requested_device(TrainJob(snapshot="s", model=str(tmp_path / "qwen"), name="r", config=TrainConfig(device="cuda:0"),
                                     out=str(tmp_path / "run")).params()) == "cuda:0"
    assert requested_device({"backend": "hf", "hf": {"device": "cuda"}}) == "cuda"
    assert requested_device({"settings": {"device": "cpu"}}) == "cpu" and requested_device({}) is None


def test_device_detection_follows_cuda_visible_devices_and_the_override(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert devices._visible(4) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,7,1")  # torch stops at the first GPU that is not there
    assert devices._visible(2) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices._visible(8) == 0 and devices.detect_devices() == ["cpu"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices._visible(3) == 3
    monkeypatch.setenv(devices.OVERRIDE_ENV, "cuda:1, CUDA:0")
    assert devices.detect_devices() == ["cpu", "cuda:1", "cuda:0"]
    assert device_names.serves(["cpu", "cuda:1"], "cuda") and not device_names.serves(["cpu", "cuda:1"], "cuda:0") and device_names.serves(["cpu"], "cpu")


# ---- the ingest source, checked first ----------------------------------------------------------------
def test_a_missing_or_unreadable_source_is_reported_as_such(tmp_path):
    kwargs = dict(format="csv", mapping=None, name=None, image_root=None, redact=True)
    with pytest.raises(SourceError, match=f"^source file not found: {tmp_path / 'nope.csv'}$"):
        IngestJob(source=str(tmp_path / "nope.csv"), **kwargs).params()  # was: "no column mapping: pass --map ..."
    with pytest.raises(SourceError, match="^source is not a file"):
        IngestJob(source=str(tmp_path), **kwargs).params()
    with pytest.raises(SourceError, match="^no source file given$"):
        IngestJob(source="  ", **kwargs).params()
    outside = tmp_path / "elsewhere" / "a.csv"
    outside.parent.mkdir()
    outside.write_text("title\nmug\n")
    with pytest.raises(SourceError, match="is not under an allowed root"):
        IngestJob(source=str(outside), source_roots=(tmp_path / "allowed",), **kwargs).params()
    if os.geteuid() != 0:  # root reads any file
        outside.chmod(0)
        with pytest.raises(SourceError, match="^source file not readable"):
            IngestJob(source=str(outside), **kwargs).params()


def test_the_cli_says_a_source_is_missing(home, vitpro_cli, tmp_path):
    out = vitpro_cli("ingest", str(tmp_path / "missing.csv"), "--map", "title=title")
    assert out.returncode == 2 and f"error: source file not found: {tmp_path / 'missing.csv'}" in out.stderr


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_an_identical_job_queued_or_running_is_refused(home, catalog, request):
    """A double click (or a command typed twice) does not queue the same work twice: same kind and same
    parameters as a queued or running job is refused, naming it; other parameters, or the first job ended,
    are accepted. On both catalogs (the check and the insert are one write transaction)."""
    if catalog == "postgresql":
        os.environ["VITPRO_CATALOG"] = request.getfixturevalue("pg_url")
    try:
        from db.app.models import Job

        params = {"source": "/data/listings.csv", "mapping": {"title": "name"}, "rows_per_unit": 200}  # never run: no worker here
        first = submit_job("ingest", params)
        with pytest.raises(JobRefused, match=rf"an identical job is already queued: {first} \(launched by tester\)"):
            submit_job("ingest", params)
        other = submit_job("ingest", {**params, "rows_per_unit": 100})  # another parameter: another job
        engine = _engine()
        with Session(engine) as s, s.begin():
            s.execute(update(Job).where(Job.id == first).values(status="running"))
        with pytest.raises(JobRefused, match="already running"):
            submit_job("ingest", params)
        with Session(engine) as s, s.begin():
            s.execute(update(Job).where(Job.id.in_([first, other])).values(status="succeeded"))
        assert submit_job("ingest", params) not in (first, other)  # the first one ended: the same work may run again
    finally:
        os.environ.pop("VITPRO_CATALOG", None)
