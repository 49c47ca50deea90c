"""The evaluation and ablation jobs' own rules, without a model: the held-out products are the ones the
adapter was trained without, and an evaluation's name is a fresh folder name of its own."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs.ablate import AblateJob
from jobs.eval import EvalJob
from trainer.benchmarks import split_rows
from trainer.config import TrainConfig
from workers.jobs import evaluate as eval_handler

ROWS = [{"sample_id": f"s{i}", "product": f"p{i}"} for i in range(200)]


def _held_out_seen(monkeypatch, tmp_path: Path, eval_config: TrainConfig, adapter_dir: str | None) -> set[str]:
    """The products ``evaluate_benchmark`` evaluates on (captured where it builds the benchmark's items)."""
    from trainer import benchmarks

    seen: list[dict] = []
    monkeypatch.setattr(eval_handler.snapshots, "eval_rows", lambda lake, engine, snapshot: ROWS)
    monkeypatch.setattr(benchmarks, "objective_items", lambda held_out, *a, **k: seen.extend(held_out) or [])
    logs: list[str] = []
    ctx = SimpleNamespace(lake=None, engine=None, log=lambda message, level="info": logs.append(message))
    from jobs.eval import EvalJob

    job = EvalJob(name="e", snapshot="s", model="/m", out="/o")  # what the handler reads: the spec
    result = eval_handler.evaluate_benchmark(ctx, job, "objective", None, eval_config, None, split_from=adapter_dir)
    assert result == {"items": 0, "scores": {}}
    return {r["product"] for r in seen}


def _adapter(tmp_path: Path, holdout: float, seed: int) -> str:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "training_config.json").write_text(json.dumps({"config": TrainConfig(holdout=holdout, seed=seed).to_dict()}))
    return str(folder)


def test_an_adapter_is_evaluated_on_the_products_it_was_trained_without(monkeypatch, tmp_path):
    adapter = _adapter(tmp_path, holdout=0.2, seed=7)
    trained_split = {r["product"] for r in split_rows(ROWS, 0.2, 7)[1]}
    own_split = {r["product"] for r in split_rows(ROWS, 0.5, 1)[1]}
    assert trained_split != own_split
    # the evaluation's own --holdout/--seed differ from the training run's: the training run's split wins
    assert _held_out_seen(monkeypatch, tmp_path, TrainConfig(holdout=0.5, seed=1), adapter) == trained_split


def test_without_an_adapter_the_evaluation_splits_with_its_own_settings(monkeypatch, tmp_path):
    own_split = {r["product"] for r in split_rows(ROWS, 0.5, 1)[1]}
    assert _held_out_seen(monkeypatch, tmp_path, TrainConfig(holdout=0.5, seed=1), None) == own_split
    # an adapter folder without training_config.json (trained elsewhere): the evaluation's own settings too
    (tmp_path / "foreign").mkdir()
    assert _held_out_seen(monkeypatch, tmp_path, TrainConfig(holdout=0.5, seed=1), str(tmp_path / "foreign")) == own_split


def _vlm_folder(tmp_path: Path) -> str:
    folder = tmp_path / "qwen"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    return str(folder)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "..", "with space"])
def test_an_evaluation_or_ablation_name_that_is_no_folder_name_is_refused(tmp_path, name):
    model = _vlm_folder(tmp_path)
    with pytest.raises(ValueError, match="an evaluation name is letters, digits"):
        EvalJob(name=name, snapshot="s", model=model, out=str(tmp_path / "evals" / "x")).params()
    with pytest.raises(ValueError, match="an ablation name is letters, digits"):
        AblateJob(name=name, snapshot="s", model=model, adapter=None, grid={"ocr": ["on", "off"]}, out=str(tmp_path / "evals" / "x")).params()


def test_an_evaluation_folder_holding_an_earlier_evaluation_is_refused(tmp_path):
    model = _vlm_folder(tmp_path)
    out = tmp_path / "evals" / "e1"
    assert EvalJob(name="e1", snapshot="s", model=model, out=str(out)).params()["out"] == str(out.resolve())
    out.mkdir(parents=True)
    (out / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds an earlier evaluation's files"):
        EvalJob(name="e1", snapshot="s", model=model, out=str(out)).params()
    with pytest.raises(ValueError, match="already holds an earlier evaluation's files"):
        AblateJob(name="e1", snapshot="s", model=model, adapter=None, grid={"ocr": ["on", "off"]}, out=str(out)).params()


def _plan_ctx(job_id: str, params: dict, kind: str):
    from config.settings import load_settings
    from db.app.engine import write_engine
    from db.store import open_store
    from jobs.registry import spec_for

    settings = load_settings()
    open_store(settings.store)
    return SimpleNamespace(engine=write_engine(settings.app_url), job_id=job_id, params=params, spec=spec_for(kind).from_params(params),
                           settings=settings, log=lambda *a, **k: None)


@pytest.mark.parametrize("kind", ["eval", "ablate"])
def test_a_job_never_takes_over_an_evaluation_another_job_made(home, tmp_path, kind):
    """Launched without the command line's or the page's name check (submit_job from code, two launches at
    once), an evaluation or ablation of a name in use fails instead of overwriting the other's results."""
    from db.app import training
    from workers.jobs import ablate as ablate_handler
    from workers.runtime import PermanentError

    handler = eval_handler if kind == "eval" else ablate_handler
    params = {"name": "same", "snapshot": "s", "model": "m", "adapter": None, "benchmarks": ["objective"], "baseline": None,
              "cells": [{"ocr": "on"}], "grid": {"ocr": ["on"]}, "out": str(tmp_path / "out")}
    specs, _ = handler.plan(_plan_ctx("job-1", params, kind))
    assert len(specs) == 1 and training.get_eval(_plan_ctx("job-1", params, kind).engine, "same").job_id == "job-1"
    assert len(handler.plan(_plan_ctx("job-1", params, kind))[0]) == 1  # the same job planned again (a retry): its own row
    with pytest.raises(PermanentError, match="an evaluation named 'same' belongs to job job-1; pick another --name"):
        handler.plan(_plan_ctx("job-2", params, kind))
    assert training.get_eval(_plan_ctx("job-1", params, kind).engine, "same").job_id == "job-1"


def test_ablate_refuses_the_name_of_an_existing_evaluation(home, tmp_path, cli):
    from db.app import training

    engine = _plan_ctx("job-1", {"name": "x", "snapshot": "s", "model": "/m", "out": "/o", "grid": {}}, "ablate").engine
    training.create_eval(engine, name="taken", snapshot="s", model="m", adapter=None, config={}, baseline=None, created_by="t")
    out = cli("ablate", "s", "--model", _vlm_folder(tmp_path), "--name", "taken", "--grid", "ocr=on,off", "--no-wait")
    assert out.returncode != 0 and "an evaluation named 'taken' exists already; pick another name" in out.stderr
    assert training.get_eval(engine, "taken").job_id is None and "queued" not in out.stdout
