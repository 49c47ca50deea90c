"""Launch a job by kind name: the one entry point the command line and the UI use.

Before a job is queued, :func:`check_job` refuses what no live worker could run (a device no live worker
of the job's queue has), so the mistake shows at launch rather than after three failed attempts.
"""
from __future__ import annotations

from typing import Any

from config.settings import Settings, load_settings
from db.app import jobs
from db.app.engine import write_engine
from db.store import open_store

from . import devices as device_names
from .broker import client_for, send_units
from .registry import JobSpec, queue_of, spec_for


class JobRefused(ValueError):
    """The job's parameters ask for what no live worker can give (a device it lacks), or the same job is
    queued or running already."""


def submit_job(kind: str, params: dict[str, Any], *, settings: Settings | None = None, launched_by: str | None = None) -> str:
    """Queue the job; raises :class:`JobRefused` when no live worker of its queue could run it, or when an
    identical job (same kind, same parameters) is queued or running."""
    settings = settings or load_settings()
    spec_for(kind)  # an unknown kind: ValueError naming the known ones
    open_store(settings.store)
    check_job(kind, params, settings=settings)
    engine = write_engine(settings.app_url)
    try:
        job_id, dispatches = jobs.create_job(
            engine, kind=kind, queue=queue_of(kind, params), params=params, launched_by=launched_by or settings.user, refuse_twin=True
        )
    except jobs.DuplicateJob as exc:  # the same job queued or running already (a double click): refused like the rest
        raise JobRefused(str(exc)) from exc
    send_units(client_for(settings), engine, dispatches)
    return job_id


def cancel_job(job_id: str, *, settings: Settings | None = None, by: str | None = None) -> str | None:
    """Ask a job to stop; the request is an entry of the job's log, with who asked (``by``)."""
    settings = settings or load_settings()
    engine = write_engine(settings.app_url)
    if jobs.request_cancel(engine, job_id) is None:
        return None
    jobs.add_log(engine, job_id, f"cancel requested by {by or settings.user}")
    send_units(client_for(settings), engine, jobs.advance_job(engine, job_id))
    return jobs.get_job(engine, job_id).status


def retry_job(job_id: str, *, settings: Settings | None = None, by: str | None = None) -> int:
    """Send a failed or cancelled job's unfinished units again; the retry is an entry of the job's log."""
    settings = settings or load_settings()
    engine = write_engine(settings.app_url)
    dispatches = jobs.retry_job(engine, job_id)
    jobs.add_log(engine, job_id, f"retried by {by or settings.user}: {len(dispatches)} unit(s) sent again")
    send_units(client_for(settings), engine, dispatches)
    return len(dispatches)


def _live(queue: str | None, settings: Settings):
    open_store(settings.store)  # a fresh machine: create the tables before asking them
    return jobs.live_workers(write_engine(settings.app_url), max_age_seconds=max(10.0, settings.lease_seconds), queue=queue)


def queue_has_worker(queue: str, *, settings: Settings | None = None) -> bool:
    return bool(_live(queue, settings or load_settings()))


def requested_device(params: dict[str, Any]) -> str | None:
    """The device a job's parameters ask for, wherever its kind keeps it: at the top (grounding), in its
    training or CLIP config, its OCR settings or its local LLM backend."""
    for holder in (params, params.get("config"), params.get("settings"), params.get("hf")):
        if isinstance(holder, dict) and isinstance(holder.get("device"), str) and holder["device"].strip():
            return holder["device"]
    return None


def check_device(queue: str, device: str | None, *, settings: Settings | None = None) -> str | None:
    """Refuse (:class:`JobRefused`) a device that the live workers of ``queue`` all lack. With no live
    worker of the queue at all the job may still be queued, since one may start later: the returned
    warning says so. Workers that recorded no devices (an older version) are given the benefit of the doubt."""
    settings = settings or load_settings()
    live = _live(queue, settings)
    wanted = device_names.normalise(device) if device else None
    if not live:
        need = f" on a machine with {wanted}" if wanted and wanted != "cpu" else ""
        return f"no live worker serves the {queue!r} queue: the job waits until one starts{need} (`vitpro worker --queues {queue}`)"
    if not wanted or not device_names.is_accelerator(wanted):
        return None
    known = [(w, jobs.worker_devices(w)) for w in live]
    if any(found is None or device_names.serves(found, wanted) for _, found in known):
        return None
    workers = ", ".join(f"{w.id} {'+'.join(found)}" for w, found in known)
    raise JobRefused(f"no live worker of the {queue!r} queue has {wanted} (live workers: {workers}); "
                     f"choose a device they have, or start a worker of that queue on a machine with {wanted}")


def check_live_gpus(queue: str, device: str | None, nproc: int, *, settings: Settings | None = None) -> None:
    """Refuse (:class:`JobRefused`) a run of ``nproc`` processes, one per GPU, that no live worker of
    ``queue`` has the GPUs for (a worker that recorded no devices is given the benefit of the doubt)."""
    wanted = device_names.normalise(device) if device else "cpu"
    if nproc <= 1 or not device_names.is_accelerator(wanted):
        return
    kind = wanted.split(":", 1)[0]
    live = _live(queue, settings or load_settings())
    known = [jobs.worker_devices(w) for w in live]
    if not live or any(found is None or sum(d.split(":", 1)[0] == kind for d in found) >= nproc for found in known):
        return
    most = max(sum(d.split(":", 1)[0] == kind for d in found) for found in known)
    raise JobRefused(f"--nproc {nproc} needs one {kind} device per process, and no live worker of the {queue!r} queue has {nproc} "
                     f"(the most any has is {most}); lower --nproc or start a worker on a machine with {nproc} GPUs")


def check_job(kind: str, params: dict[str, Any], *, settings: Settings | None = None) -> list[str]:
    """What can be known about a job's parameters only from the live workers; returns warnings, raises
    :class:`JobRefused` for a job no live worker could run."""
    settings = settings or load_settings()
    spec = spec_for(kind)
    if spec.check_store is not JobSpec.check_store:  # only the kinds that read something stored before them
        try:
            spec.from_params(params).check_store(settings)
        except ValueError as exc:
            raise JobRefused(str(exc)) from exc
    queue, device = queue_of(kind, params), requested_device(params)
    warning = check_device(queue, device, settings=settings)
    config = params.get("config")
    if isinstance(config, dict) and int(config.get("nproc") or 1) > 1:
        check_live_gpus(queue, device, int(config["nproc"]), settings=settings)
    return [warning] if warning else []
