"""Data-parallel training on the CPU with gloo, started by torchrun's launcher: two processes of batch 2
train the adapter one process of batch 4 trains, so do two "machines" of one process joined by torchrun's
rendezvous, a run stopped on two processes resumes on one, a two-process job whose rank is killed
mid-run resumes on its retry, and what cannot run is refused with a message."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.settings import load_settings
from curation import snapshots
from curation.filters import Condition, FilterConfig
from db.app import jobs, training
from db.app.engine import write_engine
from trainer.config import LoraSettings, TrainConfig

from .conftest import REPO, wait_job
from .curation_store import add_scores, ingest_and_generate
from .helpers import free_port

pytestmark = pytest.mark.slow

# dropout off: with it each process draws its own masks, and the runs could only be compared in law
CONFIG = TrainConfig(lora=LoraSettings(r=4, alpha=8, dropout=0.0), learning_rate=5e-3, epochs=5, max_steps=4, checkpoint_every=1,
                     holdout=0.25, warmup_ratio=0.0, loader_workers=1)


def _snapshot(tmp_path) -> str:
    lake = ingest_and_generate(tmp_path / "data", products=8, complaints=4)
    add_scores(lake)
    engine = write_engine(load_settings().app_url)
    snapshots.create(lake, engine, name="snap", filter_name=None, config=FilterConfig([Condition.parse("vis_attn >= p10 or missing")]),
                     created_by="tester")
    return "snap"


def _spec(name: str, model: str, out: Path, **config):
    from trainer.ranks import RunSpec

    cfg = TrainConfig.from_dict({**CONFIG.to_dict(), **config})
    training.create_run(write_engine(load_settings().app_url), name=name, snapshot="snap", base_model=model, config=cfg.to_dict(),
                        out_dir=str(out), created_by="tester")
    return RunSpec(name=name, snapshot="snap", model=model, config=cfg.to_dict(), work_dir=str(out), out=str(out)), cfg


def _weights(out: Path):
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def _close(a, b) -> float:
    """The largest difference between two adapters' weights, relative to the largest weight."""
    return max(float((a[k] - b[k]).abs().max()) for k in a) / max(float(v.abs().max()) for v in a.values())


def _with(spec, **config):
    from dataclasses import replace

    return replace(spec, config={**spec.config, **config})


def test_two_processes_or_two_machines_train_what_one_process_of_their_joint_batch_trains(home, tmp_path, tiny_models, cli):
    from trainer.launch import StopRequested, launch

    _snapshot(tmp_path)
    model = str(tiny_models["idefics2"])
    engine = write_engine(load_settings().app_url)
    one, _ = _spec("one", model, tmp_path / "one", batch_size=4, nproc=1)
    r1 = launch(one, 1)
    assert r1.returncode == 0, r1.failure()
    assert r1.result["processes"] == 1 and r1.result["steps"] == 4

    # two processes of batch 2, stopped after their first step (cancel's way: the stop file), resumed on one
    # process. Asked at the first recorded step, not the second: on an idle machine the 4 tiny steps can all
    # be done before a stop asked at the second one reaches the ranks.
    two, _ = _spec("two", model, tmp_path / "two", batch_size=2, nproc=2)

    def stop_early():
        if training.get_run(engine, "two").steps_done >= 1:
            raise StopRequested("enough")

    halted = launch(two, 2, watch=stop_early, poll_s=0.05)
    assert halted.stopped and halted.returncode == 0, halted.failure()
    done = int(halted.result["steps"])
    assert 1 <= done < 4 and sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())[-1] == f"step-{done:07d}"
    steps_two = {s.step: s.loss for s in training.steps(engine, training.get_run(engine, "two").id)}
    steps_one = {s.step: s.loss for s in training.steps(engine, training.get_run(engine, "one").id)}
    assert all(abs(steps_two[k] - steps_one[k]) < 1e-4 for k in range(1, done + 1))  # rank 0 records the whole step's loss
    resumed = launch(_with(two, nproc=1), 1)
    assert resumed.returncode == 0, resumed.failure()
    assert resumed.result["resumed_from"] == done and resumed.result["steps"] == 4
    assert _close(_weights(tmp_path / "one"), _weights(tmp_path / "two")) < 1e-4
    meta = json.loads((tmp_path / "two" / "adapter" / "training_config.json").read_text())
    assert meta["micro_size"] == 4  # the run's global micro-batch, kept from its start on two processes

    # two "machines" of one process each, joined by torchrun's c10d rendezvous, from `vitpro train spec`
    spec_file = tmp_path / "run.json"
    made = cli("train", "spec", "snap", "--model", model, "--name", "nodes", "--out", str(tmp_path / "nodes"), "--batch-size", "2",
                      "--r", "4", "--alpha", "8", "--dropout", "0", "--lr", "5e-3", "--epochs", "5", "--max-steps", "4", "--holdout", "0.25",
                      "--loader-workers", "1", "-o", str(spec_file), check=True)
    assert "torchrun --nnodes NODES --nproc-per-node 1" in made.stdout and "-m trainer.ranks" in made.stdout
    spec = json.loads(spec_file.read_text())
    spec["config"]["warmup_ratio"] = 0.0  # as CONFIG (no option for it)
    spec_file.write_text(json.dumps(spec))
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "nodes", "--max-restarts", "0", "-m", "trainer.ranks",
                               str(spec_file)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    result = json.loads((tmp_path / "nodes" / "result.json").read_text())
    assert result["processes"] == 2 and result["steps"] == 4
    assert _close(_weights(tmp_path / "one"), _weights(tmp_path / "nodes")) < 1e-4
    assert "steps 4/4" in cli("train", "show", "nodes", check=True).stdout


def _rank_pids(root_pid: int) -> list[int]:
    import psutil

    try:
        kids = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p.pid for p in kids if "trainer.ranks" in " ".join(p.cmdline()) and "torch.distributed.run" not in " ".join(p.cmdline())
            and "trainer.agent" not in " ".join(p.cmdline())]


def test_a_two_process_job_whose_rank_dies_resumes_on_its_retry(home, start_worker, tmp_path, tiny_models):
    from jobs.submit import submit_job
    from jobs.train import TrainJob

    _snapshot(tmp_path)
    config = TrainConfig.from_dict({**CONFIG.to_dict(), "batch_size": 1, "nproc": 2, "max_steps": 12, "epochs": 20, "checkpoint_every": 2})
    worker = start_worker("train")
    job_id = submit_job("train", TrainJob(snapshot="snap", model=str(tiny_models["idefics2"]), name="dies", config=config,
                                          out=str(tmp_path / "run")).params())
    engine = write_engine(load_settings().app_url)
    deadline, killed = time.monotonic() + 150, None
    while time.monotonic() < deadline and killed is None:
        runs = {r.name: r for r in training.list_runs(engine)}
        if "dies" in runs and runs["dies"].steps_done >= 3:
            ranks = _rank_pids(worker.pid)
            if len(ranks) >= 2:
                os.kill(max(ranks), signal.SIGKILL)  # one rank, not the worker: the others must notice and end
                killed = runs["dies"].steps_done
        time.sleep(0.05)
    assert killed is not None and killed < 12, "never caught the run mid-way"
    job = wait_job(job_id, timeout=240)
    assert job.status == "succeeded", job.error
    run = training.get_run(engine, "dies")
    assert [s.step for s in training.steps(engine, run.id)] == list(range(1, 13))  # every step once
    assert run.summary["resumed_from"] >= 2 and run.summary["processes"] == 2
    unit = next(u for u in jobs.job_units(engine, job_id) if u.phase == 1)
    assert unit.attempts == 2
    logs = [line.message for line in jobs.log_tail(engine, job_id, 80)]
    assert any("attempt 1 failed" in m and "rank" in m for m in logs), logs
    assert any(m.startswith("resuming from the checkpoint at step") for m in logs)
    assert not _rank_pids(worker.pid)  # nothing left running


def test_what_cannot_run_is_refused_with_a_message(home, tmp_path, tiny_models, cli):
    from workers.jobs.train import _check_processes
    from workers.runtime import PermanentError

    _snapshot(tmp_path)
    model = str(tiny_models["idefics2"])
    with pytest.raises(PermanentError, match="one GPU per process, but this worker has 0 GPU"):
        _check_processes(TrainConfig(device="cuda", nproc=2))
    with pytest.raises(PermanentError, match="CPU processes on a worker with"):
        _check_processes(TrainConfig(nproc=(os.cpu_count() or 1) + 1))
    bad = cli("train", "run", "snap", "--model", model, "--nproc", "0")
    assert bad.returncode == 2 and "--nproc" in bad.stderr
