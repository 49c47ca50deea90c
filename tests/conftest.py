"""Shared fixtures: an isolated store per test, real PostgreSQL and Redis, real worker processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PG_ADMIN_URL = os.environ.get("VITPRO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VITPRO_TEST_REDIS", "redis://127.0.0.1:6379")


def _reset_process_caches() -> None:
    from db import store
    from db.app_engine import dispose_engines
    from db.lake import drop_shared_lakes

    drop_shared_lakes()
    dispose_engines()
    store.forget_ready()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"the shared real data is missing at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh VITPRO_HOME with embedded defaults (SQLite catalog, SQLite broker)."""
    h = tmp_path / "var"
    for key in list(os.environ):
        if key.startswith("VITPRO_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VITPRO_HOME", str(h))
    monkeypatch.setenv("VITPRO_LEASE_SECONDS", "4")
    monkeypatch.setenv("VITPRO_USER", "tester")
    _reset_process_caches()
    yield h
    _reset_process_caches()


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url() -> str:
    """A fresh PostgreSQL database, dropped afterwards."""
    import psycopg

    if not _pg_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    name = f"vitpro_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    _reset_process_caches()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
        )
        con.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def redis_url() -> str:
    """A Redis database number of its own, emptied before and after."""
    import redis

    db = 11
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    yield url
    client.flushdb()


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, log_path: Path):
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def start_worker(home, tmp_path):
    """Start real Celery worker processes (``vitpro worker``) with the test's environment."""
    from vitpro.local_workers import stop_worker, worker_command

    started: list[WorkerProcess] = []

    def start(queues: str = "cpu", *, concurrency: int = 1, pool: str = "solo", wait: bool = True) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        out = open(log_path, "ab")
        proc = subprocess.Popen(
            worker_command(queues, concurrency, pool, loglevel="INFO"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            cwd=REPO,
            start_new_session=True,
        )
        worker = WorkerProcess(proc, log_path)
        started.append(worker)
        if wait:
            wait_for_worker_registration(proc.pid, worker)
        return worker

    yield start
    for w in started:
        stop_worker(w.proc, timeout=1, warm=False)  # then SIGKILL: a test store needs no clean exit


def wait_for_worker_registration(pid: int, worker: WorkerProcess, timeout: float = 60) -> None:
    from config.settings import load_settings
    from db import jobs
    from db.app_engine import write_engine

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.log()[-3000:]}")
        try:
            live = jobs.live_workers(write_engine(load_settings().app_url), 60)
            if any(w.pid == pid for w in live):
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"worker {pid} did not register in {timeout} s:\n{worker.log()[-3000:]}")


def wait_job(job_id: str, timeout: float = 120):
    """Poll until the job is finished; returns the job row."""
    from config.settings import load_settings
    from db import jobs
    from db.app_engine import write_engine

    engine = write_engine(load_settings().app_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get_job(engine, job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {jobs.get_job(engine, job_id).status}")


@pytest.fixture
def vitpro_cli():
    """Run the real `vitpro` entry point in a subprocess."""

    def run(*args: str, timeout: float = 300, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "vitpro.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
            cwd=REPO,
            input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"vitpro {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def small_store(home):
    """A synthetic store of 400 samples (bench/synthetic_store.py: scores, a saved filter, a pilot) with the
    web app's caches empty before and after."""
    import streamlit as st

    from bench import synthetic_store

    synthetic_store.build(400)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield home
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Every tiny checkpoint (each VLM family, CLIP, a causal LM), built once per test session."""
    from curation.tiny_models import FAMILIES, make_tiny

    root = tmp_path_factory.mktemp("tiny-models")
    return {family: make_tiny(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session", autouse=True)
def _one_component_scan():
    """Streamlit's component scan once for the whole run, as a server does it once (bench/ui_pages.py)."""
    from bench.ui_pages import scan_components_once

    scan_components_once()


@pytest.fixture(autouse=True)
def _keep_main_module():
    """AppTest runs a page script as ``__main__``; a later ``multiprocessing`` spawn would then run that page in
    its child (spawn re-imports the parent's main module). Put the real one back after every test."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
