"""The generation quality report: per task, how varied the answers are, how often they give up, and how
much of each item's own data they carry. Pure arithmetic over the rows ``db/reads/quality.py`` reads.

The repetition rule: within a task, no answer other than a yes/no verdict may be given for more than
``MAX_REPEAT_SHARE`` of the task's samples about different products. A stock sentence repeated over
thousands of products teaches a model to ignore the photo; the same facts for several photos of one product
(its catalog photo, each complaint's photo) are consistency, and count once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_REPEAT_SHARE = 0.02


@dataclass(frozen=True)
class TaskQuality:
    task: str
    samples: int
    distinct_share: float  # distinct answer texts / samples
    unanswerable_share: float  # samples whose answer holds "Unanswerable"
    yes_no_share: float
    most_repeated_share: float  # products sharing the most shared answer that is not a yes/no verdict / samples
    coverage: float | None  # attribute values of the items that appear in an answer of the item (None: no attributes)
    values: int  # attribute values counted for coverage
    top_answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def within_rule(self) -> bool:
        return self.most_repeated_share <= MAX_REPEAT_SHARE


@dataclass(frozen=True)
class QualityReport:
    tasks: list[TaskQuality]

    @property
    def within_rule(self) -> bool:
        return all(t.within_rule for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_repeat_share": MAX_REPEAT_SHARE,
            "within_rule": self.within_rule,
            "tasks": [{**asdict(t), "within_rule": t.within_rule} for t in self.tasks],
        }


def build_report(task_rows: list[dict[str, Any]], coverage: dict[str, tuple[int, int]]) -> QualityReport:
    out = []
    for r in task_rows:
        n = max(1, r["samples"])
        values, hits = coverage.get(r["task"], (0, 0))
        out.append(TaskQuality(
            task=r["task"], samples=r["samples"], distinct_share=r["distinct_answers"] / n, unanswerable_share=r["unanswerable"] / n,
            yes_no_share=r["yes_no"] / n, most_repeated_share=r["most_repeated_other"] / n,
            coverage=(hits / values) if values else None, values=values, top_answers=list(r["top_answers"]),
        ))
    return QualityReport(out)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def report_lines(report: QualityReport, width: int = 60) -> list[str]:
    """The report as a table, then the most repeated answers of each task."""
    if not report.tasks:
        return ["no samples yet: run `vitpro generate` first"]
    head = f"{'task':<22}{'samples':>8}{'distinct':>10}{'unansw.':>9}{'yes/no':>8}{'top rep.':>10}{'coverage':>10}  rule"
    lines = [head]
    for t in report.tasks:
        lines.append(f"{t.task:<22}{t.samples:>8}{_pct(t.distinct_share):>10}{_pct(t.unanswerable_share):>9}{_pct(t.yes_no_share):>8}"
                     f"{_pct(t.most_repeated_share):>10}{_pct(t.coverage):>10}  {'ok' if t.within_rule else 'REPEATS'}")
    lines.append(f"(top rep.: products sharing one answer that is not yes/no, at most {_pct(MAX_REPEAT_SHARE)} of a task's samples; "
                 "coverage: the items' own attribute values found in their answers)")
    for t in report.tasks:
        repeated = [a for a in t.top_answers if not a["yes_no"]]
        if repeated:
            shown = "; ".join(f"{a['count']}x over {a['products']} product(s) {a['answer'][:width]!r}" for a in repeated)
            lines.append(f"  {t.task}: most repeated: {shown}")
    return lines
