"""The ingest job's spec (cpu queue): the source file, its format and column mapping, where its images
are, redaction and the limits. Everything that can be checked before a job exists is checked here."""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curation.images import ImageLimits
from curation.ingest import TextLimits
from curation.mapping import ColumnMapping, MappingError
from curation.readers import SourceError

from .registry import JobSpec, register

DEFAULT_ROWS_PER_UNIT = 200


def source_id_for(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def check_image_root(root: Path, allowed: tuple[Path, ...]) -> None:
    if allowed and not any(root == a or a in root.parents for a in allowed):
        raise MappingError(f"image root {root} is not under an allowed root ({', '.join(map(str, allowed))}); see VITPRO_IMAGE_ROOTS")


def check_source(source: str, roots: tuple[Path, ...] = ()) -> Path:
    """The source file, resolved; first of all checks, so that a missing file is not reported as
    whatever the next check trips on (a format that cannot be told, a mapping that cannot be matched)."""
    if not str(source).strip():
        raise SourceError("no source file given")
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


@register("ingest")
@dataclass(frozen=True)
class IngestJob(JobSpec):
    """``source_roots``: if given, the only folders the source may be in (the web app reads files of the
    server's own disk). Refusals are SourceError / MappingError with a message for the user."""

    QUEUE = "cpu"

    source: str
    fmt: str | None
    mapping: ColumnMapping | None
    name: str | None
    image_root: str | None
    redact: bool
    allowed_roots: tuple[Path, ...] = ()
    delimiter: str | None = None
    rows_per_unit: int = DEFAULT_ROWS_PER_UNIT
    text_limits: TextLimits = field(default_factory=TextLimits)
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    source_roots: tuple[Path, ...] = ()

    def params(self) -> dict[str, Any]:
        from curation.mapping import ABO_MAPPING
        from curation.readers import detect_format, source_columns
        from curation.redaction import RedactionConfig

        path = check_source(self.source, self.source_roots)
        fmt = detect_format(path, self.fmt)
        mapping = self.mapping
        if mapping is None:
            if fmt != "abo":
                raise MappingError("no column mapping: pass --map field=column (or --mapping FILE.yaml)")
            mapping = ABO_MAPPING
        columns, exhaustive = source_columns(path, fmt, delimiter=self.delimiter, languages=mapping.languages)
        if exhaustive:
            mapping.check_against(columns)
        elif fmt != "abo":
            seen = set(columns)
            never = sorted(c for c in mapping.referenced_columns() if c not in seen)
            if never:
                raise MappingError(
                    f"column(s) {', '.join(map(repr, never))} appear in none of the first rows; keys seen: {', '.join(columns)}"
                )
        RedactionConfig(extra_patterns=mapping.redaction_patterns)  # a bad pattern fails here, not in a worker
        root = Path(self.image_root).expanduser().resolve() if self.image_root else path.parent
        check_image_root(root, self.allowed_roots)
        name = self.name or path.stem
        return {
            "source": str(path),
            "format": fmt,
            "name": name,
            "source_id": source_id_for(name),
            "mapping": mapping.to_dict(),
            "image_root": str(root),
            "delimiter": self.delimiter,
            "redact": self.redact,
            "rows_per_unit": self.rows_per_unit,
            "text_limits": asdict(self.text_limits),
            "image_limits": asdict(self.image_limits),
        }
