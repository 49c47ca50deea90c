"""Launch a job by kind name: the one entry point the command line and the UI use."""
from __future__ import annotations

from typing import Any

from db import jobs
from db.app_engine import write_engine
from db.store import open_store
from vitpro.settings import Settings, load_settings

from .jobs import HANDLERS, queue_of


def submit_job(kind: str, params: dict[str, Any], *, settings: Settings | None = None, launched_by: str | None = None) -> str:
    settings = settings or load_settings()
    if kind not in HANDLERS:
        raise ValueError(f"unknown job kind {kind!r}; kinds: {', '.join(sorted(HANDLERS))}")
    open_store(settings.store)
    engine = write_engine(settings.app_url)
    job_id, dispatches = jobs.create_job(
        engine, kind=kind, queue=queue_of(kind, params), params=params, launched_by=launched_by or settings.user
    )
    from .app import app_for
    from .dispatch import send_units

    send_units(app_for(settings), engine, dispatches)
    return job_id


def cancel_job(job_id: str, *, settings: Settings | None = None) -> str | None:
    settings = settings or load_settings()
    engine = write_engine(settings.app_url)
    if jobs.request_cancel(engine, job_id) is None:
        return None
    from .app import app_for
    from .dispatch import send_units

    send_units(app_for(settings), engine, jobs.advance_job(engine, job_id))
    return jobs.get_job(engine, job_id).status


def retry_job(job_id: str, *, settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    engine = write_engine(settings.app_url)
    dispatches = jobs.retry_job(engine, job_id)
    from .app import app_for
    from .dispatch import send_units

    send_units(app_for(settings), engine, dispatches)
    return len(dispatches)


def queue_has_worker(queue: str, *, settings: Settings | None = None) -> bool:
    settings = settings or load_settings()
    open_store(settings.store)  # a fresh machine: create the tables before asking them
    live = jobs.live_workers(write_engine(settings.app_url), max_age_seconds=max(10.0, settings.lease_seconds))
    return any(queue in w.queues.split(",") for w in live)
