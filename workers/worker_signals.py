"""Per-worker housekeeping: announce the worker (with the devices it can run on), and run the reaper on a
timer in its main process.

Every worker runs a reaper; their UPDATEs are conditional, so two reapers never resend the same unit
twice in one round, and a copy sent anyway is dropped at claim time.
"""
from __future__ import annotations

import logging
import os
import socket
import threading

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from config.settings import load_settings
from db.app import jobs
from db.app.engine import dispose_engines, write_engine
from db.lake.connection import forget_shared_lakes
from db.store import open_store
from jobs.broker import reap_once

from .devices import detect_devices

log = logging.getLogger("vitpro.reaper")
_stop = threading.Event()
_state: dict = {}


def _loop(sender) -> None:
    settings = load_settings()
    engine = write_engine(settings.app_url)
    worker_id = _state["worker_id"]
    queues = ",".join(sorted(q.name for q in sender.app.amqp.queues.consume_from.values())) if sender.app.amqp.queues.consume_from else "?"
    interval = max(0.5, settings.lease_seconds / 3)
    try:
        devices = ",".join(detect_devices())  # once: a worker's GPUs do not come and go
    except Exception:
        log.exception("could not tell this worker's devices; recording cpu only")
        devices = "cpu"
    while True:
        try:
            open_store(settings.store)  # a fresh machine: create the store (once; later rounds skip it)
            jobs.touch_worker(engine, worker_id, socket.gethostname(), os.getpid(), queues, devices)
            reap_once(settings, sender.app)
        except Exception:
            log.exception("reaper round failed; next round in %.1f s", interval)
        if _stop.wait(interval):
            return


@worker_ready.connect
def _start_reaper(sender=None, **_kwargs) -> None:
    _state["worker_id"] = f"{socket.gethostname()}:{os.getpid()}"
    threading.Thread(target=_loop, args=(sender,), name="vitpro-reaper", daemon=True).start()


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # A forked pool child must not share the parent's database connections.
    dispose_engines(close=False)
    forget_shared_lakes()
    from db import store

    store.forget_ready()
    try:
        # Attach the lake now (about a second) rather than inside the child's first unit.
        open_store(load_settings().store)
    except Exception:  # the first unit will try again and report it
        log.exception("could not open the store at worker start")


@worker_shutdown.connect
def _stop_reaper(**_kwargs) -> None:
    _stop.set()
    worker_id = _state.get("worker_id")
    if worker_id:
        try:
            jobs.remove_worker(write_engine(load_settings().app_url), worker_id)
        except Exception:
            pass
