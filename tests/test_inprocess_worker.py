"""The tests' in-process worker (tests/inprocess.py) takes the path a worker process takes: the units' messages
from the broker, the workers' own task, a live worker's registration while it runs, and a failed unit sent
again after its back-off (the message's eta) and done on its second attempt."""
from __future__ import annotations

import json

from config.settings import load_settings
from curation.mapping import ColumnMapping
from db.app import jobs
from db.app.engine import write_engine
from db.store import open_store
from jobs.ingest import IngestJob
from jobs.submit import submit_job

from .conftest import wait_job
from .helpers import label_image, write


def test_the_in_process_worker_runs_units_from_the_broker_and_retries_after_the_back_off(home, tmp_path, inprocess_worker, cli, monkeypatch):
    from workers import runtime

    real = runtime._handlers()
    failed: list[str] = []

    class FlakyIngest:
        """The ingest handler, whose first work unit fails once with an error a retry can fix."""

        def __getattr__(self, name):
            return getattr(real["ingest"], name)

        def run(self, ctx):
            if not failed:
                failed.append(ctx.run_id)
                raise OSError("the disk hiccuped")
            return real["ingest"].run(ctx)

    class Handlers:
        def __getitem__(self, kind):
            return FlakyIngest() if kind == "ingest" else real[kind]

    monkeypatch.setattr(runtime, "_handlers", Handlers)
    root = tmp_path / "src"
    write(root / "a.jpg", label_image("A"))
    (root / "items.csv").write_text("id,title,img\n" + "".join(f"{i},Item {i},a.jpg\n" for i in range(4)))
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    params = IngestJob(source=str(root / "items.csv"), format="csv", mapping=mapping, name="items", image_root=str(root), redact=True,
                       rows_per_unit=2).params()

    worker = inprocess_worker("cpu")
    engine = write_engine(load_settings().app_url)
    [live] = jobs.live_workers(engine, 60, queue="cpu")
    assert live.id == worker.worker_id and jobs.worker_devices(live)[0] == "cpu"
    assert json.loads(cli("status", "--json", check=True).stdout)["workers"] == [worker.worker_id]
    job = wait_job(submit_job("ingest", params), timeout=60)
    assert job.status == "succeeded" and job.counts["ingested"] == 4
    assert open_store(load_settings().store).scalar("SELECT count(*) FROM items") == 4
    unit = next(u for u in jobs.job_units(engine, job.id) if u.id == failed[0])
    assert unit.status == "done" and unit.attempts == 2
    assert worker.outcomes.count("retry") == 1 and worker.outcomes.count("done") >= 4  # plan, 2 units, finalize
    log = worker.log()
    assert "the disk hiccuped" in log and "will retry in 2 s" in log and "Traceback" not in log
    worker.stop()
    assert jobs.live_workers(engine, 60) == [] and json.loads(cli("status", "--json", check=True).stdout)["workers"] == []
