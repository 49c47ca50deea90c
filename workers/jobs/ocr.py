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
        red = redactor.redact(result.text, free_names=False)
        boxes = result.boxes
        if red.counts:
            boxes = [dict(b, text=redactor.redact(b["text"], free_names=False).text) for b in boxes]
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
    removed = batches.dedupe_ocr(ctx.lake, ctx.params["engine_label"])
    return {"adjust": {"images_read": -removed}} if removed else {}
