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


def _threads_per_test_process() -> None:
    """Each pytest process's share of the cores for torch's, Tesseract's and numpy's OpenMP threads and the store's
    DuckDB threads (db/lake/connection.py reads it too), here and in every process a test starts (they inherit it). Each would otherwise take every core: with two test processes
    on two cores, four busy-waiting OpenMP threads made the model tests 2.7 times slower and burn three times the
    CPU (tests/test_eval_batching.py with tests/test_vlm_families.py: 129 s against 48 s). A value already set
    is kept; a run in one process (and xdist's controller, whose environment its processes inherit) sets none."""
    from vitpro.local_workers import openmp_threads  # the workers' own rule

    if "OMP_NUM_THREADS" in os.environ or "PYTEST_XDIST_WORKER" not in os.environ:
        return
    threads = openmp_threads(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # read at torch's start: too late for an imported torch
        sys.modules["torch"].set_num_threads(threads)


_threads_per_test_process()


def pytest_collection_modifyitems(config, items):
    """The long end-to-end tests (marked ``slow``: real workers, servers, browsers, training) run first, each
    file's in its own order. ``make test`` runs two pytest processes, and pytest-xdist hands tests out in
    collection order: a two-minute test handed out near the end leaves one process working alone while the
    other has finished. Started first, the short tests fill in around the long ones. This works only with
    files handed out one at a time (``--dist=loadscope --no-loadscope-reorder`` in pyproject.toml): in
    xdist's default first chunks of a quarter of the suite each, one process got every long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # a stable sort: otherwise the order stays


def _reset_process_caches() -> None:
    from db import store
    from db.app.engine import dispose_engines
    from db.lake.connection import drop_shared_lakes

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
    """A Redis database number of its own, emptied before and after (one per pytest-xdist process, so
    that two processes of one run never empty each other's)."""
    import redis

    db = 11 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3-compatible server (moto's server mode) over real HTTP on a free port, for the whole run, with
    authentication on: requests must be signed with the key of the IAM user made here, so wrong
    credentials are refused as a real store refuses them. Yields (endpoint URL, key id, secret)."""
    import json as _json
    import socket

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "ab")
    # the first requests (making the user, its key and its policy) are let through unsigned; every later one is checked
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("moto_server did not start")
            time.sleep(0.1)
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName="vitpro")
    key = iam.create_access_key(UserName="vitpro")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="vitpro", PolicyName="everything", PolicyDocument=_json.dumps(policy))
    yield url, key["AccessKeyId"], key["SecretAccessKey"]
    proc.kill()
    proc.wait()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The standard AWS variables pointing at the test server, and a fresh bucket; yields the bucket's name."""
    import boto3

    url, key_id, secret = s3_server
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("VITPRO_S3_CONNECT_TIMEOUT", "1")
    bucket = f"vitpro-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret).create_bucket(Bucket=bucket)
    yield bucket


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

    def start(queues: str = "cpu", *, concurrency: int = 1, pool: str = "solo", wait: bool = True, env: dict | None = None) -> WorkerProcess:
        """``env``: variables to set (a value of None removes one) on top of the test's environment."""
        log_path = tmp_path / f"worker-{len(started)}.log"
        environ = dict(os.environ)
        for name, value in (env or {}).items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        out = open(log_path, "ab")
        proc = subprocess.Popen(
            worker_command(queues, concurrency, pool, loglevel="INFO"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
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
        stop_worker(w.proc, timeout=0, warm=False)  # killed at once: a test store needs no clean exit


def wait_for_worker_registration(pid: int, worker: WorkerProcess, timeout: float = 60) -> None:
    from config.settings import load_settings
    from db.app import jobs
    from db.app.engine import write_engine

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
    from db.app import jobs
    from db.app.engine import write_engine

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
def cli(monkeypatch):
    """The same commands as `vitpro_cli`, run in this process with click's CliRunner (no interpreter to start):
    for tests of what a command does rather than of the entry point. The answer is subprocess.run's.
    ``--local`` starts its worker in this process too (tests/inprocess.py)."""
    from vitpro import local_workers

    from . import inprocess

    monkeypatch.setattr(local_workers, "local_workers", inprocess.local_workers)

    def run(*args: str, timeout: float = 300, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess:
        proc = inprocess.invoke(*args, input=input, cwd=REPO)
        if check and proc.returncode != 0:
            raise AssertionError(f"vitpro {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def inprocess_worker(home, tmp_path):
    """Start workers in this process (tests/inprocess.py): the units' messages taken from the real broker and
    run by the workers' own task, for tests where the worker process itself is not under test."""
    from .inprocess import InProcessWorker

    started: list = []

    def start(queues: str = "cpu"):
        worker = InProcessWorker(queues, log_path=tmp_path / f"inprocess-worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def small_store(home):
    """A synthetic store of 400 samples (bench/synthetic_store.py: scores, a saved filter, a pilot) with the
    web app's caches empty before and after."""
    import streamlit as st

    from bench import synthetic_store

    from .store_templates import built_once

    built_once(("synthetic_store", 400), lambda: synthetic_store.build(400))
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
def _empty_stores_copied():
    """A test's store, created on first use, is a copy of one created for real once (tests/store_templates.py)."""
    from db.lake import connection

    from . import store_templates

    store_templates.empty_template()  # now, not under the lake cache's lock when a test's first open asks
    real = connection._prepare_sqlite

    def prepare(path: str) -> None:
        store_templates.copy_empty_store(path)
        real(path)

    connection._prepare_sqlite = prepare
    yield
    connection._prepare_sqlite = real


@pytest.fixture(autouse=True)
def _store_creation(request):
    """``@pytest.mark.creates_store``: the test watches a store being created, so it is created for real."""
    from . import store_templates

    store_templates.copying = request.node.get_closest_marker("creates_store") is None
    yield
    store_templates.copying = True


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
