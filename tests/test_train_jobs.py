"""Training and evaluation as jobs through the broker: a killed worker's run resumes from its checkpoint with
no step done twice (real worker processes), cancel stops between steps, evaluation scores land in the run
tables, the judge speaks HTTP, and the command line reaches all of it (the units of these run by the
workers' own task in this process, tests/inprocess.py; the commands through click's CliRunner)."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from config.settings import load_settings
from curation import snapshots
from curation.filters import Condition, FilterConfig
from db.app import jobs, training
from db.app.engine import write_engine
from jobs.submit import submit_job
from jobs.train import TrainJob
from trainer.benchmarks import EvalItem
from trainer.config import LoraSettings, TrainConfig
from trainer.evaluate import Prediction, judge

from .conftest import wait_job
from .curation_store import add_scores, ingest_and_generate
from .fake_llm import FakeChatServer

pytestmark = pytest.mark.slow


def _snapshot(tmp_path) -> str:
    lake = ingest_and_generate(tmp_path / "data")
    add_scores(lake)
    engine = write_engine(load_settings().app_url)
    config = FilterConfig([Condition.parse("vis_attn >= p10 or missing")])
    snapshots.create(lake, engine, name="snap", filter_name=None, config=config, created_by="tester")
    return "snap"


def _engine():
    return write_engine(load_settings().app_url)


def test_killed_training_resumes_from_its_checkpoint_without_doubled_steps(home, start_worker, tmp_path, tiny_models):
    snap = _snapshot(tmp_path)
    config = TrainConfig(batch_size=2, lora=LoraSettings(r=8, alpha=16), max_steps=14, epochs=5, checkpoint_every=2, holdout=0.25)
    out = tmp_path / "run"
    first = start_worker("train")
    job_id = submit_job("train", TrainJob(snapshot=snap, model=str(tiny_models["idefics2"]), name="r1", config=config, out=str(out)).params())
    engine = _engine()
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline:
        run = training.get_run(engine, "r1") if any(r.name == "r1" for r in training.list_runs(engine)) else None
        if run is not None and run.steps_done >= 5:
            os.killpg(first.pid, signal.SIGKILL)
            first.proc.wait()
            killed_at = training.get_run(engine, "r1").steps_done
            break
        time.sleep(0.05)
    assert killed_at is not None and killed_at < 14, "never caught the worker mid-training"
    start_worker("train")
    job = wait_job(job_id, timeout=180)
    assert job.status == "succeeded", job.error
    run = training.get_run(engine, "r1")
    steps = training.steps(engine, run.id)
    assert [s.step for s in steps] == list(range(1, 15))  # every step once, none doubled
    assert run.status == "succeeded" and run.steps_done == 14 and run.summary["resumed_from"] >= 4
    logs = " ".join(line.message for line in jobs.log_tail(engine, job_id, 50))
    assert f"resuming from the checkpoint at step {run.summary['resumed_from']} of 14" in logs
    unit = next(u for u in jobs.job_units(engine, job_id) if u.phase == 1)
    assert unit.attempts == 2
    meta = json.loads((out / "adapter" / "training_config.json").read_text())
    assert meta["snapshot"] == snap and meta["base_model"] == str(tiny_models["idefics2"]) and meta["steps"] == 14
    assert meta["config"]["lora"]["r"] == 8 and (out / "adapter" / "adapter_model.safetensors").exists()
    # no near-duplicate grouping in this store: held out by product, and the adapter says so (evaluation then reports it)
    assert meta["split"] == {"by": "product"} and "no near-duplicate grouping yet" in logs


def test_cancel_stops_training_between_steps_after_a_checkpoint(home, inprocess_worker, tmp_path, tiny_models, cli):
    snap = _snapshot(tmp_path)
    config = TrainConfig(batch_size=2, lora=LoraSettings(r=8, alpha=16), max_steps=400, epochs=100, checkpoint_every=1000, holdout=0.25)
    inprocess_worker("train")
    job_id = submit_job("train", TrainJob(snapshot=snap, model=str(tiny_models["idefics2"]), name="r2", config=config, out=str(tmp_path / "run")).params())
    engine = _engine()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (any(r.name == "r2" for r in training.list_runs(engine)) and training.get_run(engine, "r2").steps_done >= 2):
        time.sleep(0.05)
    cli("jobs", "cancel", job_id, check=True)
    job = wait_job(job_id)
    assert job.status == "cancelled"
    run = training.get_run(engine, "r2")
    assert run.status == "cancelled" and 2 <= run.steps_done < 400
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert ckpt and int(ckpt[-1].name.split("-")[1]) == run.steps_done  # the steps done are kept for a retry


def test_judge_over_http_scores_matches_and_records_broken_answers():
    from curation.generation.backends import OpenAIChatBackend

    def pred(i, reference, text):
        return Prediction(EvalItem(f"i{i}", "recognition", "What is it?", reference, [], [], None, "p"), text, 0.1)

    preds = [pred(0, "Sunvale body lotion", "It is a Sunvale body lotion."), pred(1, "Sunvale body lotion", "A coffee jar."), pred(2, "Oat cereal", None)]
    with FakeChatServer() as srv:
        scores, verdicts = judge(preds, OpenAIChatBackend(base_url=srv.base_url, model="judge", backoff_s=0.01))
        broken, broken_verdicts = judge(preds[:1], OpenAIChatBackend(base_url=srv.base_url, model="judge-broken", backoff_s=0.01))
    assert [v["verdict"] for v in verdicts] == ["yes", "no", "no"]
    assert "misses" in verdicts[1]["reasoning"]
    assert scores["overall"] == {"n": 3, "matched": 1, "unparsed": 0, "accuracy": pytest.approx(1 / 3)}
    assert broken["overall"]["matched"] == 0 and broken["overall"]["unparsed"] == 1 and broken_verdicts[0]["verdict"] is None


def test_train_eval_and_ablate_from_the_command_line(home, tmp_path, tiny_models, cli):
    snap = _snapshot(tmp_path)
    model = str(tiny_models["idefics2"])
    out = cli("train", "run", snap, "--model", model, "--name", "cli-run", "--max-steps", "3", "--batch-size", "4", "--r", "8", "--alpha", "16",
                     "--parts", "language,connector", "--holdout", "0.25", "--local", check=True)
    assert "training run 'cli-run': succeeded" in out.stdout and "steps 3/3" in out.stdout and "loss  |" in out.stdout
    shown = cli("train", "show", "cli-run", "--json", check=True)
    steps = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3] and all(s["loss"] > 0 and s["learning_rate"] > 0 for s in steps)
    with FakeChatServer() as srv:
        base = cli("eval", "run", snap, "--model", model, "--name", "base", "--benchmark", "objective", "--benchmark", "generative",
                          "--benchmark", "attributes", "--judge-url", srv.base_url, "--judge-model", "judge", "--holdout", "0.25", "--limit", "6",
                          "--local", check=True)
        assert "objective:" in base.stdout and "generative:" in base.stdout and "attributes:" in base.stdout
        tuned = cli("eval", "run", snap, "--model", model, "--adapter", "cli-run", "--name", "tuned", "--baseline", "base", "--k", "1",
                           "--holdout", "0.25", "--limit", "6", "--batch-size", "4", "--local", check=True)
    assert "vs baseline: points against evaluation 'base'" in tuned.stdout and ", batch 4, generate mode," in tuned.stdout
    engine = _engine()
    ev = training.get_eval(engine, "tuned")
    assert ev.adapter.endswith("cli-run/adapter") and set(ev.results) >= {"objective", "attributes", "measures"}
    for task, m in ev.results["objective"].items():
        assert 0 <= m["accuracy"] <= 1 and m["n"] > 0
    assert ev.results["measures"]["objective"]["seconds_per_item"] > 0 and ev.results["measures"]["objective"]["peak_memory_gb"] > 0
    assert ev.results["measures"]["objective"]["batch_size"] == 4 and ev.results["measures"]["objective"]["objective_mode"] == "generate"
    records = [json.loads(x) for x in (home / "evals" / "tuned" / "objective.jsonl").read_text().splitlines()]
    assert records and all(len(r["examples"]) == 1 for r in records)  # one in-context example each
    gen = [json.loads(x) for x in (home / "evals" / "base" / "generative.jsonl").read_text().splitlines()]
    assert gen and all(r["judge"]["verdict"] in ("yes", "no", None) for r in gen)
    # the generative benchmark without a judge, a bad grid, an unknown run: clear refusals
    refused = cli("eval", "run", snap, "--model", model, "--benchmark", "generative", "--local")
    assert refused.returncode == 2 and "needs an LLM judge" in refused.stderr
    assert "takes on, off" in cli("ablate", snap, "--model", model, "--grid", "ocr=maybe").stderr
    assert "no training run 'nope'" in cli("train", "show", "nope").stderr
    table = cli("ablate", snap, "--model", model, "--adapter", "cli-run", "--name", "abl", "--grid", "ocr=on,off", "--grid", "4bit=on",
                       "--grid", "adapter=off", "--holdout", "0.25", "--limit", "4", "--batch-size", "4", "--objective-mode", "logprob", "--local", check=True)
    assert "| default |" in table.stdout and "| ocr=off |" in table.stdout and "| adapter=off |" in table.stdout
    assert "4bit=on (not run: 4-bit loading (bitsandbytes) need(s) a CUDA GPU" in table.stdout
    assert (home / "evals" / "abl" / "ablation.md").read_text().startswith("| setting | AE | DD | PM | overall | s/item | peak GB |")
    cells = [c for c in json.loads((home / "evals" / "abl" / "ablation.json").read_text()) if "unavailable" not in c]
    assert cells and all(c["batch_size"] == 4 and c["objective_mode"] == "logprob" for c in cells)
    scored = [json.loads(x) for x in (home / "evals" / "abl" / "cell-00.jsonl").read_text().splitlines()]
    assert scored and all(r["prediction"] in ("yes", "no") and 0 <= r["p_yes"] <= 1 for r in scored)
