"""The OCR job: plan = every stored image content not yet read by the engine; unit = read a batch."""
from __future__ import annotations

from typing import Any

from curation.ocr import engine_label, get_engine
from curation.redaction import RedactionConfig, Redactor
from db import batches
from db.jobs import UnitSpec

from ..runtime import UnitContext

KIND = "ocr"
QUEUE = "cpu"
DEFAULT_BATCH = 16


def prepare_params(*, engine: str = "rapidocr", batch_size: int = DEFAULT_BATCH, redact: bool = True) -> dict[str, Any]:
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    return {"engine": engine, "engine_label": engine_label(engine), "batch_size": batch_size, "redact": redact}


def redacted_boxes(boxes: list[dict[str, Any]], redacted_text: str) -> list[dict[str, Any]]:
    """Give each box its line of the redacted text. The text was redacted as a whole, because a value
    often spans boxes ("Name:" / "Jane Roe"); if a match spanned lines, the line count no longer fits and
    the boxes keep their geometry and score but lose their text."""
    lines = redacted_text.split("\n")
    if len(lines) == len(boxes):
        return [dict(b, text=line) for b, line in zip(boxes, lines)]
    return [dict(b, text=None) for b in boxes]


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    todo = batches.images_without_ocr(ctx.lake, ctx.params["engine_label"])
    size = int(ctx.params["batch_size"])
    specs = [
        UnitSpec({"images": [[sha, blob] for sha, blob in todo[i : i + size]]}, len(todo[i : i + size]))
        for i in range(0, len(todo), size)
    ]
    ctx.log(f"{len(todo)} image(s) to read with {ctx.params['engine_label']}")
    return specs, {"set": {"images_to_read": len(todo)}}


def run(ctx: UnitContext) -> dict[str, Any]:
    engine = get_engine(ctx.params["engine"])
    label = ctx.params["engine_label"]
    redactor = Redactor(RedactionConfig(enabled=bool(ctx.params.get("redact", True))))
    rows, errors = [], []
    for i, (sha, blob) in enumerate(ctx.payload["images"]):
        ctx.check()
        ctx.progress(i)
        try:
            data = (ctx.settings.blob_path / blob).read_bytes()
            result = engine.read(data)
        except Exception as exc:  # one unreadable image never stops the batch
            errors.append(
                {
                    "job_id": ctx.job_id, "run_id": ctx.run_id, "stage": "ocr", "code": "ocr_failed",
                    "message": f"{exc.__class__.__name__}: {exc}"[:1000], "subject": sha, "created_at": batches.now_utc(),
                }
            )
            continue
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
        "ocr_seconds": round(sum(r["seconds"] for r in rows), 3),
    }


def finalize(ctx: UnitContext) -> dict[str, Any]:
    batches.dedupe_ocr(ctx.lake, ctx.params["engine_label"])
    return {"set": {"images_read": batches.rows_written_by_job(ctx.lake, "ocr", ctx.job_id)}}
