"""Object storage: the lake's data files, the image blobs, sources, exports and models in an S3-compatible
server (moto's server mode over real HTTP, with signed requests checked), and what each failure says."""
from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import boto3
import pytest

from db.storage import objects
from db.storage.blobs import BlobMissing, RemoteBlobs, evict

from .conftest import _reset_process_caches


def _s3():
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _keys(bucket: str, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", []))


@pytest.fixture
def s3_home(home, s3_env, monkeypatch):
    """A fresh home whose lake data, blobs and outputs are in the test bucket (the catalog stays embedded)."""
    monkeypatch.setenv("VITPRO_DATA_PATH", f"s3://{s3_env}/lake/")
    monkeypatch.setenv("VITPRO_BLOB_PATH", f"s3://{s3_env}/blobs/")
    monkeypatch.setenv("VITPRO_OUT_PATH", f"s3://{s3_env}/out")
    _reset_process_caches()
    return s3_env


def test_lake_data_files_live_in_the_bucket_and_a_second_connection_reads_them(s3_home):
    from config.settings import load_settings
    from db.lake.connection import Lake
    from db.store import open_store

    lake = open_store(load_settings().store)
    lake.execute("SELECT 1")
    lake.transaction(lambda con: (con.execute("CREATE TABLE IF NOT EXISTS probe (k INTEGER, v VARCHAR)"),
                                  con.execute("INSERT INTO probe SELECT range, 'row ' || range FROM range(5000)")))
    parquet = [k for k in _keys(s3_home, "lake/") if k.endswith(".parquet")]
    assert parquet, "no data file reached the bucket"
    other = Lake(load_settings().catalog_url, load_settings().data_path)  # a connection of its own, as another process has
    assert other.fetchone("SELECT count(*), sum(k) FROM probe") == (5000, sum(range(5000)))
    # the secret DuckDB holds is temporary and shown redacted
    secrets = str(other.fetchall("SELECT * FROM duckdb_secrets()"))
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in secrets and "vitpro_s3" in secrets


def test_remote_blobs_are_written_once_read_through_the_cache_and_kept_under_the_cap(s3_home, tmp_path):
    store = RemoteBlobs(f"s3://{s3_home}/blobs/", tmp_path / "cache", cap_bytes=1 << 30)
    for i in range(6):
        store.put(f"{i:02d}/blob-{i}.bin", bytes([i]) * 3000)
    assert _keys(s3_home, "blobs/") == [f"blobs/{i:02d}/blob-{i}.bin" for i in range(6)]
    first = store.local("00/blob-0.bin")
    assert first.read_bytes() == b"\x00" * 3000 and first.is_relative_to(tmp_path / "cache")
    _s3().delete_object(Bucket=s3_home, Key="blobs/00/blob-0.bin")
    assert store.local("00/blob-0.bin").read_bytes() == b"\x00" * 3000  # a cached copy needs no request
    # files read over two minutes ago are evicted first once the cache passes its cap
    for i in range(1, 6):
        path = store.local(f"{i:02d}/blob-{i}.bin")
        os.utime(path, (time.time() - 600 + i, time.time() - 600 + i))
    os.utime(first, (time.time() - 900, time.time() - 900))
    remaining = evict(tmp_path / "cache", 10_000)
    left = sorted(p.name for p in (tmp_path / "cache").rglob("*.bin"))
    assert remaining <= 10_000 and left == ["blob-3.bin", "blob-4.bin", "blob-5.bin"]
    # a blob deleted behind the store's back (and not cached): an OSError naming the object, as a missing file on disk
    with pytest.raises(BlobMissing, match=f"s3://{s3_home}/blobs/00/blob-0.bin is missing"):
        store.local("00/blob-0.bin")
    assert not store.local("00/blob-0.bin", missing_ok=True).exists()  # pages that show images show none


def test_a_file_read_recently_is_never_evicted(tmp_path):
    for i in range(4):
        (tmp_path / f"f{i}").write_bytes(b"x" * 1000)
    assert evict(tmp_path, 1000) == 4000  # all four were read just now: over the cap, but kept
    assert len(list(tmp_path.iterdir())) == 4


def test_errors_name_the_object_and_never_the_secret(s3_home, monkeypatch):
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    url = objects.ObjectURL.parse(f"s3://{s3_home}/blobs/ab/nothing.jpg")
    assert objects.head(url) is None
    with pytest.raises(objects.ObjectStoreError) as missing:
        objects.get_bytes(url)
    assert missing.value.kind == "missing" and str(url) in str(missing.value)

    with pytest.raises(objects.ObjectStoreError) as no_bucket:
        objects.put_bytes(objects.ObjectURL.parse("s3://no-such-bucket-here/x/y.bin"), b"1")
    assert no_bucket.value.kind == "no_bucket" and "'no-such-bucket-here' does not exist" in str(no_bucket.value)
    with pytest.raises(objects.ObjectStoreError) as head_no_bucket:
        objects.head(objects.ObjectURL.parse("s3://no-such-bucket-here/x/y.bin"))
    assert head_no_bucket.value.kind == "no_bucket"

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-secret-at-all")
    with pytest.raises(objects.ObjectStoreError) as refused:
        objects.get_bytes(url)
    assert refused.value.kind == "credentials" and str(url) in str(refused.value)
    assert "not-the-right-secret-at-all" not in str(refused.value) and secret not in str(refused.value)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(objects.ObjectStoreError) as unreachable:
        objects.get_bytes(url)
    assert unreachable.value.kind == "unreachable" and "http://127.0.0.1:9" in str(unreachable.value) and str(url) in str(unreachable.value)
    assert time.monotonic() - started < 30


def test_credentials_in_an_s3_url_are_refused():
    with pytest.raises(ValueError, match="credentials do not belong"):
        objects.ObjectURL.parse("s3://AKIA:topsecret@bucket/prefix")


def test_opening_a_store_in_a_missing_bucket_says_so(home, s3_env, monkeypatch):
    from config.settings import load_settings
    from db.store import open_store

    monkeypatch.setenv("VITPRO_DATA_PATH", "s3://bucket-nobody-made/lake/")
    _reset_process_caches()
    with pytest.raises(objects.ObjectStoreError, match="bucket 'bucket-nobody-made' does not exist"):
        open_store(load_settings().store)


def _upload_abo(bucket: str, shared_data: Path) -> str:
    root = shared_data / "abo-samples"
    for path in root.rglob("*"):
        if path.is_file():
            _s3().upload_file(str(path), bucket, "incoming/abo/" + path.relative_to(root).as_posix())
    return f"s3://{bucket}/incoming/abo/listings.jsonl"


def test_ingest_from_the_bucket_generate_and_export_to_it_from_the_cli(s3_home, shared_data, cli):
    """A source and its photos in S3, the lake and blobs in S3, the export to S3: nothing of it on this disk
    but caches, and the secret in no log, job parameter or row."""
    source = _upload_abo(s3_home, shared_data)
    out = cli("ingest", source, "--local", check=True).stdout
    assert "ingested 3" in out and "images_ingested 12" in out
    blobs = _keys(s3_home, "blobs/")
    assert len(blobs) == 12 and all(k.endswith(".jpg") for k in blobs)
    cli("generate", "--backend", "template", "--local", check=True)
    from curation.generation.tasks import TASKS

    cli("filter", "save", "all", "--where", f"task in {','.join(TASKS)}", check=True)
    cli("snapshot", "create", "s3snap", "--filter", "all", check=True)
    done = cli("snapshot", "export", "s3snap", "--format", "llava", "--format", "trl", "--local", check=True).stdout
    prefix = "out/exports/s3snap/"
    exported = _keys(s3_home, prefix)
    for fmt in ("llava", "trl"):
        manifest = json.loads(_s3().get_object(Bucket=s3_home, Key=f"{prefix}{fmt}/manifest.json")["Body"].read())
        assert manifest["snapshot"] == "s3snap" and manifest["records"] > 0
        images = [k for k in exported if k.startswith(f"{prefix}{fmt}/images/")]
        assert len(images) == len(set(images)) > 0
    assert f"s3://{s3_home}/out/exports/s3snap/llava" in done
    verified = cli("snapshot", "verify", f"s3://{s3_home}/out/exports/s3snap/trl", check=True).stdout
    assert "valid trl export of snapshot 's3snap'" in verified
    # exporting again to the same place replaces it (same snapshot); another snapshot is refused there
    cli("snapshot", "export", "s3snap", "--format", "llava", "--local", check=True)
    assert _keys(s3_home, prefix + "llava/") == [k for k in exported if k.startswith(prefix + "llava/")]
    # nothing of the store on local disk but the caches and the embedded catalog
    home = Path(os.environ["VITPRO_HOME"])
    assert not (home / "lake").exists() and not (home / "blobs").exists() and not (home / "exports").exists()
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert secret.encode() not in path.read_bytes(), path


def _run_inprocess(engine, kind: str, params: dict):
    """A job's units run here, one after another, as a worker runs them (execute_unit), no broker."""
    from db.app import jobs
    from workers.runtime import execute_unit

    job_id, first = jobs.create_job(engine, kind=kind, queue="cpu", params=params, launched_by="t")
    queue, outcomes = [first[0][0]], []
    while queue:
        sent: list = []
        outcomes.append(execute_unit(queue.pop(0), send=sent.extend))
        queue += [uid for uid, _ in sent]
    return jobs.get_job(engine, job_id), outcomes


def _small_source(tmp_path: Path, n: int = 3) -> dict:
    from curation.mapping import ColumnMapping
    from jobs.ingest import IngestJob

    from .helpers import label_image, write

    for i in range(n):
        write(tmp_path / "src" / f"{i}.jpg", label_image(f"ACME {i}"))
    (tmp_path / "src" / "items.csv").write_text("id,title,img\n" + "".join(f"{i},Shampoo {i},{i}.jpg\n" for i in range(n)))
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "images": ["img"]})
    return IngestJob(source=str(tmp_path / "src" / "items.csv"), format="csv", mapping=mapping, name="items", image_root=str(tmp_path / "src"), redact=True).params()


def test_a_blob_deleted_behind_the_stores_back_is_recorded_and_the_rest_goes_on(s3_home, tmp_path):
    from config.settings import load_settings
    from db.app.engine import write_engine
    from db.store import init_store, open_store
    from jobs.ocr import OcrJob

    settings = load_settings()
    init_store(settings.store)
    engine = write_engine(settings.app_url)
    job, _ = _run_inprocess(engine, "ingest", _small_source(tmp_path))
    assert job.status == "succeeded" and job.counts["images_ingested"] == 3
    blobs = _keys(s3_home, "blobs/")
    _s3().delete_object(Bucket=s3_home, Key=blobs[0])
    job, _ = _run_inprocess(engine, "ocr", OcrJob(engine="tesseract").params())
    assert job.status == "succeeded" and job.counts["images_read"] == 2 and job.counts["images_failed"] == 1
    lake = open_store(settings.store)
    errors = lake.fetchall("SELECT code, message FROM errors WHERE stage = 'ocr'")
    assert len(errors) == 1 and errors[0][0] == "ocr_failed"
    assert f"s3://{s3_home}/{blobs[0]}" in errors[0][1] and "missing from the store" in errors[0][1]


@pytest.mark.parametrize("trouble", ["unreachable", "credentials", "no_bucket"])
def test_a_unit_that_meets_a_store_problem_is_retried_with_back_off_then_fails_naming_the_object(trouble, home, s3_env, tmp_path, monkeypatch):
    """Blobs in S3, the rest embedded. Ingest writes blobs; then the store becomes unreachable, or refuses
    the credentials (OCR must read the blobs), or the blob bucket is missing from the start (ingest must
    write them): each attempt is logged with its delay, the last one fails with the reason."""
    from config.settings import load_settings
    from db.app import jobs
    from db.app.engine import write_engine
    from db.store import init_store
    from jobs.ocr import OcrJob

    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    bucket = "bucket-that-is-not-there" if trouble == "no_bucket" else s3_env
    monkeypatch.setenv("VITPRO_BLOB_PATH", f"s3://{bucket}/blobs/")
    monkeypatch.setenv("VITPRO_MAX_ATTEMPTS", "3")
    _reset_process_caches()
    settings = load_settings()
    init_store(settings.store)
    engine = write_engine(settings.app_url)
    ingest = _small_source(tmp_path, 1)
    run_job = functools.partial(_run_inprocess, engine)
    if trouble != "no_bucket":
        job, _ = run_job("ingest", ingest)
        assert job.status == "succeeded" and job.counts["images_ingested"] == 1
        if trouble == "unreachable":
            monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        else:
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-wrong-secret-for-this-key")
        job, outcomes = run_job("ocr", OcrJob(engine="tesseract").params())
    else:
        job, outcomes = run_job("ingest", ingest)
    assert outcomes.count("retry") == 2 and outcomes.count("failed") == 1
    assert job.status == "failed"
    lines = [entry.message for entry in jobs.log_tail(engine, job.id, 200)]
    retries = [m for m in lines if "failed (ObjectStoreError" in m]
    assert len(retries) == 3 and "will retry in 2 s" in retries[0] and "will retry in 4 s" in retries[1] and "giving up" in retries[2]
    expected = {"unreachable": "cannot reach the object store at http://127.0.0.1:9", "credentials": "refused the credentials",
                "no_bucket": "bucket 'bucket-that-is-not-there' does not exist"}[trouble]
    assert all(expected in m and f"s3://{bucket}/blobs/" in m for m in retries), retries
    failed = [u for u in jobs.job_units(engine, job.id) if u.status == "failed"]
    assert len(failed) == 1 and expected in failed[0].error
    assert not any(secret in m or "a-wrong-secret" in m for m in lines + [failed[0].error])


def test_images_referenced_in_the_bucket_are_read_with_the_size_limit(s3_home):
    from curation.images import ImageError, ImageLimits, read_reference

    from .helpers import label_image

    data = label_image("ACME")
    _s3().put_object(Bucket=s3_home, Key="incoming/photos/a.jpg", Body=data)
    root = f"s3://{s3_home}/incoming/"
    assert read_reference("photos/a.jpg", root, ImageLimits()) == data  # relative to an s3:// image root
    assert read_reference(f"s3://{s3_home}/incoming/photos/a.jpg", "/nowhere", ImageLimits()) == data
    for ref, limits, code in (("photos/none.jpg", ImageLimits(), "missing_file"), ("photos/a.jpg", ImageLimits(max_bytes=len(data) - 1), "image_too_large"),
                              ("../../etc/passwd", ImageLimits(), "path_outside_root")):
        with pytest.raises(ImageError) as err:
            read_reference(ref, root, limits)
        assert err.value.code == code, (ref, err.value)


def test_parallel_uploads_end_before_the_block_does_and_raise_the_first_failure(s3_home):
    store = RemoteBlobs(f"s3://{s3_home}/blobs/", Path("/nonexistent-cache"), cap_bytes=1 << 20)
    with store.writer() as writer:
        for i in range(40):
            writer.put(f"{i:02d}/b{i}.bin", bytes([i]) * 100)
    assert len(_keys(s3_home, "blobs/")) == 40  # all there once the block is left
    broken = RemoteBlobs("s3://no-such-bucket-for-uploads/blobs/", Path("/nonexistent-cache"), cap_bytes=1 << 20)
    with pytest.raises(objects.ObjectStoreError, match="does not exist"):
        with broken.writer() as writer:
            writer.put("00/x.bin", b"x")
