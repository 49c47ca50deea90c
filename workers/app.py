"""The Celery app of the workers: the senders' configuration (jobs/broker.py: broker and result backend
from the settings, embedded SQLite files by default, Redis by URL; three queues) plus the one task that
runs a work unit. Start a worker with ``vitpro worker --queues cpu``.
"""
from __future__ import annotations

from celery import Celery

from config.settings import Settings, load_settings
from jobs.broker import TASK_RUN_UNIT, make_client


def make_app(settings: Settings | None = None) -> Celery:
    app = make_client(settings)

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
