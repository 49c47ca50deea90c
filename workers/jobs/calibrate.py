"""The calibration job: fit a logistic regression over the grounding signals on a pilot's labels
(curation/calibration.py) and write ``grounded_p`` for every sample with all the signals, under the model id
``pilot:NAME``. The fit (signals, weights, cross-validated AUC, labels it rests on) is the job's result and
its log: the lineage of every ``grounded_p`` row (their run id names this job)."""
from __future__ import annotations

from typing import Any

from curation.calibration import CalibrationError, complete, fit, probabilities
from curation.pilot_results import pilot_labels
from db.app.jobs import UnitSpec
from db.lake import batches
from db.reads.scoring_reads import sample_signals
from jobs.calibrate import CalibrateJob

from ..runtime import PermanentError, UnitContext
from .registry import add_handler

WRITE_BATCH = 200_000  # rows per write (a million samples: five writes, each one transaction)


def model_id(pilot: str) -> str:
    return f"pilot:{pilot}"


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    return [UnitSpec({}, 1)], {}


def run(ctx: UnitContext) -> dict[str, Any]:
    job: CalibrateJob = ctx.spec
    try:
        pilot, labels = pilot_labels(ctx.engine, job.pilot)
    except Exception as exc:  # no such pilot
        raise PermanentError(str(exc)) from exc
    cfg = pilot.config or {}
    if not cfg.get("vis_model"):
        raise PermanentError(f"pilot {job.pilot!r} names no VLM: its signals cannot be read")
    signals = [s for s in job.signals if s != "clip_score" or cfg.get("clip_model")]
    features = sample_signals(ctx.lake, vis_model=cfg["vis_model"], clip_model=cfg.get("clip_model"), segment=cfg.get("segment", "answer"), signals=signals)
    missing = [s for s in signals if not any(row.get(s) is not None for row in features.values())]
    if missing:  # the signals asked for are an upper bound: those never stored for the pilot's models are left out, and said
        ctx.log(f"left out, stored for no sample by the pilot's models: {', '.join(missing)}", level="warning")
        signals = [s for s in signals if s not in missing]
        features = {sid: {k: v for k, v in row.items() if k in signals} for sid, row in features.items()}
    if not signals:
        raise PermanentError(f"none of {', '.join(job.signals)} is stored for pilot {job.pilot!r}'s models: run `vitpro score grounding` first")
    try:
        found = fit(features, labels, signals, folds=job.folds, seed=job.seed)
    except CalibrationError as exc:
        raise PermanentError(f"pilot {job.pilot!r}: {exc}") from exc
    ctx.log(found.describe())
    for warning in found.warnings:
        ctx.log(warning, level="warning")
    scored = probabilities(found, complete(features, signals))
    now = batches.now_utc()
    ids = list(scored)
    for start in range(0, len(ids), WRITE_BATCH):
        rows = [{"subject_kind": "sample", "subject_id": sid, "metric": "grounded_p", "model_id": model_id(job.pilot), "segment": "",
                 "value": scored[sid], "flags": None, "run_id": f"{ctx.run_id}.{start}", "created_at": now} for sid in ids[start : start + WRITE_BATCH]]
        batches.replace_metric(ctx.lake, "grounded_p", model_id(job.pilot), rows, first=start == 0)
    return {"labels": found.n, "cv_auc": round(found.cv_auc, 4), "cv_auc_low": round(found.cv_auc_ci[0], 4), "cv_auc_high": round(found.cv_auc_ci[1], 4),
            "samples_scored": len(ids), "samples_without_every_signal": len(features) - len(ids), "signals": ",".join(found.signals),
            "weights": ", ".join(f"{s} {c:+.3f}" for s, c in zip(found.signals, found.coef))}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}


add_handler("calibrate", plan=plan, run=run, finalize=finalize)
