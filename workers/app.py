"""The Celery app: broker and result backend from the settings (embedded SQLite files by default, Redis by
URL), three queues, one task that runs a work unit. Start a worker with ``vitpro worker --queues cpu``.

Celery's own redelivery is not relied on (see db/jobs.py); acks_late and reject_on_worker_lost still help
where the broker supports them: a pool child that dies hands its message back at once.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from celery import Celery
from kombu import Queue

from config.settings import Settings, load_settings

QUEUES = ("cpu", "gpu", "train")
TASK_RUN_UNIT = "vitpro.run_unit"


def _prepare_sqlite_url(url: str) -> None:
    """Create the SQLite file of an embedded broker/backend in WAL mode (many processes use it)."""
    for prefix in ("sqla+sqlite:///", "sqlalchemy+sqlite:///", "db+sqlite:///"):
        if url.startswith(prefix):
            path = Path(url[len(prefix):])
            path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(path, timeout=30)
            try:
                # WAL is a property of the file: once one process set it, the others only read it. Switching
                # needs the file to itself, and SQLite answers "database is locked" at once (no busy wait)
                # while a second process (the CLI beside the worker it starts) has it open: so try again.
                for attempt in range(50):
                    try:
                        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                            break
                        con.execute("PRAGMA journal_mode=WAL")
                        break
                    except sqlite3.OperationalError:
                        if attempt == 49:
                            raise
                        time.sleep(0.1)
            finally:
                con.close()


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    _prepare_sqlite_url(settings.broker_url)
    _prepare_sqlite_url(settings.result_backend)
    app = Celery("vitpro")
    transport_options: dict = {}
    if settings.is_embedded_broker:
        # kombu's SQLAlchemy transport hands every transport option to create_engine(), so its polling
        # interval (1 s by default) can only be set on the class; 0.2 s keeps short jobs snappy.
        from kombu.transport import sqlalchemy as kombu_sqla

        kombu_sqla.Transport.polling_interval = 0.2
        transport_options = {"connect_args": {"timeout": 30}}
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue="cpu",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # unit results live in the job tables
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A worker holds a few messages ahead: with acks_late and a prefetch of 1 the embedded broker only
        # hands over the next message when its 2-second poll ends (measured: 2 s between 0.13 s units).
        # Messages a killed worker held are resent by the reaper, so holding a few costs nothing.
        worker_prefetch_multiplier=4,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )

    @app.task(name=TASK_RUN_UNIT, acks_late=True)
    def run_unit(unit_id: str) -> str:
        from .runtime import execute_unit

        return execute_unit(unit_id)

    return app


_apps: dict[tuple[str, str], Celery] = {}


def app_for(settings: Settings | None = None) -> Celery:
    """The app for these settings' broker. Senders use this rather than the module's ``app``, which was
    built from the environment at import time (a long-lived process, or a test, may change it)."""
    settings = settings or load_settings()
    key = (settings.broker_url, settings.result_backend)
    if key not in _apps:
        _apps[key] = app if (app.conf.broker_url, app.conf.result_backend) == key else make_app(settings)
    return _apps[key]


app = make_app()  # what `celery -A workers.app:app worker` and `vitpro worker` run

from . import worker_signals  # noqa: E402,F401  (registers the reaper on worker start)
