"""Workers and the command line in the test process, for tests where the worker process or the ``vitpro``
entry point is not what is under test (starting either costs seconds: Python, torch, Celery).

:class:`InProcessWorker` takes the units' messages from the real broker (the embedded SQLite one or Redis,
whatever the settings name) and runs each with the worker's own Celery task (workers/app.py ``run_unit``,
which calls ``workers.runtime.execute_unit``: claim, lease and heartbeat, handler, retries with their
back-off, job advancement, the next units published to the broker again). It registers itself as a live
worker and runs the reaper on the same timer as a worker started by ``vitpro worker``
(workers/worker_signals.py), and it starts with an empty model cache as a fresh worker process does.

:func:`invoke` runs a ``vitpro`` command with click's CliRunner and answers as ``subprocess.run`` does
(``returncode``, ``stdout``, ``stderr``; an uncaught exception is a traceback on stderr and exit code 1).
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

log = logging.getLogger("vitpro.worker")
_numbers = itertools.count(1)


class _OwnThreads(logging.Filter):
    """Only the records of this worker's threads: its consumer, the units' heartbeats, its reaper."""

    def __init__(self, worker: "InProcessWorker"):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread in self.worker.thread_ids or record.threadName.startswith("heartbeat-")


class InProcessWorker:
    """A worker of ``queues`` in a thread of this process. ``log()`` is what it logged (its threads' records
    at INFO and above, with the tracebacks of what went wrong) as a worker process's log file has it."""

    def __init__(self, queues: str = "cpu", *, log_path: Path | None = None):
        from config.settings import load_settings

        self.queues = [q.strip() for q in queues.split(",") if q.strip()]
        self.settings = load_settings()
        self.log_path = log_path
        self.pid = os.getpid()
        self.worker_id = f"{socket.gethostname()}:{self.pid}:inprocess-{next(_numbers)}"
        self.thread_ids: set[int] = set()
        self.outcomes: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._handler: logging.Handler | None = None

    # ---- life ------------------------------------------------------------------------------------------
    def start(self) -> "InProcessWorker":
        from workers import models

        models.release_scoring_models()  # a fresh worker process holds no model
        if self.log_path is not None:
            self._handler = logging.FileHandler(self.log_path, encoding="utf-8")
            self._handler.setLevel(logging.INFO)
            self._handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/%(threadName)s] %(name)s: %(message)s"))
            self._handler.addFilter(_OwnThreads(self))
            logging.getLogger().addHandler(self._handler)
            # a worker started with `-l INFO` (as start_worker starts them) logs its units' lines
            self._level = logging.getLogger("vitpro").level
            logging.getLogger("vitpro").setLevel(logging.INFO)
        self._thread = threading.Thread(target=self._main, name=f"inprocess-worker-{self.worker_id.rsplit('-', 1)[1]}", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            self.stop()
            raise AssertionError(f"the in-process worker did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        from workers import models

        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)
            if self._thread.is_alive():
                raise AssertionError("the in-process worker is still inside a unit after 120 s")
            self._thread = None
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            logging.getLogger("vitpro").setLevel(self._level)
            self._handler.close()
            self._handler = None
        models.release_scoring_models()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> "InProcessWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the thread ------------------------------------------------------------------------------------
    def _main(self) -> None:
        from kombu import Consumer

        from db.app import jobs
        from db.app.engine import write_engine
        from db.store import open_store
        from jobs.broker import TASK_RUN_UNIT
        from workers.app import app_for
        from workers.devices import detect_devices

        self.thread_ids.add(threading.get_ident())
        try:
            app = app_for(self.settings)  # the workers' app: the run_unit task is registered on it
            task = app.tasks[TASK_RUN_UNIT]
            engine = write_engine(self.settings.app_url)
            open_store(self.settings.store)
            devices = ",".join(detect_devices())
            conn = app.connection_for_read()
            conn.ensure_connection(max_retries=3)
            due: list[tuple[float, int, object, object]] = []  # messages with an eta (a retry's back-off), held unacked
            order = itertools.count()

            def on_message(body, message) -> None:
                eta = message.headers.get("eta")
                when = datetime.fromisoformat(eta).timestamp() if eta else 0.0
                heapq.heappush(due, (when, next(order), body, message))

            consumer = Consumer(conn.default_channel, queues=[app.amqp.queues[q] for q in self.queues], callbacks=[on_message],
                                accept=["json"])
            consumer.qos(prefetch_count=app.conf.worker_prefetch_multiplier)
            consumer.consume()
            queues = ",".join(sorted(self.queues))
            jobs.touch_worker(engine, self.worker_id, socket.gethostname(), self.pid, queues, devices)
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        interval = max(0.5, self.settings.lease_seconds / 3)
        next_round = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_round:  # what the reaper thread of a worker process does, on its timer
                    next_round = now + interval
                    try:
                        jobs.touch_worker(engine, self.worker_id, socket.gethostname(), self.pid, queues, devices)
                        from jobs.broker import reap_once

                        reap_once(self.settings, app)
                    except Exception:
                        log.exception("reaper round failed; next round in %.1f s", interval)
                if due and due[0][0] <= datetime.now(timezone.utc).timestamp():
                    _, _, body, message = heapq.heappop(due)
                    self._run(task, body, message)
                    continue
                try:
                    conn.drain_events(timeout=0.05)
                except (socket.timeout, TimeoutError):
                    pass
        finally:
            try:
                consumer.cancel()
            except Exception:
                pass
            conn.release()  # messages taken and not acknowledged go back to the queue
            try:
                jobs.remove_worker(engine, self.worker_id)
            except Exception:
                pass

    def _run(self, task, body, message) -> None:
        args, kwargs, _embed = body  # Celery's message protocol 2
        name = message.headers.get("task")
        task_id = message.headers.get("id")
        log.info("Task %s[%s] received", name, task_id)
        started = time.monotonic()
        try:
            outcome = task(*args, **kwargs)  # the task body a worker runs: workers.runtime.execute_unit
        except Exception:
            log.exception("Task %s[%s] raised unexpected", name, task_id)
            outcome = "raised"
        else:
            log.info("Task %s[%s] succeeded in %.3fs: %r", name, task_id, time.monotonic() - started, outcome)
        finally:
            message.ack()  # acks_late: after the unit, as the workers' task says
        self.outcomes.append(outcome)


@contextlib.contextmanager
def local_workers(queues: str, *, processes: int = 1, concurrency: int = 1, log_path: Path | None = None) -> Iterator[list[InProcessWorker]]:
    """vitpro.local_workers.local_workers with the workers in this process (``--local`` of a command run by
    :func:`invoke`): started for the command, stopped after it."""
    workers = [InProcessWorker(queues, log_path=log_path).start() for _ in range(processes)]
    try:
        yield workers
    finally:
        for w in workers:
            w.stop()


# ---- the command line ------------------------------------------------------------------------------------
def _rebind_stream_handlers(gone: set[int], to) -> None:
    """A logging handler made while CliRunner had replaced sys.stderr (a library imported inside the
    command) writes to that stream after it is closed: give it the real stream back."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            # (a _StderrHandler, as logging.lastResort, follows sys.stderr by itself)
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging._StderrHandler) and id(handler.stream) in gone:
                handler.setStream(to)


class _Runner:
    """click's CliRunner, and afterwards the real stderr given back to a logging handler made inside."""

    def __new__(cls):
        from click.testing import CliRunner

        class Runner(CliRunner):
            @contextlib.contextmanager
            def isolation(self, *args, **kwargs):
                real = sys.stderr
                with super().isolation(*args, **kwargs) as streams:
                    inside = {id(sys.stdout), id(sys.stderr)}
                    try:
                        yield streams
                    finally:
                        _rebind_stream_handlers(inside, real)

        return Runner()


def invoke(*args: str, input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``vitpro ARGS`` through click's CliRunner in this process; the answer of ``subprocess.run``."""
    from vitpro.cli import cli

    runner = _Runner()
    with contextlib.chdir(cwd) if cwd else contextlib.nullcontext():
        result = runner.invoke(cli, list(args), input=input, prog_name="vitpro", catch_exceptions=True)
    stderr, code = result.stderr, result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # what Python prints for an uncaught exception, and its exit code
        stderr += "".join(traceback.format_exception(*result.exc_info))
        code = 1
    return subprocess.CompletedProcess(["vitpro", *args], code, result.stdout, stderr)
