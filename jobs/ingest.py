"""The ingest job's spec (cpu queue): the source file, its format and column mapping, where its images
are, redaction and the limits. Everything that can be checked before a job exists is checked here."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from config.fields import FieldError, about, check, param
from config.settings import load_settings
from curation.images import ImageLimits
from curation.ingest import TextLimits
from curation.mapping import ColumnMapping, MappingError
from curation.readers import FORMATS, SourceError
from db.storage import objects
from db.storage.locations import Location

from .registry import JobSpec, job_kind

DEFAULT_ROWS_PER_UNIT = 200


def source_id_for(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def check_image_root(root: Path, allowed: tuple[Path, ...]) -> None:
    if allowed and not any(root == a or a in root.parents for a in allowed):
        raise MappingError(f"image root {root} is not under an allowed root ({', '.join(map(str, allowed))}); see VITPRO_IMAGE_ROOTS")


def check_source(source: str, roots: tuple[Path, ...] = ()) -> Path:
    """The source file, resolved; first of all checks, so that a missing file is not reported as
    whatever the next check trips on (a format that cannot be told, a mapping that cannot be matched).
    An ``s3://`` source is read into this machine's cache, and the copy is returned."""
    if not str(source).strip():
        raise SourceError("no source file given")
    if not Location.of(source).is_local:
        return remote_source(source, roots)
    path = Path(source).expanduser().resolve()
    if roots and not any(path == r or r in path.parents for r in roots):
        raise SourceError(f"source file {path} is not under an allowed root ({', '.join(map(str, roots))})")
    if not path.exists():
        raise SourceError(f"source file not found: {path}")
    if not path.is_file():
        raise SourceError(f"source is not a file: {path}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"source file not readable: {path}")
    return path


def remote_source(url: str, roots: tuple[Path, ...] = ()) -> Path:
    if roots:
        # the web app's form reads files of the server's own disk; an object-store source comes from the CLI
        raise SourceError(f"{url}: only files under {', '.join(map(str, roots))} can be ingested here")
    try:
        path, _ = objects.fetch_cached(url, load_settings().home / "cache" / "sources")
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    except objects.ObjectStoreError as exc:
        raise SourceError(f"source file not found: {url}" if exc.kind == "missing" else str(exc)) from None
    return path


@job_kind("ingest")
@dataclass(frozen=True)
class IngestJob(JobSpec):
    """``source_roots``: if given, the only folders the source may be in (the web app reads files of the
    server's own disk). Refusals name their field (config.fields.FieldError)."""

    QUEUE = "cpu"

    source: str = param(help="The source file (CSV, JSONL, Parquet, or an ABO listings file), local or s3://.", label="Source file")
    format: str | None = param(None, choices=FORMATS, label="Format", help="The file's format (default: told from its name and content).")
    mapping: ColumnMapping | None = param(None, label="Column mapping", help="Which column holds which field (not needed for ABO listings).")
    name: str | None = param(None, label="Source name", help="The source's name (default: the file name without extension).")
    image_root: str | None = param(None, help="Relative image paths start here (default: the source file's folder).")
    redact: bool = param(True, label="Redact personal data before storage", help="Redact names, e-mails, phone numbers and addresses before anything is stored.")
    allowed_roots: tuple[Path, ...] = param((), stored=False, help="The folders image roots may be in (VITPRO_IMAGE_ROOTS).")
    delimiter: str | None = param(None, help="A CSV's delimiter (default: told from the file).")
    rows_per_unit: int = param(DEFAULT_ROWS_PER_UNIT, min=1, label="Rows per work unit", help="Rows in one work unit: a retry's and a cancel's granularity.")
    text_limits: TextLimits = param(factory=TextLimits, help="The longest texts stored (longer ones are cut, and said so).")
    image_limits: ImageLimits = param(factory=ImageLimits, help="The largest images accepted (bigger ones are refused with a reason).")
    source_roots: tuple[Path, ...] = param((), stored=False, help="The folders the source file may be in (the web app's server).")
    source_id: str = param("", derived=True, help="The source's id, from its name: items of the same source name replace each other.")

    def resolve(self) -> "IngestJob":
        from curation.mapping import ABO_MAPPING
        from curation.readers import detect_format, source_columns
        from curation.redaction import RedactionConfig

        check(self)
        try:
            path = check_source(self.source, self.source_roots)
            fmt = detect_format(path, self.format)
        except SourceError as exc:
            raise about("source", exc) from None
        except ValueError as exc:
            raise about("format", exc) from None
        mapping = self.mapping
        if mapping is None:
            if fmt != "abo":
                raise FieldError("mapping", "no column mapping: say which column holds which field (field=column)")
            mapping = ABO_MAPPING
        try:
            columns, exhaustive = source_columns(path, fmt, delimiter=self.delimiter, languages=mapping.languages)
        except SourceError as exc:
            raise about("source", exc) from None
        try:
            if exhaustive:
                mapping.check_against(columns)
            elif fmt != "abo":
                seen = set(columns)
                never = sorted(c for c in mapping.referenced_columns() if c not in seen)
                if never:
                    raise MappingError(f"column(s) {', '.join(map(repr, never))} appear in none of the first rows; keys seen: {', '.join(columns)}")
            RedactionConfig(extra_patterns=mapping.redaction_patterns)  # a bad pattern fails here, not in a worker
        except (MappingError, ValueError) as exc:
            raise about("mapping", exc) from None
        source = Location.of(self.source).absolute()  # a local file as check_source resolved it
        root = (Location.of(self.image_root) if self.image_root else source.parent).absolute()
        if root.is_local:
            try:
                check_image_root(root.path, self.allowed_roots)
            except MappingError as exc:
                raise about("image_root", exc) from None
            image_root = str(root)
        else:
            # Objects are guarded by the bucket's own policy and credentials; VITPRO_IMAGE_ROOTS is for local folders.
            image_root = f"{root}/"  # a prefix
        name = self.name or Path(source.name).stem
        return replace(self, source=str(source), format=fmt, mapping=mapping, name=name, image_root=image_root,
                       source_id=source_id_for(name))
