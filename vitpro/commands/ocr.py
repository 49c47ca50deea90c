"""`vitpro ocr`: read the text in stored images, as a job."""
from __future__ import annotations

import click

from config.settings import load_settings
from jobs.ocr import OcrJob

from ..spec_options import job_params, spec_option
from .group import cli, fail, run_job


# ---- OCR ---------------------------------------------------------------------------------------------
@cli.command()
@spec_option(OcrJob, "engine")
@spec_option(OcrJob, "limit")
@spec_option(OcrJob, "source")
@spec_option(OcrJob, "where", metavar="COND")
@spec_option(OcrJob, "side")
@spec_option(OcrJob, "min_confidence")
@spec_option(OcrJob, "threads")
@spec_option(OcrJob, "device")
@spec_option(OcrJob, "batch_size")
@spec_option(OcrJob, "redact", "--redact/--no-redact")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def ocr(engine, limit, source, where, side, min_confidence, threads, device, batch_size, redact, wait, local) -> None:
    """Read the text on the stored images not read yet with these settings (each image content once).

    \b
      vitpro ocr                                   # every image not read yet
      vitpro ocr --limit 200 --source listings     # a first look at one source (its name: the file stem or --name)
      vitpro ocr --where 'width >= 800' --where 'format = JPEG'
      vitpro ocr --engine tesseract                # the other engine; its reading replaces rapidocr's
      vitpro ocr --device cuda --local             # onnxruntime-gpu on the gpu queue
    """
    from db.reads import ingest_reads
    from db.store import open_store

    s = load_settings()
    # VITPRO_REDACT=0 turns redaction off for a machine's commands; --redact/--no-redact decide within it
    params = job_params(OcrJob, engine=engine, batch_size=batch_size, redact=s.redact and redact, side=side, min_confidence=min_confidence,
                        threads=threads, device=device, source=source, where=list(where) or None, limit=limit)
    if source is not None and source not in (names := ingest_reads.source_names(open_store(s.store))):
        fail(f"no source named {source!r}; sources: {', '.join(names) or 'none yet (vitpro ingest)'}")
    run_job("ocr", params, wait=wait, local=local)
