"""The ingest job: plan = cut the source into row ranges; unit = read, redact, fetch images, write;
finalize = drop copies two units raced to insert."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from curation.hashing import file_sha256
from curation.images import ImageError, inspect_image, read_reference, store_blob
from curation.ingest import ItemDraft, RowFailure, build_item
from curation.readers import RowRange, SourceError, plan_ranges, read_range
from curation.redaction import RedactionConfig, Redactor
from db.app import jobs as jobs_db
from db.app.jobs import UnitSpec
from db.lake import batches
from db.reads import ingest_reads
from db.storage import objects
from db.storage.locations import Location
from jobs.ingest import IngestJob

from ..runtime import PermanentError, UnitContext
from .registry import add_handler


def _source(ctx: UnitContext) -> tuple[Path, dict[str, Any]]:
    """The source as a local file, and what tells it apart from a later version of it: size and mtime
    on disk, the ETag in the object store (read into this worker's own cache)."""
    source = ctx.spec.source
    if not Location.of(source).is_local:
        try:
            path, etag = objects.fetch_cached(source, ctx.settings.home / "cache" / "sources")
        except objects.ObjectStoreError as exc:
            if exc.kind == "missing":
                raise PermanentError(f"cannot read the source: {exc}") from exc
            raise  # the store may come back: retried with back-off
        return path, {"file_bytes": path.stat().st_size, "file_etag": etag}
    path = Path(source)
    try:
        stat = path.stat()
    except OSError as exc:
        raise PermanentError(f"cannot read the source: {exc}") from exc
    return path, {"file_bytes": stat.st_size, "file_mtime_ns": stat.st_mtime_ns}


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    job: IngestJob = ctx.spec
    path, fingerprint = _source(ctx)
    try:
        ranges = plan_ranges(path, job.format, job.rows_per_unit, delimiter=job.delimiter)
        sha = file_sha256(path)
    except (SourceError, OSError) as exc:
        raise PermanentError(f"cannot read the source: {exc}") from exc
    batches.write_source(
        ctx.lake,
        {
            "source_id": job.source_id,
            "name": job.name,
            "uri": job.source,
            "format": job.format,
            "item_kind": job.mapping.item_kind,
            "file_sha256": sha,
            "file_bytes": path.stat().st_size,
            "mapping": job.mapping.to_dict(),
            "redacted": job.redact,
            "job_id": ctx.job_id,
            "run_id": ctx.run_id,
            "created_at": batches.now_utc(),
        },
    )
    rows = sum(r.n_rows for r in ranges)
    ctx.log(f"{rows} row(s) in {path.name}, {len(ranges)} unit(s) of up to {job.rows_per_unit}")
    # Units seek to byte offsets: they must read the very file that was planned.
    specs = [UnitSpec({"start_row": r.start_row, "offset": r.offset, "n_rows": r.n_rows, **fingerprint}, r.n_rows) for r in ranges]
    return specs, {"set": {"rows": rows}}


def _error_row(ctx: UnitContext, stage: str, code: str, message: str, *, row_number=None, item_id=None, subject=None, source_row=None) -> dict[str, Any]:
    return {
        "job_id": ctx.job_id,
        "run_id": ctx.run_id,
        "stage": stage,
        "code": code,
        "message": message,
        "source_id": ctx.spec.source_id,
        "row_number": row_number,
        "item_id": item_id,
        "subject": subject,
        "source_row": source_row,
        "created_at": batches.now_utc(),
    }


def run(ctx: UnitContext) -> dict[str, Any]:
    job: IngestJob = ctx.spec
    mapping = job.mapping
    keep = mapping.redaction_keep + ingest_reads.catalog_brands(ctx.lake) if job.redact else ()
    redactor = Redactor(RedactionConfig(enabled=job.redact, extra_patterns=mapping.redaction_patterns, keep=keep))
    text_limits = job.text_limits
    image_limits = job.image_limits
    root = job.image_root  # a folder or an s3:// prefix (curation.images.read_reference reads either)
    blobs = ctx.blobs
    rng = RowRange(**{k: ctx.payload[k] for k in ("start_row", "offset", "n_rows")})
    source, fingerprint = _source(ctx)
    if any(ctx.payload.get(k) != v for k, v in fingerprint.items()):
        raise PermanentError("the source file changed after the job was planned; ingest it again (rows already stored are kept)")

    def scrub(text: str) -> str:
        # file names and URLs of customer uploads can carry an e-mail address or a name
        return redactor.redact(text, mode="structured").text

    drafts: dict[str, ItemDraft] = {}
    errors: list[dict[str, Any]] = []
    failed = duplicates_in_unit = 0
    seen_rows = 0
    try:
        for row in read_range(source, job.format, rng, delimiter=job.delimiter, languages=mapping.languages):
            seen_rows += 1
            result = build_item(row, mapping, redactor, source_id=job.source_id, source_name=job.name, limits=text_limits)
            if isinstance(result, RowFailure):
                failed += 1
                errors.append(_error_row(ctx, "row", result.code, result.message, row_number=result.row_number, source_row=result.source_row))
            elif result.item["item_id"] in drafts:
                duplicates_in_unit += 1
            else:
                drafts[result.item["item_id"]] = result
    except (SourceError, OSError) as exc:
        raise PermanentError(f"cannot read the source: {exc}") from exc

    already = ingest_reads.existing_item_ids(ctx.lake, list(drafts), exclude_run=ctx.run_id)
    items, images = [], []
    images_failed = 0
    now = batches.now_utc()
    # blobs to S3 upload in parallel; the block waits for them all before the rows that name them are written
    with blobs.writer() as writer:
        for i, (item_id, draft) in enumerate(drafts.items()):
            if i % 20 == 0:
                ctx.check()
                ctx.progress(min(i, rng.n_rows))
            if item_id in already:
                continue
            position = 0
            for ref in draft.image_refs:
                try:
                    info = inspect_image(read_reference(ref, root, image_limits), image_limits)
                    blob = store_blob(writer, info)
                except ImageError as exc:
                    images_failed += 1
                    message = exc.about(ref, row_number=draft.row_number, row_id=draft.item.get("external_id"), scrub=scrub)
                    errors.append(
                        _error_row(ctx, "image", exc.code, message, row_number=draft.row_number, item_id=item_id, subject=scrub(ref)[:500])
                    )
                    continue
                images.append(
                    {
                        "image_id": hashlib.sha256(f"{item_id}\x1f{position}".encode()).hexdigest()[:24],
                        "item_id": item_id,
                        "position": position,
                        "source_ref": scrub(ref)[:2000],
                        "sha256": info.sha256,
                        "width": info.width,
                        "height": info.height,
                        "format": info.format,
                        "n_bytes": info.n_bytes,
                        "blob_path": blob,
                        "run_id": ctx.run_id,
                        "ingested_at": now,
                    }
                )
                position += 1
            items.append(dict(draft.item, n_images=position, run_id=ctx.run_id, ingested_at=now))
    ctx.check()
    written = batches.write_ingest_batch(ctx.lake, ctx.run_id, items, images, errors)
    ingested = written["inserted"]
    return {
        "rows": seen_rows,
        "ingested": ingested,
        "skipped": len(drafts) - ingested + duplicates_in_unit,
        "failed": failed,
        "images_ingested": written["images_inserted"],
        "images_failed": images_failed,
    }


def finalize(ctx: UnitContext) -> dict[str, Any]:
    removed = batches.dedupe_items(ctx.lake, ctx.spec.source_id)
    if removed:
        ctx.log(f"removed {removed} duplicate item(s) that two units inserted at once")
    # Recount from the store: right after a race, and after a retry, the units' own sums are not.
    results = jobs_db.work_results(ctx.engine, ctx.job_id)
    rows = sum(r.get("rows", 0) for r in results)
    failed = sum(r.get("failed", 0) for r in results)
    ingested = ingest_reads.rows_written_by_job(ctx.lake, "items", ctx.job_id)
    return {
        "set": {
            "ingested": ingested,
            "skipped": rows - failed - ingested,
            "images_ingested": ingest_reads.rows_written_by_job(ctx.lake, "images", ctx.job_id),
        }
    }


add_handler("ingest", plan=plan, run=run, finalize=finalize)
