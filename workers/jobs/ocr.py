"""The OCR job: plan = the stored image contents not yet read with this engine and settings (optionally
only a source's, only those matching --where, at most --limit); unit = read a batch.

Runs on the ``cpu`` queue, or on ``gpu`` with ``device="cuda"`` (rapidocr on onnxruntime's CUDA provider).
"""
from __future__ import annotations

from typing import Any

from curation.ocr import OcrSetupError, check_available, get_engine, parse_conditions
from curation.redaction import RedactionConfig, Redactor
from db.app.jobs import UnitSpec
from db.lake import batches
from db.reads import ingest_reads, ocr_reads
from db.storage.objects import ObjectStoreError
from jobs.ocr import OcrJob

from ..runtime import PermanentError, UnitContext
from .registry import add_handler


def redacted_boxes(boxes: list[dict[str, Any]], redacted_text: str) -> list[dict[str, Any]]:
    """Give each box its line of the redacted text. The text was redacted as a whole, because a value
    often spans boxes ("Name:" / "Jane Roe"); if a match spanned lines, the line count no longer fits and
    the boxes keep their geometry and score but lose their text."""
    lines = redacted_text.split("\n")
    if len(lines) == len(boxes):
        return [dict(b, text=line) for b, line in zip(boxes, lines)]
    return [dict(b, text=None) for b in boxes]


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    job: OcrJob = ctx.spec
    source = job.source
    if source is not None:
        names = ingest_reads.source_names(ctx.lake)
        if source not in names:
            raise PermanentError(f"no source named {source!r}; sources: {', '.join(names) or 'none yet'}")
    where = [c.sql() for c in parse_conditions(job.where)]
    todo = ocr_reads.images_without_ocr(ctx.lake, job.engine_label, source=source, where=where, limit=job.limit)
    size = job.batch_size
    specs = [
        UnitSpec({"images": [[sha, blob] for sha, blob in todo[i : i + size]]}, len(todo[i : i + size]))
        for i in range(0, len(todo), size)
    ]
    scope = "".join(
        [f" of source {source!r}" if source else "", f" where {' and '.join(job.where)}" if job.where else "",
         f" (at most {job.limit})" if job.limit else ""]
    )
    ctx.log(f"{len(todo)} image(s){scope} to read with {job.engine_label}")
    return specs, {"set": {"images_to_read": len(todo)}}


def run(ctx: UnitContext) -> dict[str, Any]:
    job: OcrJob = ctx.spec
    settings = job.settings().resolved()
    try:
        check_available(settings)  # this worker's machine, not the one the job was sent from
    except OcrSetupError as exc:
        raise PermanentError(str(exc)) from exc
    engine = get_engine(settings)
    label = job.engine_label
    redactor = Redactor(RedactionConfig(enabled=job.redact))
    rows, errors, dropped = [], [], 0
    for i, (sha, blob) in enumerate(ctx.payload["images"]):
        ctx.check()
        ctx.progress(i)
        try:
            data = ctx.blobs.local(blob).read_bytes()
            result = engine.read(data)
        except OcrSetupError as exc:  # the same for every image: fail the unit, not each image
            raise PermanentError(str(exc)) from exc
        except ObjectStoreError:
            raise  # the store, not the image: the unit is retried with back-off
        except Exception as exc:  # one unreadable image never stops the batch
            errors.append(
                {
                    "job_id": ctx.job_id, "run_id": ctx.run_id, "stage": "ocr", "code": "ocr_failed",
                    "message": f"{exc.__class__.__name__}: {exc}"[:1000], "subject": sha, "created_at": batches.now_utc(),
                }
            )
            continue
        dropped += result.dropped
        # A photo of a shipping label holds a name and an address: OCR text is redacted like any text.
        red = redactor.redact(result.text, mode="structured")
        boxes = redacted_boxes(result.boxes, red.text) if red.counts else result.boxes
        rows.append(
            {
                "sha256": sha, "engine": label, "text": red.text, "n_boxes": result.n_boxes,
                "mean_confidence": result.mean_confidence, "boxes": boxes, "redaction_counts": red.counts,
                "seconds": result.seconds, "run_id": ctx.run_id, "created_at": batches.now_utc(),
            }
        )
    written = batches.write_ocr_batch(ctx.lake, ctx.run_id, rows, errors)
    return {
        "images_read": written,
        "images_failed": len(errors),
        "boxes": sum(r["n_boxes"] for r in rows),
        "lines_dropped": dropped,
        "ocr_seconds": round(sum(r["seconds"] for r in rows), 3),
    }


def finalize(ctx: UnitContext) -> dict[str, Any]:
    batches.dedupe_ocr(ctx.lake, ctx.spec.engine_label)
    return {"set": {"images_read": ingest_reads.rows_written_by_job(ctx.lake, "ocr", ctx.job_id)}}


add_handler("ocr", plan=plan, run=run, finalize=finalize)
