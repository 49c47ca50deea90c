"""Job and work-unit state, kept in the app tables; every transition is one conditional UPDATE.

Crash recovery is ours, not the broker's, as neither broker gives it in time: the embedded broker never
redelivers a task whose worker was killed, Redis only after an hour. So a worker *claims* a unit with a
lease, renews it by heartbeat while it works, and any worker's reaper puts a unit whose lease expired
back to ``pending`` and sends it again. A message delivered twice finds its unit taken or done and does
nothing.

A job has phases: 0 = plan (splits the work into units), 1 = the units, 2 = finalize. Units of a phase
become runnable when every unit of the earlier phases has finished.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from .models import (
    JOB_CANCELLED,
    JOB_CANCELLING,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_TERMINAL,
    PHASE_FINALIZE,
    PHASE_PLAN,
    PHASE_WORK,
    UNIT_BLOCKED,
    UNIT_CANCELLED,
    UNIT_DONE,
    UNIT_FAILED,
    UNIT_LEASED,
    UNIT_PENDING,
    UNIT_TERMINAL,
    Job,
    JobLog,
    WorkerRecord,
    WorkUnit,
)

LOG_KEEP = 500  # lines kept per job; the UI and `jobs show` read the tail


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _now(s: Session) -> datetime:
    """The clock leases are measured by. On PostgreSQL, where workers on several machines share the
    tables, the database's clock: a reaper whose own clock ran ahead would take back live leases."""
    if s.get_bind().dialect.name == "postgresql":
        return s.scalar(select(func.now()))
    return utcnow()


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass
class ClaimedUnit:
    unit_id: str
    job_id: str
    kind: str
    queue: str
    phase: int
    payload: dict[str, Any]
    params: dict[str, Any]
    attempts: int
    size: int


@dataclass
class UnitSpec:
    payload: dict[str, Any]
    size: int = 0


Dispatch = tuple[str, str]  # (unit id, queue)


def new_job_id(kind: str) -> str:
    return f"{kind}-{utcnow():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


FINALIZE_SEQ = 2_000_000_000  # after any work unit, however many a plan makes


def unit_id(job_id: str, seq: int) -> str:
    return f"{job_id}.final" if seq == FINALIZE_SEQ else f"{job_id}.{seq:05d}"


# ---- creating ----------------------------------------------------------------------------------------
class DuplicateJob(ValueError):
    """A job of the same kind with the same parameters is queued or running already."""

    def __init__(self, job_id: str, status: str, launched_by: str | None):
        self.job_id = job_id
        super().__init__(f"an identical job is already {status}: {job_id} (launched by {launched_by or 'someone'}); "
                         f"wait for it, or cancel it (`vitpro jobs cancel {job_id}`) and launch again")


def create_job(
    engine: Engine,
    *,
    kind: str,
    queue: str,
    params: dict[str, Any],
    launched_by: str,
    plan_payload: dict[str, Any] | None = None,
    finalize: bool = True,
    refuse_twin: bool = False,
) -> tuple[str, list[Dispatch]]:
    """Insert the job with its plan unit (and a blocked finalize unit); returns what to send.

    ``refuse_twin`` (what a user's launch asks, jobs/submit.py): refuse (:class:`DuplicateJob`) when a job
    of the same kind with the same parameters is queued or running, as a double click or the same command
    typed twice would do the work twice. The check and the insert are one write transaction (SQLite's BEGIN
    IMMEDIATE; a transaction-scoped advisory lock on PostgreSQL), so two launches in the same instant cannot
    both pass it."""
    now = utcnow()
    job_id = new_job_id(kind)
    with Session(engine) as s, s.begin():
        if refuse_twin and s.bind.dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext('vitpro.create_job'))"))
        for twin in ([] if not refuse_twin else s.scalars(select(Job).where(Job.kind == kind, Job.status.in_((JOB_QUEUED, JOB_RUNNING))))):
            if twin.params == params:  # compared as JSON values, as stored (a few active jobs of a kind at most)
                raise DuplicateJob(twin.id, twin.status, twin.launched_by)
        s.add(
            Job(
                id=job_id,
                kind=kind,
                queue=queue,
                params=params,
                status=JOB_QUEUED,
                progress_done=0,
                progress_total=0,
                counts={},
                cancel_requested=False,
                launched_by=launched_by,
                created_at=now,
                updated_at=now,
            )
        )
        s.flush()
        s.add(_new_unit(job_id, 0, PHASE_PLAN, plan_payload or {}, 0, UNIT_PENDING))
        if finalize:
            s.add(_new_unit(job_id, FINALIZE_SEQ, PHASE_FINALIZE, {}, 0, UNIT_BLOCKED))
    return job_id, [(unit_id(job_id, 0), queue)]


def _unit_row(job_id: str, seq: int, phase: int, payload: dict, size: int, status: str) -> dict[str, Any]:
    return {"id": unit_id(job_id, seq), "job_id": job_id, "seq": seq, "phase": phase, "payload": payload, "size": size, "done": 0,
            "status": status, "attempts": 0, "dispatch_count": 0, "result": {}}


def _new_unit(job_id: str, seq: int, phase: int, payload: dict, size: int, status: str) -> WorkUnit:
    return WorkUnit(**_unit_row(job_id, seq, phase, payload, size, status))


# ---- claiming and leases -----------------------------------------------------------------------------
def claim_unit(engine: Engine, uid: str, owner: str, lease_seconds: float) -> ClaimedUnit | None:
    """Take the unit if it is free (pending, or leased with an expired lease). None if someone has it,
    it is finished, or its job was cancelled (the unit is then marked cancelled)."""
    with Session(engine) as s, s.begin():
        now = _now(s)
        result = s.execute(
            update(WorkUnit)
            .where(
                WorkUnit.id == uid,
                or_(
                    WorkUnit.status == UNIT_PENDING,
                    and_(WorkUnit.status == UNIT_LEASED, WorkUnit.lease_expires_at < now),
                ),
            )
            .values(
                status=UNIT_LEASED,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                attempts=WorkUnit.attempts + 1,
                started_at=func.coalesce(WorkUnit.started_at, now),
            )
        )
        if result.rowcount != 1:
            return None
        unit = s.get(WorkUnit, uid)
        job = s.get(Job, unit.job_id)
        if job.cancel_requested and unit.phase != PHASE_FINALIZE:
            unit.status, unit.finished_at, unit.lease_owner = UNIT_CANCELLED, now, None
            return None
        if job.status == JOB_QUEUED:
            job.status, job.started_at = JOB_RUNNING, now
        job.updated_at = now
        return ClaimedUnit(uid, job.id, job.kind, job.queue, unit.phase, dict(unit.payload or {}), dict(job.params or {}), unit.attempts, unit.size)


def renew_lease(engine: Engine, uid: str, owner: str, lease_seconds: float, done: int | None = None) -> bool:
    """Heartbeat; False means the lease was lost (taken back by a reaper) and the work must stop."""
    with Session(engine) as s, s.begin():
        now = _now(s)
        values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_seconds), "heartbeat_at": now}
        if done is not None:
            values["done"] = done
        result = s.execute(
            update(WorkUnit)
            .where(WorkUnit.id == uid, WorkUnit.lease_owner == owner, WorkUnit.status == UNIT_LEASED)
            .values(**values)
        )
        return result.rowcount == 1


def _finish(s: Session, uid: str, owner: str, status: str, **values) -> bool:
    now = utcnow()
    result = s.execute(
        update(WorkUnit)
        .where(WorkUnit.id == uid, WorkUnit.lease_owner == owner, WorkUnit.status == UNIT_LEASED)
        .values(status=status, finished_at=now, lease_expires_at=None, **values)
    )
    return result.rowcount == 1


def complete_unit(engine: Engine, uid: str, owner: str, result: dict[str, Any], status: str = UNIT_DONE) -> bool:
    with Session(engine) as s, s.begin():
        unit = s.get(WorkUnit, uid)
        done = unit.size if unit is not None and status == UNIT_DONE else (unit.done if unit else 0)
        return _finish(s, uid, owner, status, result=result, done=done)


def complete_plan(engine: Engine, uid: str, owner: str, specs: list[UnitSpec], result: dict[str, Any]) -> bool:
    """Record the work units and finish the plan unit in one transaction: a plan that crashes halfway
    leaves nothing behind and simply runs again."""
    with Session(engine) as s, s.begin():
        unit = s.get(WorkUnit, uid)
        if unit is None or unit.lease_owner != owner or unit.status != UNIT_LEASED:
            return False
        # one multi-row INSERT per chunk rather than an ORM object per unit: 100,000 units in ~1 s, not ~9
        rows = [_unit_row(unit.job_id, seq, PHASE_WORK, spec.payload, spec.size, UNIT_BLOCKED) for seq, spec in enumerate(specs, start=1)]
        for start in range(0, len(rows), 5000):
            s.execute(insert(WorkUnit), rows[start:start + 5000])
        result = dict(result, units=len(specs))
        return _finish(s, uid, owner, UNIT_DONE, result=result)


def fail_attempt(engine: Engine, uid: str, owner: str, error: str, max_attempts: int, *, permanent: bool = False) -> str:
    """After an exception: back to pending for another try, or failed for good. Returns the new status."""
    with Session(engine) as s, s.begin():
        unit = s.get(WorkUnit, uid)
        if unit is None or unit.lease_owner != owner or unit.status != UNIT_LEASED:
            return unit.status if unit else "missing"
        if permanent or unit.attempts >= max_attempts:
            _finish(s, uid, owner, UNIT_FAILED, error=error)
            return UNIT_FAILED
        unit.status, unit.lease_owner, unit.lease_expires_at, unit.error = UNIT_PENDING, None, None, error
        return UNIT_PENDING


def mark_dispatched(engine: Engine, uids: Iterable[str]) -> None:
    uids = list(uids)
    if not uids:
        return
    with Session(engine) as s, s.begin():
        s.execute(
            update(WorkUnit)
            .where(WorkUnit.id.in_(uids))
            .values(dispatched_at=utcnow(), dispatch_count=WorkUnit.dispatch_count + 1)
        )


# ---- moving a job forward ----------------------------------------------------------------------------
def _sum_counts(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for result in results:
        for key, value in (result or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in total.items()}


def advance_job(engine: Engine, job_id: str) -> list[Dispatch]:
    """Recompute progress, release the next phase, finish the job; idempotent, any process may call it.

    Runs after every unit, so it works on aggregates (GROUP BY phase, status) and set-based UPDATEs, not
    on the job's units one by one: a job of 10,000 units must not read 10,000 rows per finished unit.
    """
    now = utcnow()
    with Session(engine) as s, s.begin():
        job = s.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if job is None or job.status in JOB_TERMINAL:
            return []
        of_job = WorkUnit.job_id == job_id
        if job.cancel_requested:
            started = s.scalar(
                select(func.count()).where(of_job, WorkUnit.phase == PHASE_WORK, WorkUnit.attempts > 0)
            )
            # finalize tidies what work units wrote; if none ever ran there is nothing to tidy
            phases = [PHASE_PLAN, PHASE_WORK] + ([] if started else [PHASE_FINALIZE])
            s.execute(
                update(WorkUnit)
                .where(of_job, WorkUnit.phase.in_(phases), WorkUnit.status.in_((UNIT_PENDING, UNIT_BLOCKED)))
                .values(status=UNIT_CANCELLED, finished_at=now)
            )
        rows = s.execute(
            select(WorkUnit.phase, WorkUnit.status, func.count(), func.sum(WorkUnit.size), func.sum(WorkUnit.done))
            .where(of_job)
            .group_by(WorkUnit.phase, WorkUnit.status)
        ).all()
        job.progress_total = int(sum(size or 0 for phase, _, _, size, _ in rows if phase == PHASE_WORK))
        job.progress_done = int(sum(done or 0 for phase, _, _, _, done in rows if phase == PHASE_WORK))
        job.updated_at = now
        open_phases = sorted({phase for phase, status, *_ in rows if status not in UNIT_TERMINAL})
        to_send: list[Dispatch] = []
        if open_phases:
            first_open = open_phases[0]
            if any(phase == first_open and status == UNIT_BLOCKED for phase, status, *_ in rows):
                ids = list(
                    s.scalars(select(WorkUnit.id).where(of_job, WorkUnit.phase == first_open, WorkUnit.status == UNIT_BLOCKED))
                )
                # same predicate as the SELECT, under the same write lock: no id list in the statement
                s.execute(
                    update(WorkUnit)
                    .where(of_job, WorkUnit.phase == first_open, WorkUnit.status == UNIT_BLOCKED)
                    .values(status=UNIT_PENDING)
                )
                to_send = [(uid, job.queue) for uid in ids]
            if job.cancel_requested:
                job.status = JOB_CANCELLING
            elif job.status == JOB_QUEUED and any(status != UNIT_PENDING for _, status, *_ in rows):
                job.status = JOB_RUNNING
        else:
            _close_job(job, list(s.scalars(select(WorkUnit).where(of_job))), now)
        return to_send


def _close_job(job: Job, units: list[WorkUnit], now: datetime) -> None:
    work = [u for u in units if u.phase == PHASE_WORK]
    counts = _sum_counts(u.result for u in work)
    # plan and finalize may set figures outright; finalize recounts from the store, so a retried job
    # reports what is stored, not the sum of every attempt
    for phase in (PHASE_PLAN, PHASE_FINALIZE):
        for u in units:
            if u.phase == phase and u.status == UNIT_DONE and u.result:
                counts.update(u.result.get("set") or {})
    failed = [u for u in units if u.status == UNIT_FAILED]
    job.counts = counts
    job.finished_at = now
    if job.cancel_requested:
        job.status = JOB_CANCELLED
    elif failed:
        job.status = JOB_FAILED
        first = failed[0]
        job.error = f"{len(failed)} of {len(units)} units failed; first ({first.id}): {first.error}"
    else:
        job.status = JOB_SUCCEEDED


def request_cancel(engine: Engine, job_id: str) -> str | None:
    with Session(engine) as s, s.begin():
        job = s.get(Job, job_id)
        if job is None:
            return None
        if job.status not in JOB_TERMINAL:
            job.cancel_requested = True
            job.status = JOB_CANCELLING
            job.updated_at = utcnow()
        return job.status


def retry_job(engine: Engine, job_id: str) -> list[Dispatch]:
    """Give failed and cancelled units another go (their writes are idempotent); returns what to send."""
    with Session(engine) as s, s.begin():
        job = s.get(Job, job_id)
        if job is None or job.status not in (JOB_FAILED, JOB_CANCELLED):
            return []
        units = list(s.execute(select(WorkUnit).where(WorkUnit.job_id == job_id)).scalars())
        for u in units:
            if u.status in (UNIT_FAILED, UNIT_CANCELLED):
                u.status, u.attempts, u.error, u.lease_owner = UNIT_BLOCKED, 0, None, None
        finalize = [u for u in units if u.phase == PHASE_FINALIZE]
        for u in finalize:
            u.status = UNIT_BLOCKED
        job.status, job.cancel_requested, job.error, job.finished_at = JOB_RUNNING, False, None, None
        job.updated_at = utcnow()
    return advance_job(engine, job_id)


# ---- recovery ----------------------------------------------------------------------------------------
def redispatch_delay(lease_seconds: float, dispatch_count: int) -> float:
    """How long a pending unit may wait before its message is presumed lost and sent again. Doubles each
    time, so a long queue is not flooded with copies (a copy is harmless: its claim fails)."""
    return 2 * lease_seconds * 2 ** min(max(dispatch_count - 1, 0), 6)


def reap(engine: Engine, lease_seconds: float, max_attempts: int) -> list[Dispatch]:
    """Take back expired leases, resend units whose message was lost, move stalled jobs on."""
    to_send: list[Dispatch] = []
    with Session(engine) as s, s.begin():
        now = _now(s)
        expired = list(
            s.execute(
                select(WorkUnit.id, WorkUnit.attempts, Job.queue)
                .join(Job, Job.id == WorkUnit.job_id)
                .where(WorkUnit.status == UNIT_LEASED, WorkUnit.lease_expires_at < now)
            )
        )
        for uid, attempts, queue in expired:
            give_up = attempts >= max_attempts
            changed = s.execute(
                update(WorkUnit)
                .where(WorkUnit.id == uid, WorkUnit.status == UNIT_LEASED, WorkUnit.lease_expires_at < now)
                .values(
                    status=UNIT_FAILED if give_up else UNIT_PENDING,
                    lease_owner=None,
                    lease_expires_at=None,
                    error=f"worker stopped heartbeating (attempt {attempts} of {max_attempts})",
                    finished_at=now if give_up else None,
                )
            ).rowcount
            if changed and not give_up:
                to_send.append((uid, queue))
        # Where workers are claiming and heartbeating, messages are flowing and a pending unit is most
        # likely waiting its turn: wait eight times longer there before presuming its message lost.
        flowing = set(
            s.scalars(
                select(Job.queue)
                .join(WorkUnit, WorkUnit.job_id == Job.id)
                .where(WorkUnit.heartbeat_at >= now - timedelta(seconds=lease_seconds))
                .distinct()
            )
        )
        pending = s.execute(
            select(WorkUnit.id, WorkUnit.dispatched_at, WorkUnit.dispatch_count, Job.queue)
            .join(Job, Job.id == WorkUnit.job_id)
            .where(WorkUnit.status == UNIT_PENDING, Job.status.not_in(JOB_TERMINAL))
        )
        resending = {uid for uid, _ in to_send}
        for uid, dispatched_at, count, queue in pending:
            dispatched_at = _aware(dispatched_at)
            delay = redispatch_delay(lease_seconds, count) * (8 if queue in flowing else 1)
            late = dispatched_at is None or (now - dispatched_at).total_seconds() > delay
            if late and uid not in resending:
                to_send.append((uid, queue))
        active = [j for (j,) in s.execute(select(Job.id).where(Job.status.not_in(JOB_TERMINAL)))]
    for job_id in active:
        to_send.extend(advance_job(engine, job_id))
    return to_send


# ---- logs, workers, reading --------------------------------------------------------------------------
def add_log(engine: Engine, job_id: str, message: str, *, unit_id: str | None = None, level: str = "info") -> None:
    with Session(engine) as s, s.begin():
        s.add(JobLog(job_id=job_id, unit_id=unit_id, ts=utcnow(), level=level, message=message[:4000]))
        count = s.scalar(select(func.count()).select_from(JobLog).where(JobLog.job_id == job_id))
        if count and count > LOG_KEEP + 50:
            cutoff = s.scalar(
                select(JobLog.id).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).offset(LOG_KEEP).limit(1)
            )
            s.execute(delete(JobLog).where(JobLog.job_id == job_id, JobLog.id <= cutoff))


def log_tail(engine: Engine, job_id: str, n: int = 20) -> list[JobLog]:
    with Session(engine) as s:
        rows = list(s.execute(select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(n)).scalars())
        s.expunge_all()
    return rows[::-1]


def get_job(engine: Engine, job_id: str) -> Job | None:
    with Session(engine) as s:
        job = s.get(Job, job_id)
        if job is None:
            matches = list(s.execute(select(Job).where(Job.id.like(f"{job_id}%")).limit(2)).scalars())
            job = matches[0] if len(matches) == 1 else None
        if job is not None:
            s.expunge(job)
        return job


def list_jobs(engine: Engine, *, limit: int = 20, status: str | None = None, kind: str | None = None) -> list[Job]:
    with Session(engine) as s:
        q = select(Job).order_by(Job.created_at.desc()).limit(limit)
        if status:
            q = q.where(Job.status == status)
        if kind:
            q = q.where(Job.kind == kind)
        rows = list(s.execute(q).scalars())
        s.expunge_all()
        return rows


def ended_since(engine: Engine, launched_by: str, since: datetime, *, limit: int = 20) -> list[Job]:
    """Jobs ``launched_by`` launched that ended after ``since``, oldest first (what the app tells its user)."""
    with Session(engine) as s:
        rows = list(s.scalars(select(Job).where(Job.launched_by == launched_by, Job.status.in_(JOB_TERMINAL), Job.finished_at > since)
                              .order_by(Job.finished_at).limit(limit)))
        s.expunge_all()
        return rows


def job_units(engine: Engine, job_id: str) -> list[WorkUnit]:
    with Session(engine) as s:
        rows = list(s.execute(select(WorkUnit).where(WorkUnit.job_id == job_id).order_by(WorkUnit.phase, WorkUnit.seq)).scalars())
        s.expunge_all()
        return rows


def work_results(engine: Engine, job_id: str) -> list[dict[str, Any]]:
    """What the finished work units of a job reported (finalize recounts from these and the lake)."""
    with Session(engine) as s:
        return [
            dict(r or {})
            for r in s.scalars(
                select(WorkUnit.result).where(WorkUnit.job_id == job_id, WorkUnit.phase == PHASE_WORK, WorkUnit.status == UNIT_DONE)
            )
        ]


def is_cancel_requested(engine: Engine, job_id: str) -> bool:
    with Session(engine) as s:
        return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def touch_worker(engine: Engine, worker_id: str, hostname: str, pid: int, queues: str, devices: str | None = None) -> None:
    """Register the worker, or say it is still alive. ``devices`` ("cpu" or "cpu,cuda:0,cuda:1"): what it
    can run on, recorded so that a job asking for a device no live worker has is refused at launch."""
    with Session(engine) as s, s.begin():
        now = _now(s)
        record = s.get(WorkerRecord, worker_id)
        if record is None:
            s.add(WorkerRecord(id=worker_id, hostname=hostname, pid=pid, queues=queues, devices=devices, started_at=now, last_seen=now))
        else:
            record.last_seen = now
            if devices is not None and record.devices != devices:
                record.devices = devices


def remove_worker(engine: Engine, worker_id: str) -> None:
    with Session(engine) as s, s.begin():
        s.execute(delete(WorkerRecord).where(WorkerRecord.id == worker_id))


def lease_owners(engine: Engine) -> list[str]:
    """The owners (``host:pid:nonce``) of the units leased now: which processes are in the middle of a unit."""
    with Session(engine) as s:
        return [o for o in s.scalars(select(WorkUnit.lease_owner).where(WorkUnit.status == UNIT_LEASED)) if o]


def live_workers(engine: Engine, max_age_seconds: float, *, queue: str | None = None) -> list[WorkerRecord]:
    """Workers seen in the last ``max_age_seconds``; with ``queue``, only those that serve it."""
    with Session(engine) as s:
        cutoff = _now(s) - timedelta(seconds=max_age_seconds)
        rows = list(s.execute(select(WorkerRecord).where(WorkerRecord.last_seen >= cutoff).order_by(WorkerRecord.id)).scalars())
        s.expunge_all()
    # queues is a comma-separated list; a handful of rows, so filter here rather than in SQL
    return [w for w in rows if queue is None or queue in (w.queues or "").split(",")]


def worker_devices(worker: WorkerRecord) -> list[str] | None:
    """The devices a worker recorded; None for a worker that recorded none (started by an older version)."""
    return [d for d in (worker.devices or "").split(",") if d] if worker.devices else None


def status_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {status: n for status, n in s.execute(select(Job.status, func.count()).group_by(Job.status))}
