"""Turn one source row into an item (cleaned, redacted, keyed) or a row failure. Pure: no storage here.

The worker task (``workers/jobs/ingest.py``) reads rows with :mod:`curation.readers`, calls
:func:`build_item` per row, fetches and checks the images with :mod:`curation.images` and writes the
batch. Redaction happens here, before anything leaves the function: with redaction on, the only text
that comes out (item fields, error excerpts, messages) is redacted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .mapping import ColumnMapping
from .readers import SourceRow
from .redaction import Redactor, merge_counts
from .text_clean import clean_text

TEXT_FIELDS = ("title", "description", "brand", "category", "feedback_text", "region", "issue_type")
# Fields that carry keys chosen by the user; stored as given (do not map personal ids to them).
KEY_FIELDS = ("external_id", "product_ref")
EXCERPT_CHARS = 500


@dataclass(frozen=True)
class TextLimits:
    max_text_chars: int = 100_000  # a 1 MB transcript is refused, not silently cut
    max_images_per_item: int = 16


@dataclass
class ItemDraft:
    row_number: int
    item: dict[str, Any]
    image_refs: list[str]
    notes: dict[str, int] = field(default_factory=dict)


@dataclass
class RowFailure:
    row_number: int
    code: str
    message: str
    source_row: dict[str, Any] | None = None


def redaction_mode(item_kind: str, field_name: str) -> str:
    """How hard redaction looks at a field: customer-written text hardest, catalog listings least (a
    street-address rule would take "1 TB Hard Drive" for an address, a name rule "Ralph Lauren" for a
    person)."""
    if item_kind == "catalog":
        return "catalog"
    return "free_text" if field_name == "feedback_text" else "structured"


def _stringify(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from Parquet/pandas
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _joined(fields: dict[str, Any], columns: list[str]) -> str | None:
    parts = [s for s in (_stringify(fields.get(c)) for c in columns) if s and s.strip()]
    return "\n\n".join(parts) if parts else None


def parse_time(value: Any) -> datetime | None:
    """Unix seconds or milliseconds, ISO 8601, or a datetime; always returned in UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()):
        number = float(value)
        if abs(number) > 1e11:  # milliseconds
            number /= 1000.0
        return datetime.fromtimestamp(number, tz=timezone.utc)
    text = str(value).strip().replace("Z", "+00:00")
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%m/%d/%Y"), lambda t: datetime.strptime(t, "%d.%m.%Y")):
        try:
            parsed = parse(text)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise ValueError(f"cannot read {text[:40]!r} as a time")


def _image_refs(fields: dict[str, Any], columns: list[str], separator: str) -> list[str]:
    refs: list[str] = []
    for column in columns:
        value = fields.get(column)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            refs.extend(str(v) for v in value if v not in (None, ""))
            continue
        text = str(value).strip()
        if not text:
            continue
        if text.startswith("["):
            try:
                parsed = json.loads(text)
                if isinstance(parsed, list):
                    refs.extend(str(v) for v in parsed if v not in (None, ""))
                    continue
            except ValueError:
                pass
        refs.extend(part.strip() for part in text.split(separator) if part.strip())
    return refs


def _attributes(fields: dict[str, Any], columns: list[str]) -> dict[str, str]:
    if len(columns) == 1:
        value = fields.get(columns[0])
        if isinstance(value, dict):
            return {str(k): _stringify(v) for k, v in value.items() if _stringify(v)}
        if isinstance(value, str) and value.strip().startswith("{"):
            try:
                parsed = json.loads(value)
                if isinstance(parsed, dict):
                    return {str(k): _stringify(v) for k, v in parsed.items() if _stringify(v)}
            except ValueError:
                pass
    out = {}
    for column in columns:
        value = _stringify(fields.get(column))
        if value and value.strip() and value != "None":
            out[column] = value
    return out


def item_key(source_name: str, kind: str, external_id: str | None, content: dict[str, Any]) -> str:
    """Stable id: the same row from the same source always gets the same id, wherever the file lies."""
    basis = external_id if external_id else "content:" + hashlib.sha256(
        json.dumps(content, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()
    return hashlib.sha256(f"{source_name}\x1f{kind}\x1f{basis}".encode()).hexdigest()[:24]


def failure_excerpt(fields: dict[str, Any] | None, mapping: ColumnMapping, redactor: Redactor, known) -> dict[str, Any] | None:
    """The mapped fields of a bad row, redacted and cut short, so a person can find and fix it.
    Columns the mapping does not use, and PII columns, are left out: they may hold anything."""
    if not fields:
        return None
    out: dict[str, Any] = {}
    for name, columns in mapping.columns.items():
        for column in columns:
            value = _stringify(fields.get(column))
            if value is None:
                continue
            # Redact a little more than we keep, so a value cut at the edge is not left half-visible.
            head = value[: EXCERPT_CHARS + 200]
            if name not in KEY_FIELDS:
                head = redactor.redact(head, known=known, mode=redaction_mode(mapping.item_kind, name)).text
            out[column] = head[:EXCERPT_CHARS] + (f"… ({len(value):,} chars)" if len(value) > EXCERPT_CHARS else "")
    return out


def build_item(
    row: SourceRow,
    mapping: ColumnMapping,
    redactor: Redactor,
    *,
    source_id: str,
    source_name: str,
    limits: TextLimits = TextLimits(),
) -> ItemDraft | RowFailure:
    if row.error_code:
        return RowFailure(row.row_number, row.error_code, row.error or row.error_code)
    fields = row.fields or {}
    cols = mapping.columns
    known: dict[str, list[str]] = {}
    for column, kind in mapping.pii.items():
        value = _stringify(fields.get(column))
        if value and value.strip():
            known.setdefault(kind, []).append(value.strip())

    def fail(code: str, message: str) -> RowFailure:
        return RowFailure(row.row_number, code, message, failure_excerpt(fields, mapping, redactor, known))

    counts: dict[str, int] = {}
    notes: dict[str, int] = {}
    item: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        raw = _joined(fields, cols.get(name, []))
        text, cleaning = clean_text(raw)
        if text is not None and len(text) > limits.max_text_chars:
            return fail("text_too_long", f"{name} has {len(text):,} characters, over the limit of {limits.max_text_chars:,}")
        for k, v in cleaning.items():
            notes[k] = notes.get(k, 0) + v
        if text:
            red = redactor.redact(text, known=known, mode=redaction_mode(mapping.item_kind, name))
            merge_counts(counts, red.counts)
            text = red.text
        item[name] = text or None
    for name in KEY_FIELDS:
        value = _joined(fields, cols.get(name, []))
        item[name] = value.strip() if value else None

    if mapping.item_kind == "feedback" and not item["feedback_text"]:
        return fail("empty_text", "the feedback text is empty")
    if mapping.item_kind == "catalog" and not (item["title"] or item["description"]):
        return fail("empty_text", "both title and description are empty")

    attributes = _attributes(fields, cols.get("attributes", []))
    for key, value in list(attributes.items()):
        cleaned, _ = clean_text(value)
        red = redactor.redact(cleaned, known=known, mode=redaction_mode(mapping.item_kind, "attributes"))
        merge_counts(counts, red.counts)
        attributes[key] = red.text[: limits.max_text_chars]

    event_time = None
    if cols.get("time"):
        try:
            event_time = parse_time(fields.get(cols["time"][0]))
        except (ValueError, OverflowError, OSError):
            notes["unreadable_time"] = 1

    refs = _image_refs(fields, cols.get("images", []), mapping.image_separator)
    if len(refs) > limits.max_images_per_item:
        notes["images_dropped_over_limit"] = len(refs) - limits.max_images_per_item
        refs = refs[: limits.max_images_per_item]

    content = {k: item[k] for k in TEXT_FIELDS} | {"attributes": attributes, "images": refs}
    item_id = item_key(source_name, mapping.item_kind, item["external_id"], content)
    item.update(
        item_id=item_id,
        source_id=source_id,
        row_number=row.row_number,
        kind=mapping.item_kind,
        feedback_type=mapping.feedback_type if mapping.item_kind == "feedback" else None,
        attributes=attributes,
        event_time=event_time,
        language=fields.get("_language"),
        redaction_counts=counts,
        text_notes=notes,
    )
    return ItemDraft(row.row_number, item, refs, notes)
