"""What a filter keeps, as a report: kept and dropped overall, per task and per category, the thresholds
its percentiles resolved to, the samples curators excluded; and how the stats table's grouped counts
become that report and its histograms."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FilterReport:
    kept: int
    dropped: int
    per_task: list[tuple[str, int, int]]
    per_category: list[tuple[str, int, int]]
    thresholds: dict[str, Any]
    excluded: int = 0  # samples not kept because a curator excluded them (counted in dropped too)
    per_task_excluded: dict[str, int] = field(default_factory=dict)  # the same, per task (tasks with none left out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def report_from_counts(rows: list[tuple], tasks_of: dict[int, str], categories_of: dict[int, str], thresholds: dict[str, Any],
                       ranges: list[tuple[str, float | None, float]], bins: int) -> tuple[FilterReport, dict[str, list[tuple[float, int, int]]]]:
    """The report and histograms from :meth:`StatsTable.summary`'s counts. ``rows``: one per group of its
    GROUPING SETS: (one GROUPING flag per histogram, task code, category code, one bin per histogram,
    kept, total, excluded); the rows with every flag set are the (task, category) groups, a row with
    histogram k's flag clear is bin k's count. ``tasks_of`` / ``categories_of``: code -> name;
    ``ranges``: (column, lowest value, bin width) per histogram, in the rows' order."""
    nb = len(ranges)
    tasks: dict[str, list[int]] = {}
    categories: dict[str, list[int]] = {}
    excluded: dict[str, int] = {}
    hists: list[dict[int, tuple[int, int]]] = [{} for _ in range(nb)]
    for row in rows:
        flags, task_code, category_code, values = row[:nb], row[nb], row[nb + 1], row[nb + 2: 2 * nb + 2]
        kept_n, total, excluded_n = int(row[-3]), int(row[-2]), int(row[-1])
        grouped = [k for k, f in enumerate(flags) if f == 0]
        if grouped:
            if values[grouped[0]] is not None:  # samples without the stat are in no bin
                hists[grouped[0]][int(values[grouped[0]])] = (total, kept_n)
            continue
        for table, key in ((tasks, tasks_of[task_code]), (categories, categories_of[category_code])):
            counts = table.setdefault(key, [0, 0])
            counts[0] += kept_n
            counts[1] += total - kept_n
        if excluded_n:
            excluded[tasks_of[task_code]] = excluded.get(tasks_of[task_code], 0) + excluded_n
    kept = sum(c[0] for c in tasks.values())
    dropped = sum(c[1] for c in tasks.values())
    per_task = sorted((t, k, d) for t, (k, d) in tasks.items())
    per_category = sorted(((c, k, d) for c, (k, d) in categories.items()), key=lambda r: (-r[1], r[0]))
    report = FilterReport(kept, dropped, per_task, per_category, thresholds, sum(excluded.values()), dict(sorted(excluded.items())))
    histograms = {}
    for k, (col, lo, width) in enumerate(ranges):
        histograms[col] = [] if lo is None else [(lo + b * width, *hists[k].get(b, (0, 0))) for b in range(bins)]
    return report, histograms
