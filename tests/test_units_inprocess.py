"""Work units run in this process (no broker): the handlers' own guarantees, step by step."""
import os

from config.settings import load_settings
from curation.mapping import ColumnMapping
from db.app import jobs
from db.app.engine import write_engine
from db.store import init_store, open_store
from jobs.ingest import IngestJob
from workers.runtime import execute_unit

from .helpers import label_image, write


def _run(uid, sent):
    return execute_unit(uid, send=sent.extend)


def test_changed_source_fails_its_unit_and_a_retry_counts_what_is_stored(home, tmp_path):
    settings = load_settings()
    init_store(settings.store)
    engine = write_engine(settings.app_url)
    root = tmp_path / "src"
    write(root / "a.jpg", label_image("A"))
    src = root / "items.csv"
    src.write_text("id,title,img\n" + "".join(f"{i},Item {i},a.jpg\n" for i in range(6)))
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    params = IngestJob(source=str(src), format="csv", mapping=mapping, name="items", image_root=str(root), redact=True, rows_per_unit=3).params()
    job_id, first = jobs.create_job(engine, kind="ingest", queue="cpu", params=params, launched_by="t")
    sent: list = []
    assert _run(first[0][0], sent) == "done"
    units = sorted(uid for uid, _ in sent)
    sent.clear()
    assert _run(units[0], sent) == "done"
    planned = os.stat(src)
    os.utime(src, ns=(planned.st_atime_ns, planned.st_mtime_ns + 1_000_000_000))  # someone edits the file
    assert _run(units[1], sent) == "failed"
    unit = next(u for u in jobs.job_units(engine, job_id) if u.id == units[1])
    assert unit.status == "failed" and "changed after the job was planned" in unit.error and unit.attempts == 1
    assert sent == [(f"{job_id}.final", "cpu")]
    _run(sent.pop()[0], sent)
    job = jobs.get_job(engine, job_id)
    assert job.status == "failed" and job.counts["ingested"] == 3 and job.counts["images_ingested"] == 3

    os.utime(src, ns=(planned.st_atime_ns, planned.st_mtime_ns))  # put back what was planned
    resent = jobs.retry_job(engine, job_id)
    assert resent == [(units[1], "cpu")]
    assert _run(units[1], sent) == "done"
    _run(sent.pop()[0], sent)
    job = jobs.get_job(engine, job_id)
    assert job.status == "succeeded"
    assert (job.counts["ingested"], job.counts["skipped"], job.counts["images_ingested"], job.counts["rows"]) == (6, 0, 6, 6)
    assert open_store(settings.store).scalar("SELECT count(*) FROM items") == 6
