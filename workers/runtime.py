"""Running one work unit: claim it, keep its lease alive, call the job's handler, record the outcome.

Handlers (``workers/jobs/*``) are thin: they read their batch from the store, call ``curation/`` and write
back with delete-by-run-id + insert in one transaction, so running a unit twice leaves one copy.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

from config.settings import Settings, load_settings
from db.app import jobs
from db.app.engine import write_engine
from db.app.models import PHASE_FINALIZE, PHASE_PLAN, UNIT_CANCELLED
from db.lake.connection import Lake
from db.storage.blobs import open_blobs
from db.store import open_store

log = logging.getLogger("vitpro.worker")


class Cancelled(Exception):
    """The job was cancelled; the unit stops between batches."""


class LeaseLost(Exception):
    """Another worker took this unit back (this one stalled past its lease); stop without writing."""


class PermanentError(Exception):
    """An error retrying cannot fix (missing source, bad mapping): fail the unit at once."""


class UnitContext:
    """What a handler gets: its payload and params, the store, and ways to report and stop."""

    def __init__(self, settings: Settings, claimed: jobs.ClaimedUnit, owner: str):
        self.settings = settings
        self.claimed = claimed
        self.owner = owner
        self.engine = write_engine(settings.app_url)
        self._lake: Lake | None = None
        self._done = 0
        self._lease_lost = threading.Event()
        self._stop = threading.Event()
        self._last_cancel_check = 0.0
        self._last_progress_write = time.monotonic()
        self._cancelled = False
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-{claimed.unit_id}", daemon=True)
        self._heartbeat.start()

    # ---- identity ------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.claimed.unit_id

    @property
    def job_id(self) -> str:
        return self.claimed.job_id

    @property
    def params(self) -> dict[str, Any]:
        return self.claimed.params

    @functools.cached_property
    def spec(self):
        """The job's spec as its kind's dataclass (jobs/<kind>.py), read back from the stored parameters:
        what a handler reads, so that a field and its default are the spec's and nobody's string key."""
        from jobs.registry import spec_for

        try:
            return spec_for(self.claimed.kind).from_params(self.claimed.params)
        except ValueError as exc:  # stored parameters this version cannot read: no retry will read them either
            raise PermanentError(f"cannot read the job's parameters: {exc}") from exc

    @property
    def payload(self) -> dict[str, Any]:
        return self.claimed.payload

    @property
    def blobs(self):
        """The image store: a folder, or S3 read through this machine's cache (db/storage/blobs.py)."""
        return open_blobs(self.settings)

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            self._lake = open_store(self.settings.store)
        return self._lake

    # ---- reporting -----------------------------------------------------------------------------------
    def log(self, message: str, level: str = "info") -> None:
        """A line in the job's log (shown by `vitpro jobs show` and the UI). Never put row text here."""
        getattr(log, level if level in ("info", "warning", "error") else "info")("%s: %s", self.run_id, message)
        try:
            jobs.add_log(self.engine, self.job_id, message, unit_id=self.run_id, level=level)
        except Exception:  # a log line is never worth failing the unit
            log.exception("could not write a job log line")

    def progress(self, done: int) -> None:
        """Record how far the unit got; written at most once a second (and with every heartbeat)."""
        self._done = done
        now = time.monotonic()
        if now - self._last_progress_write >= 1.0:
            self._last_progress_write = now
            if not jobs.renew_lease(self.engine, self.run_id, self.owner, self.settings.lease_seconds, done):
                self._lease_lost.set()

    def check(self) -> None:
        """Call between batches: raises if the job was cancelled or the lease was lost."""
        if self._lease_lost.is_set():
            raise LeaseLost(self.run_id)
        now = time.monotonic()
        if now - self._last_cancel_check > 1.0:
            self._last_cancel_check = now
            self._cancelled = jobs.is_cancel_requested(self.engine, self.job_id)
        if self._cancelled and self.claimed.phase != PHASE_FINALIZE:
            raise Cancelled(self.job_id)

    # ---- lease ---------------------------------------------------------------------------------------
    def _beat(self) -> None:
        interval = self.settings.heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                ok = jobs.renew_lease(self.engine, self.run_id, self.owner, self.settings.lease_seconds, self._done)
            except Exception:
                log.exception("heartbeat failed; will try again")
                continue
            if not ok:
                self._lease_lost.set()
                return

    def close(self) -> None:
        self._stop.set()
        self._heartbeat.join(timeout=5)


def _handlers() -> dict[str, Any]:
    from .jobs.registry import load_handlers

    return load_handlers()


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def execute_unit(unit_id: str, *, settings: Settings | None = None, send: Callable | None = None) -> str:
    """Run one unit to an outcome; returns a short word for Celery's log."""
    settings = settings or load_settings()
    engine = write_engine(settings.app_url)
    owner = owner_id()
    claimed = jobs.claim_unit(engine, unit_id, owner, settings.lease_seconds)
    if claimed is None:
        # Duplicate message, finished unit, or cancelled job: still move the job on.
        _advance(settings, engine, unit_id.rsplit(".", 1)[0], send)
        return "skipped"
    handler = _handlers()[claimed.kind]
    ctx = UnitContext(settings, claimed, owner)
    outcome = "done"
    try:
        if claimed.phase == PHASE_PLAN:
            specs, summary = handler.plan(ctx)
            ctx.check()
            if not jobs.complete_plan(engine, unit_id, owner, specs, summary):
                outcome = "lease-lost"
            else:
                ctx.log(f"planned {len(specs)} unit(s)")
        else:
            runner = handler.finalize if claimed.phase == PHASE_FINALIZE else handler.run
            result = runner(ctx)
            ctx.check()
            if not jobs.complete_unit(engine, unit_id, owner, result):
                outcome = "lease-lost"
    except Cancelled:
        jobs.complete_unit(engine, unit_id, owner, {}, status=UNIT_CANCELLED)
        ctx.log("cancelled between batches")
        outcome = "cancelled"
    except LeaseLost:
        log.warning("%s: lease lost, another worker has the unit; stopping", unit_id)
        outcome = "lease-lost"
    except PermanentError as exc:
        detail = _safe_message(str(exc), settings)
        jobs.fail_attempt(engine, unit_id, owner, detail, settings.max_unit_attempts, permanent=True)
        ctx.log(f"failed: {detail}", level="error")
        outcome = "failed"
    except Exception as exc:  # anything else may be passing (a locked file, a full disk): retry
        detail = _safe_message(f"{exc.__class__.__name__}: {exc}", settings)
        status = jobs.fail_attempt(engine, unit_id, owner, detail, settings.max_unit_attempts)
        delay = min(2 ** claimed.attempts, 30)  # back-off: 2, 4, 8 ... s, at most 30
        ctx.log(f"attempt {claimed.attempts} failed ({detail}); {f'will retry in {delay} s' if status == 'pending' else 'giving up'}", level="error")
        if status == "pending":
            _send(settings, engine, [(unit_id, claimed.queue)], send, countdown=delay)
        outcome = "retry" if status == "pending" else "failed"
    finally:
        ctx.close()
    _advance(settings, engine, claimed.job_id, send)
    return outcome


def _safe_message(message: str, settings: Settings) -> str:
    """An exception message may quote the data it choked on; redact it before it reaches a log or a row.
    A secret of the object store never does, whatever quoted it."""
    from db.storage.objects import secret_values

    for secret in secret_values():
        message = message.replace(secret, "***")
    if not settings.redact:
        return message[:2000]
    from curation.redaction import Redactor

    # redact first, then cut: a cut first could leave half an e-mail address no rule recognises
    return Redactor().redact(message[:20_000]).text[:2000]


def _send(settings: Settings, engine, dispatches, send: Callable | None, countdown: float = 0) -> None:
    if not dispatches:
        return
    if send is not None:
        send(dispatches)
        return
    from jobs.broker import send_units

    from .app import app_for

    send_units(app_for(settings), engine, dispatches, countdown=countdown)


def _advance(settings: Settings, engine, job_id: str, send: Callable | None) -> None:
    _send(settings, engine, jobs.advance_job(engine, job_id), send)
