"""The `vitpro` command line as a user meets it: help, set-up, usage errors, job control, the demo. The entry
point itself (`python -m vitpro.cli`, `vitpro worker`, `--local` starting a worker process, the demo) runs
in subprocesses; what a command answers is checked in this process (click's CliRunner)."""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import REPO, WorkerProcess, wait_for_worker_registration


def test_help_lists_every_command(vitpro_cli):
    out = vitpro_cli("--help", check=True).stdout
    for command in ("init", "ingest", "ocr", "worker", "jobs", "errors", "status", "demo"):
        assert f"  {command}" in out
    ingest_help = vitpro_cli("ingest", "--help", check=True).stdout
    assert "Examples:" in ingest_help and "--pii COL=KIND" in ingest_help and "--image-root" in ingest_help
    assert "list" in vitpro_cli("jobs", "--help", check=True).stdout


@pytest.mark.creates_store
def test_init_twice_and_empty_status(home, cli):
    first = cli("init", check=True).stdout
    assert "catalog: sqlite:///" in first and "app tables at revision 0005" in first and "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]" in first
    assert "none (up to date)" in cli("init", check=True).stdout
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["stages"]["items"] == 0 and status["jobs"] == {} and status["workers"] == []
    assert "0 item(s)" in cli("status", check=True).stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["ingest", "{reviews}"], "no column mapping"),
        (["ingest", "{reviews}", "--map", "title=Titel"], "'Titel' are not in the source; its columns are: Id, ProductId"),
        (["ingest", "{reviews}", "--map", "colour=Text"], "unknown field 'colour'"),
        (["ingest", "{reviews}", "--map", "title=Summary", "--pii", "UserId=SSN"], "PII kind"),
        (["ingest", "{reviews}", "--kind", "feedback", "--map", "title=Summary"], "feedback_text"),
        (["ingest", "{missing}", "--map", "title=x"], "source file not found"),
        (["ingest", "{reviews}", "--map", "title=Summary", "--redact-pattern", "X=(["], "not a valid regex"),
        (["jobs", "show", "no-such-job"], "no job no-such-job"),
        (["worker", "--queues", "cpu,bogus"], "unknown queue(s) bogus"),
    ],
)
def test_usage_errors_are_clear(home, cli, shared_data, tmp_path, args, message):
    args = [a.format(reviews=shared_data / "reviews" / "amazon_fine_food_200.csv", missing=tmp_path / "nope.csv") for a in args]
    out = cli(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_image_roots_are_enforced(home, cli, shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("VITPRO_IMAGE_ROOTS", str(tmp_path))
    out = cli("ingest", str(shared_data / "abo-samples" / "listings.jsonl"))
    assert out.returncode == 2 and "is not under an allowed root" in out.stderr


def test_a_missing_source_file_is_named_before_any_mapping_hint(home, cli, tmp_path):
    out = cli("ingest", str(tmp_path / "nowhere.csv"))
    assert out.returncode == 2 and f"source file not found: {tmp_path / 'nowhere.csv'}" in out.stderr and "mapping" not in out.stderr


def test_no_wait_then_cancel_a_job_no_worker_took(home, cli, shared_data):
    out = cli("ingest", str(shared_data / "abo-samples" / "listings.jsonl"), "--no-wait", check=True)
    job_id = out.stdout.split()[1]
    assert "queued on 'cpu'" in out.stdout
    listing = cli("jobs", "list", check=True).stdout
    assert job_id in listing and "queued" in listing
    assert f"job {job_id}: cancelled" in cli("jobs", "cancel", job_id, check=True).stdout
    shown = json.loads(cli("jobs", "show", job_id[:22], "--json", check=True).stdout)  # a prefix is enough
    assert shown["status"] == "cancelled" and shown["params"]["format"] == "abo"
    assert "1 unit(s) sent again" in cli("jobs", "retry", job_id, check=True).stdout
    log = json.loads(cli("jobs", "show", job_id, "--json", check=True).stdout)["log"]  # both are entries of the job's history
    assert any(line.endswith("cancel requested by tester") for line in log)
    assert any(line.endswith("retried by tester: 1 unit(s) sent again") for line in log)


@pytest.mark.slow
def test_local_flag_starts_a_worker_on_a_fresh_machine(home, vitpro_cli, cli, shared_data):
    out = vitpro_cli("ingest", str(shared_data / "abo-samples" / "listings.jsonl"), "--local", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ingested 3" in out.stdout and "images_ingested 12" in out.stdout
    assert json.loads(cli("status", "--json", check=True).stdout)["workers"] == []  # it stopped again
    import psutil

    left = [p for p in psutil.process_iter(["cmdline"]) if "workers.app:app" in " ".join(p.info["cmdline"] or []) and _home_of(p) == str(home)]
    assert left == []  # nothing of it runs on


def _home_of(process) -> str | None:
    try:
        return process.environ().get("VITPRO_HOME")
    except Exception:  # gone, or not ours to read
        return None


@pytest.mark.slow
def test_a_local_worker_holding_a_unit_is_left_to_a_warm_stop_and_an_idle_one_is_killed_at_once(home, cli):
    import socket
    import time

    from config.settings import load_settings
    from db.app import jobs
    from db.app.engine import write_engine
    from vitpro.local_workers import start_worker, stop_idle, stop_worker

    cli("init", check=True)
    engine = write_engine(load_settings().app_url)
    proc = start_worker("cpu", pool="solo")  # a solo worker runs its units in its own process
    try:
        wait_for_worker_registration(proc.pid, WorkerProcess(proc, home / "none.log"))
        job_id, _ = jobs.create_job(engine, kind="ingest", queue="cpu", params={}, launched_by="t")
        unit = jobs.unit_id(job_id, 0)
        assert jobs.claim_unit(engine, unit, f"{socket.gethostname()}:{proc.pid}:test", 60) is not None  # as if it ran the unit
        assert stop_idle([proc]) == [proc] and proc.poll() is None  # busy: left running, for a warm stop
        assert jobs.fail_attempt(engine, unit, f"{socket.gethostname()}:{proc.pid}:test", "let go", 3) == "pending"
        started = time.monotonic()
        assert stop_idle([proc]) == []
        assert proc.wait(timeout=5) is not None and time.monotonic() - started < 2  # at once, not after a 6 s shutdown
        assert jobs.live_workers(engine, 60) == []  # and off the list the CLI checks before queueing work
    finally:
        stop_worker(proc, timeout=0, warm=False)


@pytest.mark.slow
def test_vitpro_worker_command_runs_jobs(home, cli, shared_data, tmp_path):
    log_path = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "vitpro") if (REPO / ".venv" / "bin" / "vitpro").exists() else "vitpro",
         "worker", "--queues", "cpu", "--pool", "solo"],
        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
    )
    worker = WorkerProcess(proc, log_path)
    try:
        wait_for_worker_registration(proc.pid, worker)
        out = cli("ingest", str(shared_data / "abo-samples" / "listings.jsonl"), check=True)
        assert "ingested 3" in out.stdout
        shown = cli("jobs", "show", out.stdout.split()[1], "--units", check=True).stdout
        assert "succeeded" in shown and "planned 1 unit(s)" in shown
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())  # the test process's own, or all cores for one solo process
    assert f"(solo), {threads} OpenMP and DuckDB thread(s) per process" in worker.log()


def test_each_worker_process_gets_its_share_of_the_cores_for_openmp():
    from vitpro.local_workers import openmp_threads, with_openmp_threads

    assert [openmp_threads(n, cpus=8) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert with_openmp_threads({"PATH": "/bin"}, 2) == {"PATH": "/bin", "OMP_NUM_THREADS": str(openmp_threads(2))}
    assert with_openmp_threads({"OMP_NUM_THREADS": "3"}, 8)["OMP_NUM_THREADS"] == "3"  # a value the user set is kept


def _demo_until_served(home) -> str:
    """Run `vitpro demo` (with the web app) until it serves; check the app answers and the printed
    password signs in; stop it with Ctrl+C. Returns what it printed."""
    import os
    import signal
    import socket
    import sys
    import time
    import urllib.request

    from config.settings import load_settings
    from db.app import users
    from db.app.engine import write_engine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "vitpro.cli", "demo", "--products", "4", "--complaints", "8", "--workers", "1", "--port", str(port)],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "web app: open" in line:
                break
        text = "".join(lines)
        assert f"web app: open http://localhost:{port}" in text, text[-3000:]
        for _ in range(100):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("the demo's web app does not answer")
        password = re.search(r"sign in as admin\s+password (\S+)", text).group(1)
        assert users.authenticate(write_engine(load_settings().app_url), "admin", password) == users.SignedIn("admin", "admin")
        assert (home / "demo-users.txt").stat().st_mode & 0o077 == 0  # the passwords file is the owner's alone
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return text


@pytest.mark.slow
def test_demo_runs_end_to_end(home, vitpro_cli, cli):
    out = vitpro_cli("demo", "--no-ui", "--products", "4", "--complaints", "8", "--workers", "1", timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "summary" in text and "items      12 (4 catalog, 8 feedback)" in text
    assert "OCR check  brand printed on the package read back on" in text
    assert "image/path_outside_root 1" in text and "image/missing_file 1" in text and "image/truncated_image 1" in text
    assert "Agent ([NAME])" in text and "@example.com" not in text
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["stages"]["items"] == 12 and status["stages"]["images_ocr"] == status["stages"]["image_contents"] == 12
    assert {"NAME", "EMAIL", "PHONE", "UCI", "ADDRESS", "CARD"} <= set(status["redactions"])
    assert status["jobs"] == {"succeeded": 13}  # 10 pipeline jobs (VisAttnScore by two VLMs), a training run and two evaluations
    assert "by idefics2#ocr" in text and "by qwen2_5_vl#ocr" in text  # the second VLM, scored beside the paper's
    # step 8: the tiny VLM trained a few steps on the snapshot, evaluated with and without its adapter
    assert "training   run 'demo-v" in text and ": 6 steps, loss" in text
    assert text.count("  evaluation 'demo-v") == 2 and "(vs 'demo-v" in text
    # step 7: a saved filter, a pilot to label, a snapshot and its exports, each verified
    assert "filter     'demo'" in text and "pilot      'demo-pilot':" in text and "snapshot   'demo-v" in text
    export_lines = [line for line in text.splitlines() if line.startswith("  export ")]
    assert len(export_lines) == 5 and all("verified" in line for line in export_lines)
    folder = export_lines[1].split("verified: ")[1]
    assert "valid llamafactory export" in cli("snapshot", "verify", folder, check=True).stdout
    assert status["stages"]["items_clip_scored"] == 12
    assert "CLIPScore    12 item(s)" in text and "VisAttnScore" in text and "sample(s)" in text and "mean nothing" in text
    samples_line = next(line for line in text.splitlines() if line.startswith("  samples "))
    for task in ("recognition", "damage_detection", "matching", "attribute_extraction", "counting", "condition_packaging", "comparison", "refusal"):
        assert task in samples_line  # every task has samples
    assert "rejected   hf/" in text  # the tiny local model's output went through parsing and was refused
    # again, this time as the README runs it: it ends serving the web app, and says where and as whom
    again = _demo_until_served(home)
    assert "ingested 0" in again  # the same demo data adds nothing
    job_lines = [line for line in again.splitlines() if line.startswith("  job ")]
    assert any("clip_score" in line and "items_to_score 0" in line for line in job_lines), job_lines  # nothing scored twice
    assert any("grounding" in line and "samples_to_score 0" in line for line in job_lines), job_lines
    assert any("generate" in line and "items_to_generate 0" in line for line in job_lines), job_lines  # nor generated twice


def test_docker_compose_file_runs_every_service_without_a_shared_volume(tmp_path):
    raw = (REPO / "docker-compose.yml").read_text()
    spec = yaml.safe_load(raw)
    services = spec["services"]
    assert {"redis", "postgres", "minio", "bucket", "ui", "worker-cpu", "worker-gpu"} <= set(services)
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    # each named volume belongs to one service (a database's or the object store's own files); the workers,
    # the web app and the command line mount none: all they share is the catalog, the broker and S3
    users_of: dict[str, list[str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            users_of.setdefault(volume.split(":", 1)[0], []).append(name)
    assert users_of == {"pgdata": ["postgres"], "objects": ["minio"]}
    for name in ("worker-cpu", "worker-gpu", "ui", "cli", "init"):
        env = services[name]["environment"]
        assert "volumes" not in services[name]
        assert env["VITPRO_BROKER"].startswith("redis://") and env["VITPRO_CATALOG"].startswith("postgresql://")
        assert all(env[k].startswith("s3://") for k in ("VITPRO_DATA_PATH", "VITPRO_BLOB_PATH", "VITPRO_OUT_PATH"))
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert ":" not in env["VITPRO_CATALOG"].split("//", 1)[1].split("@", 1)[0]  # no password in the URL (PGPASSWORD)
    # every secret is an interpolation the environment must fill: none is written in the file
    for key in ("AWS_SECRET_ACCESS_KEY", "PGPASSWORD"):
        assert services["worker-cpu"]["environment"][key].startswith("${") and ":?" in services["worker-cpu"]["environment"][key]
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"].startswith("${")
    env = {**os.environ, "POSTGRES_PASSWORD": "pg-secret-1", "S3_ACCESS_KEY": "vitpro", "S3_SECRET_KEY": "s3-secret-123"}
    tools = [t for t in (["docker", "compose"], ["docker-compose"]) if shutil.which(t[0]) and subprocess.run([*t, "version"], capture_output=True).returncode == 0]
    assert tools, "neither `docker compose` nor docker-compose is installed (`make compose` installs Debian's docker-compose)"
    check = subprocess.run([*tools[0], "-f", str(REPO / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stderr
    missing = subprocess.run([*tools[0], "-f", str(REPO / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True,
                             env={k: v for k, v in env.items() if k != "S3_SECRET_KEY"})
    assert missing.returncode != 0 and "S3_SECRET_KEY" in missing.stderr


def test_ui_stops_its_server_on_sigterm(home):
    """`kill PID` of `vitpro ui` stops the Streamlit child too, within seconds, and frees the port (the
    child used to be re-parented and keep serving)."""
    import signal
    import socket
    import sys
    import time
    import urllib.request

    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "vitpro.cli", "ui", "--port", str(port)], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("the web app does not answer")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the server runs as a child of `vitpro ui`"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # to the parent alone, as `kill PID` does
        assert proc.wait(20) == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [] and time.monotonic() - started < 15
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
