"""Start real Celery workers as child processes for the length of a command (the demo, --local)."""
from __future__ import annotations

import os
import signal
import socket
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


def openmp_threads(processes: int, cpus: int | None = None) -> int:
    """OpenMP threads (torch's, Tesseract's) for each of ``processes`` worker processes on this machine: their
    share of the cores. Each would otherwise take every core, and N processes on N cores would run N² threads
    that busy-wait on each other (the test suite's two processes ran the model tests 2.7 times slower so)."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, processes))


def pool_processes(concurrency: int, pool: str) -> int:
    """The processes a worker runs units in: its pool's children, or itself alone for the solo pool."""
    return concurrency if pool != "solo" else 1


def with_openmp_threads(environ: dict, processes: int) -> dict:
    """``environ`` with OMP_NUM_THREADS at each process's share of the cores, unless it names its own."""
    return environ if environ.get("OMP_NUM_THREADS") else {**environ, "OMP_NUM_THREADS": str(openmp_threads(processes))}


def start_worker(queues: str, *, concurrency: int = 1, pool: str = "prefork", log_path: Path | None = None, env: dict | None = None, loglevel: str = "WARNING") -> subprocess.Popen:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        worker_command(queues, concurrency, pool, loglevel),
        stdout=out,
        stderr=subprocess.STDOUT,
        env=with_openmp_threads({**os.environ, **(env or {})}, pool_processes(concurrency, pool)),
        start_new_session=True,  # its own process group: stopping it stops its pool children too
    )


def stop_worker(proc: subprocess.Popen, timeout: float = 20, *, warm: bool = True) -> None:
    """Warm shutdown (SIGTERM) lets the current unit finish; cold (SIGQUIT) abandons it, which is safe
    too (the unit's lease runs out and another worker redoes it). After ``timeout`` seconds (0: at once)
    the process group is killed."""
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
        for p in stop_idle(procs):
            stop_worker(p)


def _group(pgid: int) -> set[int] | None:
    """The processes of a process group (a worker and its pool children), read from /proc; None without it."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    pids = set()
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                # the fields after the command name's closing parenthesis: state, ppid, pgrp, ...
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                pids.add(int(entry.name))
    return pids


def stop_idle(procs: list[subprocess.Popen]) -> list[subprocess.Popen]:
    """Kill at once the workers that hold no unit, and take them off the list of live workers; returns the
    others, for a warm stop. A warm (or even a cold) Celery shutdown of an idle worker takes 6-7 s: its
    consumer loop notices the signal only after a 2 s broker poll, then joins its pool. A worker that holds
    no lease loses nothing when killed (a message it had prefetched is sent again by the reaper, as for any
    lost message), and it is what --local and the demo hold once their jobs are done."""
    from config.settings import load_settings
    from db.app import jobs
    from db.app.engine import write_engine

    try:
        engine = write_engine(load_settings().app_url)
        host = socket.gethostname()
        leased = {int(o.split(":")[1]) for o in jobs.lease_owners(engine) if o.startswith(host + ":") and o.split(":")[1].isdigit()}
    except Exception:  # the store cannot say: stop them all the careful way
        return list(procs)
    busy = []
    for p in procs:
        group = _group(p.pid) if p.poll() is None else set()
        if group is None or group & leased:
            busy.append(p)
            continue
        stop_worker(p, warm=False, timeout=0)
        try:
            jobs.remove_worker(engine, f"{host}:{p.pid}")
        except Exception:
            pass  # its record ages out of the live list within a minute
    return busy
