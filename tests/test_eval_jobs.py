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


def _held_out_seen(monkeypatch, tmp_path: Path, eval_config: TrainConfig, adapter_dir: str | None, logs: list[str] | None = None,
                   keys: dict[str, str] | None = None) -> set[str]:
    """The products ``evaluate_benchmark`` evaluates on (captured where it builds the benchmark's items); ``keys``: the
    split keys near-duplicate groups give the rows (what ``split_keys_of`` reads from the store)."""
    from trainer import benchmarks

    seen: list[dict] = []
    monkeypatch.setattr(eval_handler.snapshots, "eval_rows", lambda lake, engine, snapshot: ROWS)
    monkeypatch.setattr(benchmarks, "objective_items", lambda held_out, *a, **k: seen.extend(held_out) or [])
    monkeypatch.setattr(eval_handler.snapshot_set, "split_basis", lambda lake: {"by": "product"})  # the store has no grouping
    monkeypatch.setattr(eval_handler, "split_keys_of", lambda ctx, snapshot, rows, basis: dict(keys or {}) if basis["by"] == "dup_group" else {})
    logs = [] if logs is None else logs
    ctx = SimpleNamespace(lake=None, engine=None, log=lambda message, level="info": logs.append(message))
    from jobs.eval import EvalJob

    job = EvalJob(name="e", snapshot="s", model="/m", out="/o")  # what the handler reads: the spec
    result = eval_handler.evaluate_benchmark(ctx, job, "objective", None, eval_config, None, split_from=adapter_dir)
    assert result == {"items": 0, "scores": {}}
    return {r["product"] for r in seen}


def _adapter(tmp_path: Path, holdout: float, seed: int, split: dict | None = None) -> str:
    folder = tmp_path / "adapter"
    folder.mkdir()
    meta = {"config": TrainConfig(holdout=holdout, seed=seed).to_dict(), **({"split": split} if split else {})}
    (folder / "training_config.json").write_text(json.dumps(meta))
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


def test_an_adapter_split_by_group_is_evaluated_by_group_and_one_split_by_product_is_flagged(monkeypatch, tmp_path):
    # rows p0..p9 tied by near-duplicate photos: one key, so all ten are on one side
    keys = {f"s{i}": "p0" for i in range(10)}
    adapter = _adapter(tmp_path, holdout=0.5, seed=3, split={"by": "dup_group", "grouping": "dhash:12", "version": 5})
    held = _held_out_seen(monkeypatch, tmp_path, TrainConfig(), adapter, keys=keys)
    tied = {f"p{i}" for i in range(10)}
    assert tied <= held or not (tied & held)
    assert held == {r["product"] for r in split_rows(ROWS, 0.5, 3, keys)[1]} != {r["product"] for r in split_rows(ROWS, 0.5, 3)[1]}

    # an adapter trained before splits by group: its own split (by product), and a warning that it may leak
    logs: list[str] = []
    (tmp_path / "old").mkdir()
    old = _adapter(tmp_path / "old", holdout=0.5, seed=3)
    assert _held_out_seen(monkeypatch, tmp_path, TrainConfig(), old, logs=logs, keys=keys) == {r["product"] for r in split_rows(ROWS, 0.5, 3)[1]}
    assert any("split by product, not by near-duplicate group" in line for line in logs)
    assert eval_handler.training_split(old, TrainConfig())[2] == {"by": "product", "possibly_leaking": True}
