"""Which source column feeds which item field: from ``--map field=column`` options or a small YAML file.

Example (``reviews.yaml``)::

    kind: feedback            # catalog | feedback
    feedback_type: review     # transcript | review
    columns:
      external_id: Id
      product_ref: ProductId
      title: Summary
      feedback_text: [Summary, Text]   # several columns are joined with a blank line
      time: Time
    pii:                      # columns that hold personal data: never stored, redacted wherever they reappear
      ProfileName: NAME
      UserId: UCI
    redaction:
      patterns:
        EMPLOYEE: 'EMP-\\d{4,}'
      keep: [John Deere]      # never taken for a person's name (catalog brands are kept anyway)
    languages: [en_US, en]    # ABO listings: which language_tag to prefer
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

FIELDS = (
    "external_id",
    "title",
    "description",
    "brand",
    "category",
    "attributes",
    "feedback_text",
    "images",
    "region",
    "time",
    "issue_type",
    "product_ref",
)
ITEM_KINDS = ("catalog", "feedback")
FEEDBACK_TYPES = ("transcript", "review")
PII_KINDS = ("NAME", "EMAIL", "PHONE", "UCI", "ADDRESS", "CARD")


class MappingError(ValueError):
    """The mapping does not fit the source; raised before any row is read."""


@dataclass
class ColumnMapping:
    item_kind: str = "catalog"
    feedback_type: str | None = None
    columns: dict[str, list[str]] = field(default_factory=dict)  # field -> source columns
    pii: dict[str, str] = field(default_factory=dict)  # source column -> PII kind
    languages: tuple[str, ...] = ("en_US", "en_GB", "en")
    image_separator: str = "|"
    redaction_patterns: tuple[tuple[str, str], ...] = ()
    redaction_keep: tuple[str, ...] = ()  # phrases never taken for a name (brands, product lines)

    def __post_init__(self):
        if self.item_kind not in ITEM_KINDS:
            raise MappingError(f"kind must be one of {', '.join(ITEM_KINDS)}, not {self.item_kind!r}")
        if self.item_kind == "feedback" and self.feedback_type is None:
            self.feedback_type = "review"
        if self.feedback_type is not None and self.feedback_type not in FEEDBACK_TYPES:
            raise MappingError(f"feedback_type must be one of {', '.join(FEEDBACK_TYPES)}")
        for name in self.columns:
            if name not in FIELDS:
                raise MappingError(f"unknown field {name!r}; fields are: {', '.join(FIELDS)}")
        for column, kind in self.pii.items():
            if kind not in PII_KINDS:
                raise MappingError(f"PII kind for column {column!r} must be one of {', '.join(PII_KINDS)}")
        for key in ("external_id", "product_ref"):
            # keys are stored as given; a column declared personal must not become one
            clash = sorted(set(self.columns.get(key, [])) & set(self.pii))
            if clash:
                raise MappingError(
                    f"column {clash[0]!r} is declared personal (--pii) and cannot be the {key}: keys are stored as they are"
                )

    # ---- building --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ColumnMapping":
        data = dict(data or {})
        columns = {k: _as_list(v) for k, v in (data.pop("columns", None) or {}).items()}
        redaction = data.pop("redaction", None) or {}
        patterns = redaction.get("patterns", {}) or {}
        languages = data.pop("languages", None)
        mapping = cls(
            item_kind=data.pop("kind", data.pop("item_kind", "catalog")),
            feedback_type=data.pop("feedback_type", None),
            columns=columns,
            pii={str(k): str(v).upper() for k, v in (data.pop("pii", None) or {}).items()},
            languages=tuple(languages) if languages else cls.languages,
            image_separator=data.pop("image_separator", "|"),
            redaction_patterns=tuple((str(k).upper(), str(v)) for k, v in patterns.items()),
            redaction_keep=tuple(str(k) for k in redaction.get("keep", []) or []),
        )
        if data:
            raise MappingError(f"unknown keys in mapping: {', '.join(sorted(data))}")
        return mapping

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ColumnMapping":
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"cannot read mapping file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise MappingError(f"mapping file {path} must hold a YAML mapping")
        return cls.from_dict(data)

    def with_options(
        self,
        maps: Iterable[str] = (),
        pii: Iterable[str] = (),
        patterns: Iterable[str] = (),
        kind: str | None = None,
        feedback_type: str | None = None,
        languages: Iterable[str] = (),
    ) -> "ColumnMapping":
        """Overlay command-line options (``title=Summary``, ``ProfileName=NAME``, ``KIND=REGEX``)."""
        columns = dict(self.columns)
        for item in maps:
            name, value = _split_pair(item, "--map", "field=column[,column…]")
            columns[name] = [c.strip() for c in value.split(",") if c.strip()]
        pii_map = dict(self.pii)
        for item in pii:
            column, value = _split_pair(item, "--pii", "column=KIND")
            pii_map[column] = value.upper()
        extra = list(self.redaction_patterns)
        for item in patterns:
            k, v = _split_pair(item, "--redact-pattern", "KIND=REGEX")
            extra.append((k.upper(), v))
        return ColumnMapping(
            item_kind=kind or self.item_kind,
            feedback_type=feedback_type or (self.feedback_type if (kind or self.item_kind) == "feedback" else None),
            columns=columns,
            pii=pii_map,
            languages=tuple(languages) or self.languages,
            image_separator=self.image_separator,
            redaction_patterns=tuple(extra),
            redaction_keep=self.redaction_keep,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.item_kind,
            "feedback_type": self.feedback_type,
            "columns": self.columns,
            "pii": self.pii,
            "languages": list(self.languages),
            "image_separator": self.image_separator,
            "redaction": {"patterns": dict(self.redaction_patterns), "keep": list(self.redaction_keep)},
        }

    # ---- checking --------------------------------------------------------------------------------------
    def referenced_columns(self) -> set[str]:
        return {c for cols in self.columns.values() for c in cols} | set(self.pii)

    def check_against(self, available: Iterable[str]) -> None:
        available = list(available)
        missing = sorted(self.referenced_columns() - set(available))
        if missing:
            raise MappingError(
                f"column(s) {', '.join(repr(m) for m in missing)} are not in the source; "
                f"its columns are: {', '.join(available)}"
            )
        text_field = "feedback_text" if self.item_kind == "feedback" else "title"
        if self.item_kind == "feedback" and "feedback_text" not in self.columns:
            raise MappingError("feedback items need a feedback_text column: map feedback_text to a column")
        if self.item_kind == "catalog" and not ({"title", "description"} & set(self.columns)):
            raise MappingError(f"catalog items need a title or description column: map {text_field} to a column")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _split_pair(item: str, option: str, form: str) -> tuple[str, str]:
    if "=" not in item:
        raise MappingError(f"{option} takes {form}, got {item!r}")
    key, value = item.split("=", 1)
    key, value = key.strip(), value.strip()
    if not key or not value:
        raise MappingError(f"{option} takes {form}, got {item!r}")
    return key, value


# Defaults for Amazon Berkeley Objects listings (fields named as ABO names them).
ABO_MAPPING = ColumnMapping(
    item_kind="catalog",
    columns={
        "external_id": ["item_id"],
        "title": ["item_name"],
        "description": ["bullet_point", "product_description"],
        "brand": ["brand"],
        "category": ["product_type"],
        "attributes": [
            "color",
            "material",
            "fabric_type",
            "style",
            "pattern",
            "finish_type",
            "item_shape",
            "model_name",
            "model_number",
            "model_year",
            "item_dimensions",
            "item_weight",
        ],
        "images": ["images"],
        "region": ["country"],
    },
)
