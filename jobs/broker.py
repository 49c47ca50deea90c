"""The broker as senders see it: its settings, the one task name, and publishing units by that name.

Celery is imported only when a client is made (the first unit sent), so importing this module (the UI,
the command line) builds no app and registers no worker signal. The workers build their app from the same
:func:`make_client` and add the task (workers/app.py): one configuration for both sides.

Celery's own redelivery is not relied on (see db/app/jobs.py); acks_late and reject_on_worker_lost still help
where the broker supports them: a pool child that dies hands its message back at once.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings
from db.app import jobs

QUEUES = ("cpu", "gpu", "train")
TASK_RUN_UNIT = "vitpro.run_unit"

log = logging.getLogger("vitpro.reaper")


def prepare_sqlite_url(url: str) -> None:
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


def make_client(settings: Settings | None = None) -> Any:
    """A Celery app configured for these settings' broker, with no task of its own."""
    from celery import Celery
    from kombu import Queue

    settings = settings or load_settings()
    prepare_sqlite_url(settings.broker_url)
    prepare_sqlite_url(settings.result_backend)
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
    return app


_clients: dict[tuple[str, str], Any] = {}


def client_for(settings: Settings | None = None) -> Any:
    """The sending client for these settings' broker, made once per broker (a long-lived process, or a
    test, may change the settings between sends)."""
    settings = settings or load_settings()
    key = (settings.broker_url, settings.result_backend)
    if key not in _clients:
        _clients[key] = make_client(settings)
    return _clients[key]


def send_units(client: Any, engine, dispatches: list[jobs.Dispatch], *, countdown: float = 0) -> None:
    """Publish one message per unit and note when it went out (the reaper resends lost ones)."""
    if not dispatches:
        return
    # Note first: if publishing fails half way, the reaper sees them as sent and resends after a delay.
    jobs.mark_dispatched(engine, [uid for uid, _ in dispatches])
    for uid, queue in dispatches:
        client.send_task(TASK_RUN_UNIT, args=[uid], queue=queue, countdown=countdown or None)


def reap_once(settings: Settings, client: Any) -> int:
    """Take back the units of dead workers and resend lost messages; returns how many were sent again."""
    from db.app.engine import write_engine

    engine = write_engine(settings.app_url)
    dispatches = jobs.reap(engine, settings.lease_seconds, settings.max_unit_attempts)
    if dispatches:
        log.info("reaper resends %d unit(s)", len(dispatches))
        send_units(client, engine, dispatches)
    return len(dispatches)
