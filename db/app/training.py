"""Training and evaluation runs in the app tables, and the rows of a snapshot they train and test on."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from db.lake.connection import Lake, at_version

from .models import EvalRun, TrainRun, TrainStep
from .named_rows import get_named, insert_named, list_named, name_taken


class RunError(ValueError):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


def default_name(prefix: str) -> str:
    """A run or evaluation name when none is given: the kind and the UTC time, e.g. train-20261127-001500."""
    return f"{prefix}-{_now():%Y%m%d-%H%M%S}"


# ---- training runs ------------------------------------------------------------------------------------
def create_run(engine: Engine, *, name: str, snapshot: str, base_model: str, config: dict, out_dir: str, created_by: str) -> TrainRun:
    row = TrainRun(name=name, snapshot=snapshot, base_model=base_model, config=config, out_dir=out_dir, status="queued",
                   steps_done=0, summary={}, created_by=created_by, created_at=_now(), updated_at=_now())
    return insert_named(engine, row, lambda: RunError(f"a training run named {name!r} exists already; pick another --name"))


def get_run(engine: Engine, name: str) -> TrainRun:
    return get_named(engine, TrainRun, name, TrainRun.created_at, lambda known: RunError(f"no training run {name!r} (runs: {known})"))


def list_runs(engine: Engine) -> list[TrainRun]:
    return list_named(engine, TrainRun, TrainRun.created_at)


def run_status(engine: Engine, run: TrainRun) -> str:
    """The run's own status, or its job's where the job ended otherwise (failed, cancelled)."""
    from . import jobs

    if run.status == "succeeded" or not run.job_id:
        return run.status
    job = jobs.get_job(engine, run.job_id)
    return job.status if job is not None and job.status in ("failed", "cancelled") else run.status


def update_run(engine: Engine, name: str, **values: Any) -> None:
    with Session(engine) as s, s.begin():
        s.execute(update(TrainRun).where(TrainRun.name == name).values(updated_at=_now(), **values))


def start_steps_at(engine: Engine, run_id: int, step: int) -> None:
    """A run resumed from its checkpoint at ``step`` redoes the steps after it: drop their old rows."""
    with Session(engine) as s, s.begin():
        s.execute(delete(TrainStep).where(TrainStep.run_id == run_id, TrainStep.step > step))


def record_steps(engine: Engine, run_id: int, entries: list[dict[str, Any]]) -> None:
    """Write step rows; a step written before (a retried batch of writes) is replaced, never doubled."""
    if not entries:
        return
    with Session(engine) as s, s.begin():
        s.execute(delete(TrainStep).where(TrainStep.run_id == run_id, TrainStep.step.in_([e["step"] for e in entries])))
        s.add_all(TrainStep(run_id=run_id, **e) for e in entries)


def steps(engine: Engine, run_id: int) -> list[TrainStep]:
    with Session(engine) as s:
        rows = list(s.scalars(select(TrainStep).where(TrainStep.run_id == run_id).order_by(TrainStep.step)))
        s.expunge_all()
        return rows


def check_new_name(engine: Engine, *, run: str | None = None, evaluation: str | None = None) -> None:
    """Refuse a name already taken before a job is launched with it (the job would fail at once)."""
    if run and name_taken(engine, TrainRun, run):
        raise RunError(f"a training run named {run!r} exists already; pick another name")
    if evaluation and name_taken(engine, EvalRun, evaluation):
        raise RunError(f"an evaluation named {evaluation!r} exists already; pick another name")


# ---- evaluation runs ----------------------------------------------------------------------------------
def create_eval(engine: Engine, *, name: str, snapshot: str, model: str, adapter: str | None, config: dict, baseline: str | None,
                created_by: str) -> EvalRun:
    row = EvalRun(name=name, snapshot=snapshot, model=model, adapter=adapter, config=config, results={}, baseline=baseline,
                  created_by=created_by, created_at=_now())
    return insert_named(engine, row, lambda: RunError(f"an evaluation named {name!r} exists already; pick another --name"))


def ensure_eval(engine: Engine, *, name: str, job_id: str, **values: Any) -> None:
    """The evaluation row a job writes into: made on the job's first plan, found again on a retry or a
    redelivered plan; either way it points at this job."""
    try:
        get_eval(engine, name)
    except RunError:
        create_eval(engine, name=name, **values)
    set_eval(engine, name, job_id=job_id)


def get_eval(engine: Engine, name: str) -> EvalRun:
    return get_named(engine, EvalRun, name, EvalRun.created_at, lambda known: RunError(f"no evaluation {name!r} (evaluations: {known})"))


def list_evals(engine: Engine) -> list[EvalRun]:
    return list_named(engine, EvalRun, EvalRun.created_at)


def set_eval(engine: Engine, name: str, **values: Any) -> None:
    with Session(engine) as s, s.begin():
        s.execute(update(EvalRun).where(EvalRun.name == name).values(**values))


# ---- data ---------------------------------------------------------------------------------------------
def product_fields(lake: Lake, sample_ids: list[str], *, version: int | None = None) -> dict[str, dict[str, Any]]:
    """sample_id -> the item's id and its product's title, brand and attributes (a dict); every choice among
    copies by the first written, so one version gives the same fields."""
    if not sample_ids:
        return {}
    v = version
    with lake.probe("_probe_products", "sample_id", sample_ids) as con:
        rows = con.execute(
            f"WITH x AS (SELECT sample_id, item_id FROM {at_version('samples', v)} SEMI JOIN _probe_products USING (sample_id) "
            "  QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1), "
            f"it AS (SELECT i.* FROM {at_version('items', v)} i SEMI JOIN x USING (item_id) "
            "  QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY ingested_at, run_id) = 1), "
            f"cat AS (SELECT c.* FROM {at_version('items', v)} c WHERE c.kind = 'catalog' "
            "  AND c.external_id IN (SELECT product_ref FROM it WHERE kind = 'feedback') "
            "  QUALIFY row_number() OVER (PARTITION BY external_id ORDER BY ingested_at, item_id) = 1) "
            "SELECT x.sample_id, i.item_id, i.title, i.brand, CAST(i.attributes AS VARCHAR), "
            "  p.title, p.brand, CAST(p.attributes AS VARCHAR) "
            "FROM x JOIN it i USING (item_id) LEFT JOIN cat p ON i.kind = 'feedback' AND p.external_id = i.product_ref"
        ).fetchall()

    def attrs(text: str | None) -> dict[str, Any]:
        value = json.loads(text) if text else None
        return value if isinstance(value, dict) else {}

    return {sid: {"item_id": item_id, "title": p_title or title, "brand": p_brand or brand, "attributes": {**attrs(p_attrs), **attrs(own)}}
            for sid, item_id, title, brand, own, p_title, p_brand, p_attrs in rows}
