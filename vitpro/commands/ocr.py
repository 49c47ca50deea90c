"""`vitpro ocr`: read the text in stored images, as a job."""
from __future__ import annotations

import click

from config.settings import load_settings

from .group import cli, fail, run_job


# ---- OCR ---------------------------------------------------------------------------------------------
@cli.command()
@click.option("--engine", type=click.Choice(["rapidocr", "tesseract"]), default="rapidocr", show_default=True,
              help="rapidocr reads photos best (bench/ocr.py); tesseract needs `make tesseract`.")
@click.option("--limit", type=click.IntRange(1), help="Read at most N images not read yet (sha256 order).")
@click.option("--source", help="Only images of items of this source (its name, as `vitpro status` counts them).")
@click.option("--where", "where", multiple=True, metavar="COND",
              help="Only images where FIELD OP VALUE holds, e.g. 'width >= 800' or 'format = PNG'; repeat: all must hold. "
                   "Fields: width, height, pixels, bytes, format, position.")
@click.option("--side", type=click.IntRange(64, 4096), help="Short side (px) a photo is scaled up to before text is looked for "
              "[rapidocr 736, tesseract 1024]; changing it reads the images again.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Drop lines read with less [rapidocr 0.6, tesseract 0.5]; "
              "changing it reads the images again.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Threads per worker process (a worker runs one process per core).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cuda: rapidocr on onnxruntime's CUDA provider (onnxruntime-gpu), on the gpu queue.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Images per work unit.")
@click.option("--no-redact", is_flag=True, help="Keep OCR text as read (labels can show names and addresses).")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def ocr(engine, limit, source, where, side, min_confidence, threads, device, batch_size, no_redact, wait, local) -> None:
    """Read the text on the stored images not read yet with these settings (each image content once).

    \b
      vitpro ocr                                   # every image not read yet
      vitpro ocr --limit 200 --source listings     # a first look at one source (its name: the file stem or --name)
      vitpro ocr --where 'width >= 800' --where 'format = JPEG'
      vitpro ocr --engine tesseract                # the other engine; its reading replaces rapidocr's
      vitpro ocr --device cuda --local             # onnxruntime-gpu on the gpu queue
    """
    from db import ingest_reads
    from db.store import open_store
    from jobs.ocr import OcrJob

    s = load_settings()
    try:
        params = OcrJob(
            engine=engine, batch_size=batch_size, redact=s.redact and not no_redact, side=side, min_confidence=min_confidence,
            threads=threads, device=device, source=source, where=list(where), limit=limit,
        ).params()
    except ValueError as exc:
        fail(str(exc))
    if source is not None and source not in (names := ingest_reads.source_names(open_store(s.store))):
        fail(f"no source named {source!r}; sources: {', '.join(names) or 'none yet (vitpro ingest)'}")
    run_job("ocr", params, wait=wait, local=local)
