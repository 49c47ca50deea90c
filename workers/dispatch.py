"""Sending units to the broker. Light: the UI and the command line import it to launch jobs."""
from __future__ import annotations

from sqlalchemy import Engine

from db import jobs

from .app import TASK_RUN_UNIT


def send_units(app, engine: Engine, dispatches: list[jobs.Dispatch], *, countdown: float = 0) -> None:
    """Publish one message per unit and note when it went out (the reaper resends lost ones)."""
    if not dispatches:
        return
    # Note first: if publishing fails half way, the reaper sees them as sent and resends after a delay.
    jobs.mark_dispatched(engine, [uid for uid, _ in dispatches])
    for uid, queue in dispatches:
        app.send_task(TASK_RUN_UNIT, args=[uid], queue=queue, countdown=countdown or None)
