"""The filter grammar: conditions (``vis_attn >= p25 per task``, ``task in recognition,matching``) and a
filter's configuration, parsed, checked and described; the fields a condition may name and their SQL.
Nothing here reads the store but the stat declarations (db.lake.metrics)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from db.lake import metrics
from db.reads.samples_view import BRAND, CATEGORY

OPS = (">=", "<=", "!=", "==", ">", "<", "not in", "in")
FIELDS = {
    "task": "s.task",
    "category": CATEGORY,
    "brand": BRAND,
    "region": "coalesce(i.region, '(none)')",
    "issue_type": "coalesce(i.issue_type, '(none)')",
    "item_kind": "i.kind",
    "answer_format": "s.answer_format",
    "backend": "s.backend",
    "label": "coalesce(s.label, '(none)')",
    "answer_chars": "length(s.answer)",
    "question_chars": "length(s.question)",
    # a sample's tags (db/lake/tags.py) as a list: "tag in a,b" keeps a sample with any of them, "tag not in
    # a,b" one with none, "tag == a" one with a; the stats table joins the tag lists as ``tg``
    "tag": "coalesce(tg.tags, CAST([] AS VARCHAR[]))",
}
TEXT_FIELDS = {"task", "category", "brand", "region", "issue_type", "item_kind", "answer_format", "backend", "label", "tag"}
LIST_FIELDS = {"tag"}  # fields holding a list per sample: compared by membership
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|>|<|=|not in|in)\s*(.+?)\s*$", re.IGNORECASE)
_SUFFIX = re.compile(r"\s+(per[ _]task|or[ _]missing)$", re.IGNORECASE)


class FilterError(ValueError):
    """A filter that cannot be applied as written (unknown stat, ambiguous model, bad value)."""


def metric_of(name: str) -> metrics.Metric:
    """The declared stat (db.lake.metrics); a FilterError for a name no stat has."""
    try:
        return metrics.get(name)
    except KeyError as exc:
        raise FilterError(exc.args[0]) from None


@dataclass
class Condition:
    metric: str  # a stored metric (scores table) or a field of FIELDS
    op: str
    value: Any = None  # a number, a string, a list (in / not in); None when percentile is set
    percentile: float | None = None  # 0-100: the threshold is this percentile of the stat in the data set
    model_id: str | None = None  # which model's scores, where several models scored the metric
    segment: str | None = None  # VisAttnScore segment (answer by default)
    per_task: bool = False  # percentile within each task
    keep_missing: bool = False  # a sample without this stat passes (default: it is dropped)

    def __post_init__(self):
        if self.op == "=":
            self.op = "=="
        if self.op not in OPS:
            raise FilterError(f"unknown operator {self.op!r}; use one of {', '.join(OPS)}")
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise FilterError("a percentile is between 0 and 100")
        if self.op in ("in", "not in") and not isinstance(self.value, list):
            raise FilterError(f"{self.metric} {self.op} needs a list")
        if isinstance(self.value, list) and self.metric not in TEXT_FIELDS:
            try:
                self.value = [float(v) for v in self.value]
            except (TypeError, ValueError):
                raise FilterError(f"{self.metric} {self.op} needs a number list, not {self.value!r}") from None
        if self.is_field and self.metric not in FIELDS:
            raise FilterError(f"unknown field {self.metric!r}")
        if self.metric in TEXT_FIELDS and self.op not in ("==", "!=", "in", "not in"):
            raise FilterError(f"{self.metric} is text: use ==, !=, in or not in")

    @property
    def is_field(self) -> bool:
        return self.metric in FIELDS

    @classmethod
    def parse(cls, text: str, **extra) -> "Condition":
        """``vis_attn >= p25``, ``clip_score >= 20``, ``task in recognition,matching``, ``category != Grocery``,
        ``vis_attn >= p25 per task``, ``ocr_chars >= 5 or missing``."""
        # trailing words: "per task" (percentile within each task), "or missing" (no stat passes)
        words = text.strip()
        while found := _SUFFIX.search(words):  # in either order
            extra["per_task" if found.group(1).lower().startswith("per") else "keep_missing"] = True
            words = words[: found.start()]
        m = _CONDITION.match(words)
        if not m:
            raise FilterError(f"cannot read the condition {text!r}; write e.g. 'vis_attn >= p25' or 'task in recognition,matching'")
        metric, op, raw = m.group(1), m.group(2).lower(), m.group(3)
        if op in ("in", "not in"):
            return cls(metric, op, [v.strip() for v in raw.split(",") if v.strip()], **extra)
        pct = re.fullmatch(r"[pP](\d+(?:\.\d+)?)", raw)
        if pct:
            return cls(metric, op, None, float(pct.group(1)), **extra)
        if metric in TEXT_FIELDS:
            return cls(metric, op, raw, **extra)
        try:
            return cls(metric, op, float(raw), **extra)
        except ValueError:
            raise FilterError(f"{metric} {op} needs a number or a percentile like p25, not {raw!r}") from None

    def describe(self) -> str:
        value = f"p{self.percentile:g}" if self.percentile is not None else (",".join(map(str, self.value)) if isinstance(self.value, list) else self.value)
        extras = [x for x in (f"model={self.model_id}" if self.model_id else "", "per task" if self.per_task else "",
                              "missing passes" if self.keep_missing else "") if x]
        return f"{self.metric} {self.op} {value}" + (f" ({', '.join(extras)})" if extras else "")


@dataclass
class FilterConfig:
    conditions: list[Condition] = field(default_factory=list)
    selection: str | None = None  # only the samples of a named selection (vitpro sample)
    segment: str = "answer"  # default VisAttnScore segment

    def to_dict(self) -> dict[str, Any]:
        return {"conditions": [asdict(c) for c in self.conditions], "selection": self.selection, "segment": self.segment}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FilterConfig":
        return cls([Condition(**c) for c in data.get("conditions", [])], data.get("selection"), data.get("segment", "answer"))

    def describe(self) -> list[str]:
        return [c.describe() for c in self.conditions] + ([f"only selection {self.selection!r}"] if self.selection else [])

    def metrics(self) -> list[Condition]:
        return [c for c in self.conditions if not c.is_field]

