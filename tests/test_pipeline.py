"""End to end through the broker: ingest, redaction, bad input, OCR, cancel, crash recovery, on the embedded
SQLite broker and on the running Redis + PostgreSQL. Real Celery worker processes where the worker process
is what is tested (a kill, two at once, what its log holds, Redis + PostgreSQL); elsewhere the units run in
this process by the workers' own task (tests/inprocess.py), the commands through click's CliRunner."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.exc import OperationalError

from config.settings import load_settings
from curation.ingest import TextLimits
from curation.mapping import ColumnMapping
from db.app import jobs
from db.app.engine import write_engine
from db.store import open_store
from jobs.ingest import IngestJob
from jobs.ocr import OcrJob
from jobs.submit import JobRefused, submit_job

from .conftest import wait_job
from .helpers import label_image, png_bomb, write

pytestmark = pytest.mark.slow

REVIEW_ARGS = [
    "--kind", "feedback", "--feedback-type", "review",
    "--map", "external_id=Id", "--map", "product_ref=ProductId", "--map", "title=Summary",
    "--map", "feedback_text=Summary,Text", "--map", "time=Time",
    "--pii", "ProfileName=NAME", "--pii", "UserId=UCI",
]


def _lake():
    s = load_settings()
    return open_store(s.store)


def _engine():
    return write_engine(load_settings().app_url)


def _store_text(lake) -> str:
    """Every value of every lake table, as text."""
    chunks = []
    for (table,) in lake.fetchall("SHOW TABLES"):
        chunks.append(str(lake.fetchall(f"SELECT * FROM {table}")))
    return "\n".join(chunks)


def _app_text(engine) -> str:
    from sqlalchemy import text

    with engine.connect() as conn:
        return "\n".join(str(list(conn.execute(text(f"SELECT * FROM {t}")))) for t in ("jobs", "work_units", "job_logs"))


def _files_bytes(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def _job_id(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("job ") and " queued on " in line:
            return line.split()[1]
    raise AssertionError(f"no job id in output:\n{output}")


# ---- real sources, embedded broker -----------------------------------------------------------------------
def test_ingest_abo_and_reviews_then_reingest_adds_nothing(home, inprocess_worker, shared_data, cli):
    worker = inprocess_worker("cpu")
    abo = shared_data / "abo-samples" / "listings.jsonl"
    reviews = shared_data / "reviews" / "amazon_fine_food_200.csv"

    out = cli("ingest", str(abo), check=True)
    assert "succeeded" in out.stdout and "ingested 3" in out.stdout and "images_ingested 12" in out.stdout
    out = cli("ingest", str(reviews), *REVIEW_ARGS, "--rows-per-unit", "37", check=True)
    assert "ingested 200" in out.stdout and "failed 0" in out.stdout

    lake = _lake()
    assert lake.scalar("SELECT count(*) FROM sources") == 2
    assert dict(lake.fetchall("SELECT kind, count(*) FROM items GROUP BY kind")) == {"catalog": 3, "feedback": 200}
    assert lake.scalar("SELECT count(*) FROM images") == 12
    assert lake.scalar("SELECT count(DISTINCT sha256) FROM images") == 12
    assert lake.fetchall("SELECT max(greatest(width, height)), min(format), max(format) FROM images") == [(1024, "JPEG", "JPEG")]
    blobs = [home / "blobs" / p for (p,) in lake.fetchall("SELECT blob_path FROM images")]
    assert all(b.exists() for b in blobs)
    bag = lake.fetchone("SELECT title, brand, language, attributes->>'color' FROM items WHERE external_id = 'B0799CK52K'")
    assert bag == ("Starter Yoga Bag", "Starter", "en_US", "Iron Grey")
    row2 = lake.fetchone("SELECT title, product_ref, event_time::DATE::VARCHAR FROM items WHERE external_id = '2'")
    assert row2 == ("Not as Advertised", "B00813GRG4", "2012-09-07")

    # PII columns: never stored, and their values gone from the row's text
    with open(reviews, newline="", encoding="utf-8") as f:
        source_rows = list(csv.DictReader(f))
    store_text = _store_text(lake)
    for r in source_rows:
        assert r["UserId"] not in store_text
    texts = dict(lake.fetchall("SELECT external_id, coalesce(title, '') || ' ' || feedback_text FROM items WHERE kind = 'feedback'"))
    for r in source_rows:
        for part in r["ProfileName"].replace('"', "|").split("|"):
            if len(part.strip()) >= 4:
                assert part.strip() not in texts[r["Id"]], (r["Id"], part)
    assert "ProfileName" not in store_text.replace('"ProfileName": "NAME"', "")  # only the mapping names it

    # re-ingesting the same sources adds nothing, and writes nothing: the store's version stays
    version = lake.current_version()
    out = cli("ingest", str(abo), check=True)
    assert "ingested 0" in out.stdout and "skipped 3" in out.stdout
    out = cli("ingest", str(reviews), *REVIEW_ARGS, check=True)
    assert "ingested 0" in out.stdout and "skipped 200" in out.stdout
    assert lake.scalar("SELECT count(*) FROM items") == 203
    assert lake.scalar("SELECT count(*) FROM images") == 12
    assert lake.scalar("SELECT count(*) FROM sources") == 2
    assert lake.current_version() == version

    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["stages"]["items"] == 203 and status["stages"]["images"] == 12
    assert status["redactions"]["NAME"] >= 1 and status["jobs"] == {"succeeded": 4}
    assert any(w.startswith(os.uname().nodename) for w in status["workers"])
    listing = cli("jobs", "list", check=True).stdout
    assert listing.count("succeeded") == 4
    assert "Traceback" not in worker.log()


TRANSCRIPT = """Agent (Daniel Weber): Hello, this is Daniel from support.
Customer: Hi Daniel, my name is Hannah Okafor. Order 407-1234567-7654321 came with the lid cracked.
Customer: Reach me at hannah.okafor77@example.org or +1 (312) 555-0199.
Customer: Address is 1600 Lakeview Drive, Madison, WI 53703. Card 4929 1234 5678 9003 was charged.
Agent (Daniel Weber): Thanks Hannah, return RMA-88231 is open."""
PII = ["Daniel", "Weber", "Hannah", "Okafor", "407-1234567-7654321", "hannah.okafor77@example.org", "555-0199",
       "1600 Lakeview Drive", "53703", "4929 1234 5678 9003", "RMA-88231", "Natasha Quinlan", "natasha.q@example.net"]


def test_redacted_pii_is_stored_nowhere_tables_files_or_logs(home, start_worker, tmp_path):
    worker = start_worker("cpu")
    data = tmp_path / "src"
    write(data / "p1.jpg", label_image("LUMIO 250 ml"))
    rows = [
        {"ticket": "T1", "text": TRANSCRIPT, "photos": ["p1.jpg"], "customer": "Natasha Quinlan", "mail": "natasha.q@example.net"},
        {"ticket": "T2", "text": "Natasha Quinlan here, see photo. " + "long " * 30000, "photos": [], "customer": "Natasha Quinlan", "mail": "x@y.z"},
        {"ticket": "T3", "text": "Customer: Natasha Quinlan, the seal was broken.", "photos": ["../../etc/passwd", "missing.jpg"], "customer": "Natasha Quinlan",
         "mail": "natasha.q@example.net"},
    ]
    src = data / "chats.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mapping = ColumnMapping(
        item_kind="feedback", feedback_type="transcript",
        columns={"external_id": ["ticket"], "feedback_text": ["text"], "images": ["photos"]},
        pii={"customer": "NAME", "mail": "EMAIL"},
    )
    params = IngestJob(source=str(src), format="jsonl", mapping=mapping, name="chats", image_root=str(data),
                       redact=True, text_limits=TextLimits(max_text_chars=50_000)).params()
    job = wait_job(submit_job("ingest", params))
    assert job.status == "succeeded", job.error
    assert job.counts["ingested"] == 2 and job.counts["failed"] == 1 and job.counts["images_failed"] == 2
    lake = _lake()
    stored = lake.fetchone("SELECT feedback_text, redaction_counts FROM items WHERE external_id = 'T1'")
    assert "Order [UCI] came with the lid cracked" in stored[0]
    assert json.loads(stored[1]) == {"UCI": 2, "EMAIL": 1, "PHONE": 1, "ADDRESS": 1, "CARD": 1, "NAME": 6}
    long_error = lake.fetchone("SELECT code, source_row FROM errors WHERE row_number = 2")
    assert long_error[0] == "text_too_long" and "[NAME]" in long_error[1]
    ocr = wait_job(submit_job("ocr", OcrJob().params()))
    assert ocr.status == "succeeded"

    haystacks = {
        "lake tables": _store_text(lake),
        "app tables": _app_text(_engine()),
        "worker log": worker.log(),
    }
    files = _files_bytes(home)
    for value in PII:
        for where, text in haystacks.items():
            assert value not in text, f"{value!r} found in {where}"
        assert value.encode() not in files, f"{value!r} found in a file under {home}"


def _png_with_bad_checksum() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # flip a byte of the compressed data: the chunk's CRC no longer matches
    return bytes(data)


def test_bad_input_is_recorded_and_the_rest_goes_on(home, inprocess_worker, tmp_path, cli):
    inprocess_worker("cpu")
    root = tmp_path / "photos"
    good = label_image("GOOD")
    write(root / "good.jpg", good)
    write(root / "truncated.jpg", good[: len(good) // 2])
    write(root / "corrupt.png", _png_with_bad_checksum())
    write(root / "bomb.png", png_bomb())
    lines = [
        "id,title,text,images",
        "1,Good one,fine product,good.jpg",
        "2,Truncated photo,text,truncated.jpg",
        "3,Corrupt photo,text,corrupt.png",
        "4,Bomb,text,bomb.png",
        "5,Missing photo,text,nowhere.jpg",
        "6,Escape,text,../../etc/passwd",
        "7,FTP,text,ftp://example.com/a.jpg",
        "8,missing a column",
        "10,Good two,also fine,good.jpg|good.jpg",
    ]
    body = ("\n".join(lines) + "\n").encode()
    body += b"11,Bad \xff utf8,text,good.jpg\n"
    body += b"12,,,good.jpg\n"  # empty text
    body += ("13,Huge,\"" + "word " * 220_000 + "\",good.jpg\n").encode()  # a 1 MB transcript
    body += b"14,Last good,the end,good.jpg\n"
    body += b'15,Broken quote,"this quote is never closed,good.jpg\n'
    body += b"16,After the broken row,read again,good.jpg\n"
    src = tmp_path / "bad.csv"
    src.write_bytes(body)
    out = cli("ingest", str(src), "--map", "external_id=id", "--map", "title=title", "--map", "description=text",
                     "--map", "images=images", "--image-root", str(root), "--rows-per-unit", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = _job_id(out.stdout)
    job = jobs.get_job(_engine(), job_id)
    lake = _lake()
    errors = {(row, code) for row, code in lake.fetchall("SELECT row_number, code FROM errors WHERE job_id = ?", [job_id])}
    # row numbers count data rows: id 10 is row 9, and so on
    assert errors == {
        (2, "truncated_image"), (3, "corrupt_image"), (4, "image_too_large"), (5, "missing_file"),
        (6, "path_outside_root"), (7, "unsupported_url_scheme"), (8, "wrong_field_count"),
        (10, "invalid_utf8"), (11, "empty_text"), (12, "text_too_long"), (14, "bad_quoting"),
    }
    ingested = sorted(int(x) for (x,) in lake.fetchall("SELECT external_id FROM items"))
    assert ingested == [1, 2, 3, 4, 5, 6, 7, 10, 14, 16]
    assert job.counts["ingested"] == 10 and job.counts["failed"] == 5 and job.counts["images_failed"] == 6
    assert job.counts["images_ingested"] == 5  # rows 1, 10 (twice), 14 and 16
    assert lake.scalar("SELECT n_images FROM items WHERE external_id = '10'") == 2
    assert lake.scalar("SELECT count(DISTINCT sha256) FROM images") == 1
    report = cli("errors", "--job", job_id, check=True).stdout
    for code in ("path_outside_root", "image_too_large", "text_too_long", "bad_quoting", "invalid_utf8"):
        assert code in report
    assert "resolves outside the image root" in report and "1,099,999 characters" in report


# ---- OCR -------------------------------------------------------------------------------------------------
def test_ocr_job_reads_labels_and_survives_a_broken_blob(home, inprocess_worker, tmp_path, shared_data):
    inprocess_worker("cpu")
    root = tmp_path / "photos"
    write(root / "a.jpg", label_image("ACME\nSHAMPOO"))
    write(root / "b.jpg", label_image("NORDBROOK 500 g"))
    write(root / "c.jpg", label_image("+1 415 555 0100\nhannah@example.com"))
    src = tmp_path / "cat.csv"
    src.write_text("id,title,img\n1,Shampoo,a.jpg\n2,Coffee,b.jpg\n3,Note,c.jpg\n4,Copy of 1,a.jpg\n")
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    job = wait_job(submit_job("ingest", IngestJob(source=str(src), format="csv", mapping=mapping, name="cat", image_root=str(root), redact=True).params()))
    assert job.status == "succeeded" and job.counts["images_ingested"] == 4
    lake = _lake()
    broken_sha, broken_blob = lake.fetchone("SELECT sha256, blob_path FROM images WHERE item_id = (SELECT item_id FROM items WHERE external_id = '2')")
    (home / "blobs" / broken_blob).write_bytes(b"disk went bad")
    job = wait_job(submit_job("ocr", OcrJob(batch_size=2).params()))
    assert job.status == "succeeded"
    assert job.counts["images_read"] == 2 and job.counts["images_failed"] == 1  # 3 contents, one broken
    texts = dict(lake.fetchall("SELECT i.external_id, o.text FROM items i JOIN images im USING (item_id) JOIN ocr o ON o.sha256 = im.sha256"))
    assert texts["1"].upper().split("\n") == ["ACME", "SHAMPOO"] and texts["4"] == texts["1"]
    assert "0100" not in texts["3"] and "hannah" not in texts["3"]  # OCR text is redacted too
    assert "[PHONE]" in texts["3"] and "[EMAIL]" in texts["3"]
    assert lake.fetchone("SELECT code, subject FROM errors WHERE stage = 'ocr'") == ("ocr_failed", broken_sha)
    n_boxes, conf = lake.fetchone("SELECT n_boxes, mean_confidence FROM ocr WHERE sha256 = "
                                  "(SELECT sha256 FROM images WHERE item_id = (SELECT item_id FROM items WHERE external_id = '1'))")
    assert n_boxes >= 1 and conf > 0.8
    again = wait_job(submit_job("ocr", OcrJob().params()))
    assert again.counts.get("images_to_read") == 1  # only the broken one is still unread


# ---- crash recovery --------------------------------------------------------------------------------------
def _many_items(tmp_path: Path, n: int) -> Path:
    root = tmp_path / "imgs"
    rows = ["id,title,img"]
    for i in range(n):
        img = Image.new("RGB", (640, 480), ((i * 37) % 255, (i * 91) % 255, (i * 13) % 255))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=95)
        write(root / f"{i}.jpg", buf.getvalue())
        rows.append(f"{i},Product {i},{i}.jpg")
    src = tmp_path / "many.csv"
    src.write_text("\n".join(rows) + "\n")
    return src


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_worker_killed_mid_job_nothing_lost_nothing_doubled(broker, home, start_worker, tmp_path, request, monkeypatch):
    if broker == "redis":
        monkeypatch.setenv("VITPRO_BROKER", request.getfixturevalue("redis_url"))
        from .conftest import _reset_process_caches

        _reset_process_caches()
    n = 240
    src = _many_items(tmp_path, n)
    first = start_worker("cpu")
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    job_id = submit_job("ingest", IngestJob(source=str(src), format="csv", mapping=mapping, name="many", image_root=str(src.parent / "imgs"),
                                               rows_per_unit=12).params())
    engine = _engine()
    killed_unit = None
    deadline = time.monotonic() + 90
    while killed_unit is None and time.monotonic() < deadline:
        units = jobs.job_units(engine, job_id)
        if sum(u.status == "done" and u.phase == 1 for u in units) >= 2:
            os.killpg(first.pid, signal.SIGSTOP)  # freeze it, then look: no race with a finishing unit
            try:
                leased = [u for u in jobs.job_units(engine, job_id) if u.status == "leased"]
            except OperationalError:  # frozen inside a write to the app tables (SQLite's lock held): thaw it, look again later
                os.killpg(first.pid, signal.SIGCONT)
                time.sleep(0.05)
                continue
            if leased:
                killed_unit = leased[0].id
                os.killpg(first.pid, signal.SIGKILL)
                first.proc.wait()
                break
            os.killpg(first.pid, signal.SIGCONT)
        time.sleep(0.05)
    assert killed_unit is not None, "never caught the worker inside a unit"
    before = jobs.get_job(engine, job_id)
    assert before.status == "running" and before.progress_done < n

    start_worker("cpu")
    job = wait_job(job_id, timeout=120)
    assert job.status == "succeeded", job.error
    lake = _lake()
    assert lake.scalar("SELECT count(*) FROM items") == n
    assert lake.scalar("SELECT count(DISTINCT item_id) FROM items") == n
    assert lake.scalar("SELECT count(*) FROM images") == n
    assert lake.scalar("SELECT count(DISTINCT image_id) FROM images") == n
    assert job.counts["ingested"] == n and job.counts["skipped"] == 0 and job.counts["rows"] == n
    assert (job.progress_done, job.progress_total) == (n, n)
    unit = next(u for u in jobs.job_units(engine, job_id) if u.id == killed_unit)
    assert unit.status == "done" and unit.attempts == 2


def test_cancel_stops_between_batches(home, inprocess_worker, tmp_path, cli):
    src = _many_items(tmp_path, 120)
    inprocess_worker("cpu")
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    job_id = submit_job("ingest", IngestJob(source=str(src), format="csv", mapping=mapping, name="many", image_root=str(src.parent / "imgs"),
                                               rows_per_unit=6).params())
    engine = _engine()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(u.status == "done" and u.phase == 1 for u in jobs.job_units(engine, job_id)) < 1:
        time.sleep(0.05)
    out = cli("jobs", "cancel", job_id, check=True)
    assert "cancel" in out.stdout
    job = wait_job(job_id)
    assert job.status == "cancelled"
    units = [u for u in jobs.job_units(engine, job_id) if u.phase == 1]
    done = [u for u in units if u.status == "done"]
    assert 1 <= len(done) < len(units) and all(u.status in ("done", "cancelled") for u in units)
    assert _lake().scalar("SELECT count(*) FROM items") == sum(u.result["ingested"] for u in done)


# ---- Redis broker + PostgreSQL catalog -------------------------------------------------------------------
def test_redis_broker_and_postgres_catalog(home, pg_url, redis_url, monkeypatch, start_worker, shared_data, cli):
    import redis


    monkeypatch.setenv("VITPRO_CATALOG", pg_url)
    monkeypatch.setenv("VITPRO_BROKER", redis_url)
    from .conftest import _reset_process_caches

    _reset_process_caches()
    worker = start_worker("cpu", pool="prefork", concurrency=2)
    out = cli("ingest", str(shared_data / "abo-samples" / "listings.jsonl"), check=True)
    assert "ingested 3" in out.stdout
    out = cli("ingest", str(shared_data / "reviews" / "amazon_fine_food_200.csv"), *REVIEW_ARGS, "--rows-per-unit", "25", check=True)
    assert "ingested 200" in out.stdout
    lake = _lake()
    assert lake.scalar("SELECT count(*) FROM items") == 203
    assert lake.scalar("SELECT count(*) FROM images") == 12
    # the catalog really is PostgreSQL and the broker really is Redis
    import psycopg

    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM jobs WHERE status = 'succeeded'").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM ducklake_table").fetchone()[0] >= 5
    keys = {k.decode() for k in redis.Redis.from_url(redis_url).keys("*")}
    assert any("cpu" in k for k in keys), keys
    assert not (home / "broker.sqlite").exists() and not (home / "catalog.sqlite").exists()
    assert "Traceback" not in worker.log()


def test_the_same_source_ingested_twice_at_once_ends_with_one_copy(home, start_worker, tmp_path):
    src = _many_items(tmp_path, 60)
    start_worker("cpu", pool="prefork", concurrency=2)
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    params = IngestJob(source=str(src), format="csv", mapping=mapping, name="twice", image_root=str(src.parent / "imgs"), redact=True, rows_per_unit=5).params()
    # the very same job twice is refused (a double click); the same source in other units still races
    first = submit_job("ingest", params)
    with pytest.raises(JobRefused, match="an identical job is already"):
        submit_job("ingest", params)
    second = submit_job("ingest", {**params, "rows_per_unit": 6})
    a, b = wait_job(first), wait_job(second)
    assert a.status == b.status == "succeeded"
    lake = _lake()
    assert lake.scalar("SELECT count(*) FROM items") == 60
    assert lake.scalar("SELECT count(*) FROM images") == 60
    assert a.counts["ingested"] + b.counts["ingested"] == 60  # the copies a race let in were counted out
    assert a.counts["skipped"] + b.counts["skipped"] == 60
