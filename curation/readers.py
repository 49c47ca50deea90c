"""Read source rows (CSV, JSONL, Parquet, ABO listings) in ranges, one bad row never stopping the rest.

Work is split into units of rows. :func:`plan_ranges` walks a source once and records where each range
starts (a byte offset for text formats, so a unit seeks straight to its rows), and :func:`read_range`
reads one range. A row that cannot be read (broken quoting, wrong number of fields, invalid UTF-8, bad
JSON) comes back as a :class:`SourceRow` with ``error`` set; reading goes on with the next row.

CSV records are found with a small quote-aware scanner instead of handing the whole file to ``csv``: an
unterminated quote would otherwise swallow every row after it. A record whose quote is still open at the
end of the file, or after ``MAX_RECORD_BYTES``, is reported broken and reading resumes on the next line.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

FORMATS = ("csv", "tsv", "jsonl", "parquet", "abo")
MAX_RECORD_BYTES = 16 * 1024 * 1024
# csv refuses fields over 128 KB by default; a long transcript must reach the length check in
# curation.ingest (a clear "text_too_long"), not die here as a parse error.
csv.field_size_limit(MAX_RECORD_BYTES)
_SAMPLE_ROWS = 1000


class SourceError(ValueError):
    """The source as a whole cannot be read (missing, unknown format, no header)."""


@dataclass
class SourceRow:
    row_number: int  # 1-based, data rows only
    fields: dict[str, Any] | None = None
    error_code: str | None = None
    error: str | None = None


@dataclass
class RowRange:
    start_row: int  # row number of the first row in the range
    offset: int  # byte offset of that row (text formats) or 0
    n_rows: int


def detect_format(path: str | Path, declared: str | None = None) -> str:
    if declared and declared != "auto":
        if declared not in FORMATS:
            raise SourceError(f"unknown format {declared!r}; use one of {', '.join(FORMATS)}")
        return declared
    suffix = Path(path).suffix.lower()
    by_suffix = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
    if suffix in by_suffix:
        fmt = by_suffix[suffix]
        if fmt == "jsonl" and _looks_like_abo(path):
            return "abo"
        return fmt
    if suffix == ".json":
        raise SourceError(f"{path}: JSON arrays are not streamed; convert to JSON lines (one object per line)")
    raise SourceError(f"cannot tell the format of {path}; name it: one of {', '.join(FORMATS)}")


def _looks_like_abo(path: str | Path) -> bool:
    """ABO listings: every text field is a list of {language_tag, value}."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    return isinstance(row, dict) and "item_id" in row and any(
                        isinstance(v, list) and v and isinstance(v[0], dict) and "language_tag" in v[0]
                        for v in row.values()
                    )
    except (OSError, ValueError):
        return False
    return False


# ---- CSV ----------------------------------------------------------------------------------------------
def _record_end_state(line: bytes, in_quotes: bool, at_field_start: bool, delim: int) -> tuple[bool, bool]:
    """Advance the CSV quote state over one physical line; returns (in_quotes, at_field_start)."""
    # Jumps from quote to quote (bytes.find) instead of walking every byte: rows are long, quotes few.
    n = len(line)
    i = 0
    while True:
        if in_quotes:
            j = line.find(b'"', i)
            if j < 0:
                return True, False
            if j + 1 < n and line[j + 1] == 0x22:  # "" is an escaped quote
                i = j + 2
                continue
            in_quotes, i = False, j + 1
            continue
        j = line.find(b'"', i)
        if j < 0:
            rest = line[i:].rstrip(b"\r\n")
            if rest:
                at_field_start = rest[-1] == delim
            return False, at_field_start
        # A quote opens a quoted field only at the start of a field; elsewhere it is a literal (55" TV).
        prev_is_boundary = (j == i and at_field_start) if j == i else line[j - 1] in (delim, 0x0A, 0x0D)
        if prev_is_boundary:
            in_quotes = True
        at_field_start = False
        i = j + 1


def _csv_physical_records(f, delim: str) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yield (offset, raw bytes, error) per record from the file's current position."""
    d = ord(delim)
    while True:
        start = f.tell()
        line = f.readline()
        if not line:
            return
        if not line.strip():
            continue
        if b'"' not in line:
            yield start, line, None
            continue
        in_quotes, at_start = _record_end_state(line, False, True, d)
        parts, size = [line], len(line)
        while in_quotes:
            nxt = f.readline()
            if not nxt or size > MAX_RECORD_BYTES:
                why = "end of file" if not nxt else f"{MAX_RECORD_BYTES // (1024 * 1024)} MB"
                yield start, None, f"a quoted field opened on this row is still open at {why}"
                f.seek(start + len(line))
                break
            parts.append(nxt)
            size += len(nxt)
            in_quotes, at_start = _record_end_state(nxt, True, at_start, d)
        else:
            yield start, b"".join(parts), None


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start} of the row"


def _csv_header(path: Path, delim: str) -> tuple[list[str], int]:
    with open(path, "rb") as f:
        for offset, raw, err in _csv_physical_records(f, delim):
            if err or raw is None:
                raise SourceError(f"{path}: the header row is broken ({err})")
            text, derr = _decode(raw.removeprefix(b"\xef\xbb\xbf"))
            if derr:
                raise SourceError(f"{path}: the header row has {derr}")
            try:
                header = next(csv.reader(io.StringIO(text), delimiter=delim))
            except csv.Error as exc:
                raise SourceError(f"{path}: cannot read the header row ({exc}); line endings must be \\n or \\r\\n") from exc
            header = [h.strip() for h in header]
            if not any(header):
                raise SourceError(f"{path}: empty header row")
            return header, f.tell()
    raise SourceError(f"{path}: the file is empty")


def _csv_rows(path: Path, delim: str, rng: RowRange | None) -> Iterator[tuple[int, SourceRow]]:
    header, data_start = _csv_header(path, delim)
    with open(path, "rb") as f:
        f.seek(rng.offset if rng else data_start)
        row_number = (rng.start_row if rng else 1) - 1
        for offset, raw, err in _csv_physical_records(f, delim):
            row_number += 1
            if rng and row_number >= rng.start_row + rng.n_rows:
                return
            if err:
                yield offset, SourceRow(row_number, error_code="bad_quoting", error=err)
                continue
            text, derr = _decode(raw)
            if derr:
                yield offset, SourceRow(row_number, error_code="invalid_utf8", error=derr)
                continue
            try:
                values = next(csv.reader(io.StringIO(text), delimiter=delim, strict=False))
            except (csv.Error, StopIteration) as exc:
                yield offset, SourceRow(row_number, error_code="bad_quoting", error=f"cannot split the row: {exc}")
                continue
            if len(values) != len(header):
                yield offset, SourceRow(
                    row_number,
                    error_code="wrong_field_count",
                    error=f"the row has {len(values)} fields, the header has {len(header)}",
                )
                continue
            yield offset, SourceRow(row_number, dict(zip(header, values)))


# ---- JSON lines ---------------------------------------------------------------------------------------
def _jsonl_rows(path: Path, rng: RowRange | None) -> Iterator[tuple[int, SourceRow]]:
    with open(path, "rb") as f:
        f.seek(rng.offset if rng else 0)
        row_number = (rng.start_row if rng else 1) - 1
        while True:
            offset = f.tell()
            line = f.readline()
            if not line:
                return
            if not line.strip():
                continue
            row_number += 1
            if rng and row_number >= rng.start_row + rng.n_rows:
                return
            text, derr = _decode(line[3:] if offset == 0 and line.startswith(b"\xef\xbb\xbf") else line)  # byte-order mark
            if derr:
                yield offset, SourceRow(row_number, error_code="invalid_utf8", error=derr)
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield offset, SourceRow(row_number, error_code="bad_json", error=f"not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(value, dict):
                yield offset, SourceRow(row_number, error_code="bad_json", error=f"expected a JSON object, got {type(value).__name__}")
                continue
            yield offset, SourceRow(row_number, value)


# ---- ABO ----------------------------------------------------------------------------------------------
def _pick_language(values: list, languages: tuple[str, ...]) -> tuple[list[str], str | None]:
    """All values of the best language (exact tag, then same language, then untagged, then the first
    language present) and that language's tag."""
    entries = [v for v in values if isinstance(v, dict) and v.get("value") not in (None, "")]
    if not entries:
        return [str(v) for v in values if isinstance(v, (str, int, float))], None
    for match in (
        lambda tag, pref: tag == pref,
        lambda tag, pref: tag is not None and tag.split("_")[0] == pref.split("_")[0],
    ):
        for pref in languages:
            chosen = [e for e in entries if match(e.get("language_tag"), pref)]
            if chosen:
                return [str(e["value"]) for e in chosen], chosen[0].get("language_tag")
    untagged = [str(e["value"]) for e in entries if e.get("language_tag") is None]
    if untagged:
        return untagged, None
    first_tag = entries[0].get("language_tag")
    return [str(e["value"]) for e in entries if e.get("language_tag") == first_tag], first_tag


def _abo_dimensions(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    parts = []
    unit = None
    for axis in ("length", "width", "height"):
        d = value.get(axis)
        if isinstance(d, dict) and d.get("value") is not None:
            parts.append(f"{d['value']:g}" if isinstance(d["value"], (int, float)) else str(d["value"]))
            unit = d.get("unit", unit)
    return f"{' x '.join(parts)} {unit or ''}".strip() if parts else None


def flatten_abo(row: dict[str, Any], languages: tuple[str, ...]) -> dict[str, Any]:
    """One ABO listing as flat fields: language-tagged lists become text in the preferred language."""
    flat: dict[str, Any] = {}
    text_language: dict[str, str | None] = {}
    for key, value in row.items():
        if key == "images":
            flat[key] = value
        elif key in ("item_dimensions", "item_weight") and isinstance(value, (dict, list)):
            if isinstance(value, list):
                value = value[0] if value else None
            if key == "item_dimensions":
                flat[key] = _abo_dimensions(value)
            elif isinstance(value, dict) and value.get("value") is not None:
                flat[key] = f"{value['value']} {value.get('unit', '')}".strip()
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            chosen, tag = _pick_language(value, languages)
            text_language[key] = tag
            flat[key] = "\n".join(chosen) if key in ("bullet_point", "product_description") else (chosen[0] if chosen else None)
        elif isinstance(value, list):
            flat[key] = None if not value else ", ".join(str(v) for v in value)
        else:
            flat[key] = value
    if not flat.get("item_name"):
        # Some listings carry no item_name; fall back to what names the product.
        name = flat.get("model_name") or flat.get("style")
        brand = flat.get("brand")
        flat["item_name"] = " ".join(x for x in (brand, name) if x) or None
    for key in ("item_name", "bullet_point", "product_description", "brand"):
        if text_language.get(key):
            flat["_language"] = text_language[key]
            break
    return flat


# ---- Parquet ------------------------------------------------------------------------------------------
def _parquet_rows(path: Path, rng: RowRange | None) -> Iterator[tuple[int, SourceRow]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    start = (rng.start_row if rng else 1) - 1
    stop = start + rng.n_rows if rng else pf.metadata.num_rows
    base = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if base + n <= start:
            base += n
            continue
        if base >= stop:
            return
        table = pf.read_row_group(g)
        lo, hi = max(start - base, 0), min(stop - base, n)
        for i, record in enumerate(table.slice(lo, hi - lo).to_pylist()):
            yield 0, SourceRow(base + lo + i + 1, record)
        base += n


# ---- public -------------------------------------------------------------------------------------------
def _delimiter(fmt: str, delimiter: str | None) -> str:
    if delimiter:
        if len(delimiter) != 1:
            raise SourceError("the delimiter must be one character")
        return delimiter
    return "\t" if fmt == "tsv" else ","


def _rows(path: Path, fmt: str, rng: RowRange | None, delimiter: str | None) -> Iterator[tuple[int, SourceRow]]:
    if fmt in ("csv", "tsv"):
        return _csv_rows(path, _delimiter(fmt, delimiter), rng)
    if fmt in ("jsonl", "abo"):
        return _jsonl_rows(path, rng)
    if fmt == "parquet":
        return _parquet_rows(path, rng)
    raise SourceError(f"unknown format {fmt!r}")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if not path.is_file():
        raise SourceError(f"{path}: not a file")


def source_columns(path: str | Path, fmt: str, *, delimiter: str | None = None, languages=("en_US",)) -> tuple[list[str], bool]:
    """The columns the mapping may use, and whether that list is exhaustive (fixed-schema formats)."""
    path = Path(path)
    _check_readable(path)
    if fmt in ("csv", "tsv"):
        return _csv_header(path, _delimiter(fmt, delimiter))[0], True
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names), True
    seen: dict[str, None] = {}
    for i, (_, row) in enumerate(_jsonl_rows(path, None)):
        if i >= _SAMPLE_ROWS:
            break
        if row.fields:
            fields = flatten_abo(row.fields, languages) if fmt == "abo" else row.fields
            seen.update(dict.fromkeys(fields))
    return list(seen), False


def plan_ranges(path: str | Path, fmt: str, rows_per_range: int, *, delimiter: str | None = None) -> list[RowRange]:
    """Walk the source once and cut it into ranges of ``rows_per_range`` rows."""
    path = Path(path)
    _check_readable(path)
    if rows_per_range < 1:
        raise ValueError("rows_per_range must be at least 1")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
        return [RowRange(s + 1, 0, min(rows_per_range, total - s)) for s in range(0, total, rows_per_range)]
    ranges: list[RowRange] = []
    count = 0
    for offset, row in _rows(path, fmt, None, delimiter):
        if count % rows_per_range == 0:
            ranges.append(RowRange(row.row_number, offset, 0))
        ranges[-1].n_rows += 1
        count += 1
    return ranges


def read_range(
    path: str | Path, fmt: str, rng: RowRange | None = None, *, delimiter: str | None = None, languages=("en_US", "en")
) -> Iterator[SourceRow]:
    """Rows of one range (or the whole source); ABO rows come flattened to the preferred language."""
    path = Path(path)
    _check_readable(path)
    for _, row in _rows(path, fmt, rng, delimiter):
        if fmt == "abo" and row.fields is not None:
            row.fields = flatten_abo(row.fields, tuple(languages))
        yield row
