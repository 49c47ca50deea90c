"""Ingest throughput with 1 and with 2 worker processes on the same inputs, and the OCR cost per image.

    python bench/ingest.py                  # 10,000 items, 20,000 images (the issue's figures)
    python bench/ingest.py --items 2000     # quicker

Each run gets a fresh store (embedded SQLite catalog and broker, as the demo uses) and real Celery
workers; the clock runs from submitting the job to the job's end (worker start-up excluded). OCR is off
during ingest; its cost is measured separately on a sample of the same images. Prints items/s per run
and the ratio (target >= 1.6x on 2 cores).
"""
from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_inputs(folder: Path, items: int, images_per_item: int, seed: int = 1) -> Path:
    """A catalog CSV and distinct JPEGs (320x240, a few KB each, like product thumbnails)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = ["id,title,description,brand,category,images"]
    for i in range(items):
        refs = []
        for k in range(images_per_item):
            img = Image.new("RGB", (320, 240), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
            d = ImageDraw.Draw(img)
            for _ in range(6):
                x, y = rng.randrange(300), rng.randrange(220)
                d.rectangle([x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 90)], fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
            d.text((10, 10), f"SKU {i}-{k}", fill=(0, 0, 0))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=85)
            rel = f"images/{i:06d}_{k}.jpg"
            (folder / rel).write_bytes(buf.getvalue())
            refs.append(rel)
        rows.append(f'{i},Product {i},"A synthetic product, number {i}",Brand{i % 37},Category{i % 11},{"|".join(refs)}')
    src = folder / "catalog.csv"
    src.write_text("\n".join(rows) + "\n")
    return src


def run_ingest(src: Path, workers: int, rows_per_unit: int, scratch: Path) -> tuple[float, dict]:
    home = scratch / f"home-{workers}w"
    if home.exists():
        shutil.rmtree(home)
    os.environ["VITPRO_HOME"] = str(home)
    for key in ("VITPRO_CATALOG", "VITPRO_BROKER", "VITPRO_APP_DB", "VITPRO_DATA_PATH", "VITPRO_BLOB_PATH", "VITPRO_RESULT_BACKEND"):
        os.environ.pop(key, None)

    from config.settings import load_settings
    from curation.mapping import ColumnMapping
    from db.app import jobs
    from db.app.engine import write_engine
    from db.store import init_store
    from jobs.ingest import IngestJob
    from jobs.submit import submit_job
    from vitpro.local_workers import start_worker, stop_worker

    settings = load_settings()
    init_store(settings.store)
    engine = write_engine(settings.app_url)
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "description": ["description"], "brand": ["brand"], "category": ["category"], "images": ["images"]})
    params = IngestJob(source=str(src), format="csv", mapping=mapping, name="bench", image_root=str(src.parent), redact=True, rows_per_unit=rows_per_unit).params()
    proc = start_worker("cpu", concurrency=workers, log_path=scratch / f"worker-{workers}.log", loglevel="INFO")
    try:
        deadline = time.monotonic() + 60
        while not jobs.live_workers(engine, 30):  # wait until the worker is up: start-up is not ingest
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {scratch / f'worker-{workers}.log'}")
            time.sleep(0.2)
        time.sleep(1.0)  # let the pool children finish importing
        start = time.perf_counter()
        job_id = submit_job("ingest", params, settings=settings)
        while True:
            job = jobs.get_job(engine, job_id)
            if job.status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - start
    finally:
        stop_worker(proc)
    if job.status != "succeeded":
        raise RuntimeError(f"ingest job {job.status}: {job.error}")
    return elapsed, job.counts


def ocr_cost(src: Path, n: int) -> tuple[float, float]:
    from curation.ocr import get_engine

    engine = get_engine()
    images = sorted((src.parent / "images").glob("*.jpg"))[:n]
    engine.read(images[0].read_bytes())  # load the models outside the clock
    times = []
    for path in images:
        start = time.perf_counter()
        engine.read(path.read_bytes())
        times.append(time.perf_counter() - start)
    return statistics.mean(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--images-per-item", type=int, default=2)
    parser.add_argument("--rows-per-unit", type=int, default=250)
    parser.add_argument("--ocr-sample", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="keep the inputs and stores in this folder")
    args = parser.parse_args()

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="vitpro-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        src = make_inputs(scratch / "inputs", args.items, args.images_per_item)
        n_images = args.items * args.images_per_item
        print(f"inputs: {args.items:,} items, {n_images:,} JPEGs (320x240) made in {time.perf_counter() - t0:.1f} s")
        print(f"machine: {os.cpu_count()} CPU core(s); units of {args.rows_per_unit} rows; embedded SQLite catalog and broker")
        results = {}
        for workers in (1, 2):
            elapsed, counts = run_ingest(src, workers, args.rows_per_unit, scratch)
            assert counts["ingested"] == args.items and counts["images_ingested"] == n_images, counts
            results[workers] = elapsed
            print(f"{workers} worker process(es): {elapsed:7.1f} s  {args.items / elapsed:8.1f} items/s  {n_images / elapsed:8.1f} images/s")
        ratio = results[1] / results[2]
        print(f"ratio 2 vs 1 worker processes: {ratio:.2f}x (target >= 1.6x)")
        mean, median = ocr_cost(src, args.ocr_sample)
        print(f"OCR (rapidocr, CPU, one process): {mean * 1000:.0f} ms/image mean, {median * 1000:.0f} ms median over {args.ocr_sample} images;"
              f" {n_images:,} images would take {mean * n_images / 60:.1f} min on one process")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
