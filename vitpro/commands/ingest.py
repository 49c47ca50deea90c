"""`vitpro ingest`: a source of catalog listings or customer feedback, as a job."""
from __future__ import annotations

from pathlib import Path

import click

from config.settings import load_settings
from jobs.ingest import IngestJob

from ..spec_options import said, spec_option
from .group import cli, fail, run_job


# ---- ingest ------------------------------------------------------------------------------------------
@cli.command()
@click.argument("source")
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "tsv", "jsonl", "parquet", "abo"]), default="auto", show_default=True,
              help="Source format (from the file name by default; ABO listings are recognised).")
@click.option("--kind", type=click.Choice(["catalog", "feedback"]), help="Catalog listings or customer feedback. Default: catalog, or the mapping file's.")
@click.option("--feedback-type", type=click.Choice(["transcript", "review"]), help="For feedback: chat/phone transcript or written review.")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COL[,COL]",
              help="Column for a field: external_id, title, description, brand, category, attributes, feedback_text, images, region, time, issue_type, product_ref. Repeat.")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file with the mapping (docs/how-to/own-data.md); --map options override it.")
@click.option("--pii", multiple=True, metavar="COL=KIND",
              help="A column holding personal data (NAME, EMAIL, PHONE, UCI, ADDRESS, CARD): never stored, and redacted wherever its value reappears.")
@click.option("--redact-pattern", multiple=True, metavar="KIND=REGEX", help="Extra redaction rule; matches become [KIND].")
@spec_option(IngestJob, "redact", "--redact/--no-redact", help="Redact personal data before storage (--no-redact: only for data with no personal information).")
@spec_option(IngestJob, "image_root",
             help="Folder or s3://bucket/prefix image paths are relative to (default: the source's folder); paths outside it are refused.")
@click.option("--lang", "languages", multiple=True, metavar="TAG", help="Preferred language tags for ABO listings, in order (default en_US, en_GB, en).")
@spec_option(IngestJob, "name", help="Source name (default: file name without extension); re-ingesting the same name adds only new rows.")
@spec_option(IngestJob, "delimiter", help="CSV delimiter (default , or TAB for .tsv).")
@spec_option(IngestJob, "rows_per_unit")
@click.option("--max-text-chars", type=click.IntRange(100), default=100_000, show_default=True, help="Longer texts are refused and recorded as errors.")
@click.option("--max-image-mb", type=click.FloatRange(0.01), default=50.0, show_default=True)
@click.option("--max-megapixels", type=click.FloatRange(0.01), default=100.0, show_default=True, help="Larger images (decompression bombs) are refused from their header.")
@click.option("--fetch-timeout", type=click.FloatRange(0.1), default=15.0, show_default=True, help="Seconds for a whole image download.")
@click.option("--allow-private-urls", is_flag=True, help="Allow image URLs on private or loopback addresses.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the job with a progress bar.")
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
def ingest(source, fmt, kind, feedback_type, maps, mapping_file, pii, redact_pattern, redact, image_root, languages, name, delimiter, rows_per_unit, max_text_chars,
           max_image_mb, max_megapixels, fetch_timeout, allow_private_urls, wait, local) -> None:
    """Ingest a source of catalog listings or customer feedback (CSV, JSONL, Parquet, ABO).

    \b
    Examples:
      vitpro ingest listings.jsonl
      vitpro ingest reviews.csv --kind feedback --map external_id=Id --map feedback_text=Summary,Text \\
             --map product_ref=ProductId --map time=Time --pii ProfileName=NAME --pii UserId=UCI
      vitpro ingest chats.jsonl --mapping chats.yaml --image-root /data/photos
    """
    from curation.images import ImageLimits
    from curation.ingest import TextLimits
    from curation.mapping import ABO_MAPPING, ColumnMapping, MappingError
    from curation.readers import SourceError, detect_format
    from jobs.ingest import check_source

    s = load_settings()
    try:
        local_copy = check_source(str(source))  # first: a missing file is not reported as a format or a mapping it lacks
        detected = detect_format(local_copy, fmt)
        if mapping_file:
            base = ColumnMapping.from_yaml(mapping_file)
        elif detected == "abo":
            base = ABO_MAPPING
        else:
            base = ColumnMapping(item_kind=kind or "catalog")
        mapping = base.with_options(maps, pii, redact_pattern, kind=kind, feedback_type=feedback_type, languages=languages)
        if detected != "abo" and not mapping.columns:
            raise MappingError("no column mapping: pass --map field=column (or --mapping FILE.yaml); see `vitpro ingest --help`")
        params = IngestJob(
            source=str(source),
            format=detected,
            mapping=mapping,
            name=name,
            image_root=str(image_root) if image_root else None,
            redact=s.redact and redact,
            allowed_roots=s.image_roots,
            delimiter=delimiter,
            rows_per_unit=rows_per_unit,
            text_limits=TextLimits(max_text_chars=max_text_chars),
            image_limits=ImageLimits(
                max_bytes=int(max_image_mb * 1024 * 1024),
                max_pixels=int(max_megapixels * 1_000_000),
                fetch_timeout_s=fetch_timeout,
                allow_private_urls=allow_private_urls,
            ),
        ).params()
    except (SourceError, MappingError, ValueError) as exc:
        fail(said(IngestJob, exc))
    run_job("ingest", params, wait=wait, local=local)
