"""Starting a run's processes with torchrun's own launcher (``python -m torch.distributed.run``) and
watching them from the process that asked (the train job's unit).

Always a child process, also for one training process (started without the launcher: it has no one to
meet): a Celery prefork worker's process is daemonic and may not start the DataLoader's worker processes
itself; a child also gives back all of the run's memory when it ends, and keeps the worker's own cached
models (scoring) apart from the run's.

The child dies with its parent (Linux's parent-death signal, trainer/agent.py), so a worker killed mid-run leaves no
orphan writing checkpoints beside the worker that takes the unit over. A stop (cancel) is asked through
the stop file: rank 0 checkpoints and every process ends at the same step. A lost lease kills the run at
once: another worker has the unit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .ranks import ERRORS, RESULT, STOP, RunSpec

SPEC = "launch.json"
LOG = "ranks.log"


@dataclass
class Outcome:
    returncode: int
    result: dict | None  # result.json of this attempt (None where rank 0 wrote none)
    errors: list[dict]  # errors/rank-N.json of this attempt
    log_tail: str

    @property
    def stopped(self) -> bool:
        return bool(self.result and self.result.get("stopped"))

    @property
    def permanent(self) -> str | None:
        messages = [e["message"] for e in self.errors if e.get("permanent")]
        return messages[0] if messages else None

    def failure(self) -> str:
        if self.errors:
            first = min(self.errors, key=lambda e: e.get("at", 0))
            return f"rank {first['rank']}: {first['message']}"
        return f"the training processes ended with exit code {self.returncode}: {self.log_tail[-1500:]}"


def torchrun_command(spec_path: Path, nproc: int) -> list[str]:
    """One machine, ``nproc`` processes, a rendezvous on a free local port (torchrun's ``--standalone``),
    no restarts: a failed attempt is the job's to retry (from the last checkpoint, maybe on another worker).
    One process needs no rendezvous: it is started directly, which saves the launcher's own start (it
    imports torch before it starts anything: ~2.5 s of every single-process run)."""
    if nproc == 1:
        return [sys.executable, "-m", "trainer.ranks", str(spec_path)]
    return [sys.executable, "-m", "trainer.agent", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
            "--max-restarts", "0", "--monitor-interval", "0.5", "-m", "trainer.ranks", str(spec_path)]


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def launch(spec: RunSpec, nproc: int, *, watch: Callable[[], None] | None = None, poll_s: float = 0.5,
           stop_grace_s: float = 300.0, env: dict | None = None) -> Outcome:
    """Run ``spec`` on ``nproc`` processes and wait. ``watch`` is called every ``poll_s`` seconds: raising
    :class:`StopRequested` asks the processes to checkpoint and stop (they get ``stop_grace_s`` to do it),
    any other exception kills them at once and is raised again."""
    work = Path(spec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for stale in (work / RESULT, work / STOP):
        stale.unlink(missing_ok=True)
    for old in (work / ERRORS).glob("rank-*.json"):  # none where the folder is not there
        old.unlink(missing_ok=True)
    spec.save(work / SPEC)
    log_path = work / LOG
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(torchrun_command(work / SPEC, nproc), stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "VITPRO_TRAIN_PARENT": str(os.getpid())})
        stop_asked: float | None = None
        try:
            while proc.poll() is None:
                time.sleep(poll_s)
                if watch is None:
                    continue
                try:
                    watch()
                except StopRequested as exc:
                    if stop_asked is None:
                        (work / STOP).write_text(str(exc) or "stopped")
                        stop_asked = time.monotonic()
                if stop_asked is not None and time.monotonic() - stop_asked > stop_grace_s:
                    _terminate(proc)
        except BaseException:
            _terminate(proc)
            raise
    errors = [e for e in (_read(p) for p in sorted((work / ERRORS).glob("rank-*.json"))) if e]
    return Outcome(proc.returncode, _read(work / RESULT), errors, _tail(log_path))


class StopRequested(Exception):
    """Raised by a launch's ``watch`` to have the run checkpoint and stop (a cancelled job)."""


def _terminate(proc: subprocess.Popen, wait_s: float = 20.0) -> None:
    """SIGTERM: torchrun's agent passes it to the processes it started; then SIGKILL if they linger."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, size: int = 6000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""
