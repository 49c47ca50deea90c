"""Start real Celery workers as child processes for the length of a command (the demo, --local)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def worker_command(queues: str, concurrency: int = 1, pool: str = "prefork", loglevel: str = "WARNING", name: str | None = None) -> list[str]:
    name = name or f"vitpro-{uuid.uuid4().hex[:6]}@%h"
    return [
        sys.executable, "-m", "celery", "-A", "workers.app:app", "worker",
        "-Q", queues, "-c", str(concurrency), "-P", pool, "-n", name, "-l", loglevel,
        # The embedded broker has no broadcast; these features need it and are not used.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]


def start_worker(queues: str, *, concurrency: int = 1, pool: str = "prefork", log_path: Path | None = None, env: dict | None = None, loglevel: str = "WARNING") -> subprocess.Popen:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        worker_command(queues, concurrency, pool, loglevel),
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group: stopping it stops its pool children too
    )


def stop_worker(proc: subprocess.Popen, timeout: float = 20, *, warm: bool = True) -> None:
    """Warm shutdown (SIGTERM) lets the current unit finish; cold (SIGQUIT) stops at once, which is
    safe too (the unit's lease runs out and another worker redoes it) and saves the ~5 s a warm
    shutdown of an idle worker takes."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM if warm else signal.SIGQUIT)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def local_workers(queues: str, *, processes: int = 1, concurrency: int = 1, log_path: Path | None = None) -> Iterator[list[subprocess.Popen]]:
    procs = [start_worker(queues, concurrency=concurrency, log_path=log_path) for _ in range(processes)]
    try:
        time.sleep(0.2)
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a worker exited at start (code {p.returncode}); see {log_path or 'its output'}")
        yield procs
    finally:
        for p in procs:
            stop_worker(p)
