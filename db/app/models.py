"""The app's own rows (jobs, work units, logs, workers, users) as SQLAlchemy tables.

They live in the same SQLite or PostgreSQL database as the DuckLake catalog. They are small, written by
many processes and need real transactions (a conditional UPDATE claims a unit), which DuckLake's
optimistic commits are not made for. Schema changes go through Alembic (``db/app/migrations``).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Job and unit states. Terminal states never change again.
JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLING, JOB_CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelling",
    "cancelled",
)
JOB_TERMINAL = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)

UNIT_BLOCKED, UNIT_PENDING, UNIT_LEASED, UNIT_DONE, UNIT_FAILED, UNIT_CANCELLED = (
    "blocked",  # waits for the units of an earlier phase
    "pending",  # may be taken by any worker
    "leased",  # a worker holds it and renews its lease
    "done",
    "failed",
    "cancelled",
)
UNIT_TERMINAL = (UNIT_DONE, UNIT_FAILED, UNIT_CANCELLED)

# Phases of a job: the plan unit splits the work into units, the work units run in parallel, the finalize
# unit runs once they are all finished (deduplication, summary).
PHASE_PLAN, PHASE_WORK, PHASE_FINALIZE = 0, 1, 2

ROLES = ("annotator", "admin")


def owned_by_app(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic filter: the catalog database also holds DuckLake's own tables; never touch those."""
    return not (type_ == "table" and name is not None and name.startswith("ducklake_"))


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    queue: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=JOB_QUEUED, index=True)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    launched_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkUnit(Base):
    __tablename__ = "work_units"
    __table_args__ = (
        Index("ix_units_job_phase_status", "job_id", "phase", "status"),
        Index("ix_units_heartbeat", "heartbeat_at"),  # the reaper asks which queues are moving
    )

    id: Mapped[str] = mapped_column(String(60), primary_key=True)  # also the run_id of its writes
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    phase: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(Integer, default=0)  # how many things it processes (progress)
    done: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dispatch_count: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobLog(Base):
    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[str | None] = mapped_column(String(60), nullable=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)


class WorkerRecord(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # hostname:pid
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(200))
    # what the worker can run on, as it found at start: "cpu" or "cpu,cuda:0,cuda:1" (a job asking for a device
    # no live worker of its queue has is refused before it is queued)
    devices: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A signed-in browser: the cookie carries a random id, the store keeps only its SHA-256 (a leaked copy of
    the table signs nobody in). Sign-out and disabling the user revoke it at once; each use slides the expiry."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(String(120), index=True)
    method: Mapped[str] = mapped_column(String(20))  # password | oidc
    user_agent: Mapped[str] = mapped_column(String(400), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(120), nullable=True)


class SignInAttempt(Base):
    """Every sign-in try, kept: the throttle counts recent failures per user name and per address."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (Index("ix_sign_in_user_ts", "username", "ts"), Index("ix_sign_in_address_ts", "address", "ts"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(60))  # signed_in | wrong_password | locked | throttled | disabled
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Lockout(Base):
    """A user name or an address that failed too often: refused until an admin lifts it (``vitpro users unlock``)."""

    __tablename__ = "lockouts"
    __table_args__ = (UniqueConstraint("kind", "subject", name="uq_lockout"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))  # user | address
    subject: Mapped[str] = mapped_column(String(120))
    failures: Mapped[int] = mapped_column(Integer)
    locked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SavedFilter(Base):
    """A named filter configuration: predicates over stored stats (see curation/filters/)."""

    __tablename__ = "filters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    config: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(120), nullable=True)  # who saved it last (None: its creator, before 0005)


class FilterSave(Base):
    """Every save of a named filter, the first included: who changed it to what, and when."""

    __tablename__ = "filter_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), index=True)
    config: Mapped[dict] = mapped_column(JSON)
    saved_by: Mapped[str] = mapped_column(String(120))
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SavedView(Base):
    """A page of the web app with its query string (filters, cuts, page), saved by name for anyone to open."""

    __tablename__ = "saved_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    page: Mapped[str] = mapped_column(String(40))
    query: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Pilot(Base):
    """The paper's human check: N samples, labelled grounded / not grounded by annotators."""

    __tablename__ = "pilots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict] = mapped_column(JSON)  # the score models and segment it was drawn with
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PilotSample(Base):
    __tablename__ = "pilot_samples"
    __table_args__ = (UniqueConstraint("pilot_id", "sample_id", name="uq_pilot_sample"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pilot_id: Mapped[int] = mapped_column(ForeignKey("pilots.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(40))
    decile: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vis_attn: Mapped[float | None] = mapped_column(Float, nullable=True)
    clip_score: Mapped[float | None] = mapped_column(Float, nullable=True)


class PilotAssignment(Base):
    """Who labels which sample of a pilot (db/app/pilots.assign): each sample by ``overlap`` annotators."""

    __tablename__ = "pilot_assignments"
    __table_args__ = (UniqueConstraint("pilot_id", "sample_id", "annotator", name="uq_pilot_assignment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pilot_id: Mapped[int] = mapped_column(ForeignKey("pilots.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(40))
    annotator: Mapped[str] = mapped_column(String(120))
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PilotLock(Base):
    """A sample an annotator has on screen: not served to another annotator until it expires."""

    __tablename__ = "pilot_locks"
    __table_args__ = (UniqueConstraint("pilot_id", "sample_id", name="uq_pilot_lock"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pilot_id: Mapped[int] = mapped_column(ForeignKey("pilots.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(String(40))
    annotator: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PilotLabel(Base):
    __tablename__ = "pilot_labels"
    __table_args__ = (UniqueConstraint("pilot_id", "sample_id", "annotator", name="uq_pilot_label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pilot_id: Mapped[int] = mapped_column(ForeignKey("pilots.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(40))
    annotator: Mapped[str] = mapped_column(String(120))
    label: Mapped[str] = mapped_column(String(20))  # grounded | not_grounded | skip
    ungrounded_words: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PilotAdjudication(Base):
    """An admin's verdict on a pilot sample the annotators disagreed on; it replaces their labels in the results."""

    __tablename__ = "pilot_adjudications"
    __table_args__ = (UniqueConstraint("pilot_id", "sample_id", name="uq_pilot_adjudication"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pilot_id: Mapped[int] = mapped_column(ForeignKey("pilots.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(20))  # grounded | not_grounded
    settled_by: Mapped[str] = mapped_column(String(120))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    settled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Snapshot(Base):
    """A frozen data set: a filter applied to one DuckLake version (re-exportable byte for byte)."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    filter_name: Mapped[str | None] = mapped_column(String(120), nullable=True)
    filter_config: Mapped[dict] = mapped_column(JSON)
    lake_version: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict] = mapped_column(JSON)
    model_ids: Mapped[list] = mapped_column(JSON)
    prompt_versions: Mapped[list] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TrainRun(Base):
    """A LoRA fine-tuning run on a snapshot: its settings, where its files are, how far it got."""

    __tablename__ = "train_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    snapshot: Mapped[str] = mapped_column(String(120))
    base_model: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict] = mapped_column(JSON)
    out_dir: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(20))  # queued | running | succeeded | failed | cancelled
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary: Mapped[dict] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TrainStep(Base):
    """Loss and learning rate of one optimiser step (the UI's loss curve). One row per (run, step): a
    resumed run rewrites the steps it redoes instead of adding copies."""

    __tablename__ = "train_steps"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_train_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("train_runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    loss: Mapped[float] = mapped_column(Float)
    learning_rate: Mapped[float] = mapped_column(Float)
    tokens: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)


class EvalRun(Base):
    """One evaluation of a model (base, or base + a run's adapter) on a snapshot's held-out products."""

    __tablename__ = "eval_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    snapshot: Mapped[str] = mapped_column(String(120))
    model: Mapped[str] = mapped_column(String(500))
    adapter: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    config: Mapped[dict] = mapped_column(JSON)
    results: Mapped[dict] = mapped_column(JSON, default=dict)
    baseline: Mapped[str | None] = mapped_column(String(120), nullable=True)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
