"""How much the pilot's annotators agree with each other: pairwise Cohen's kappa, Fleiss' kappa and
Krippendorff's alpha (nominal), each with the number of samples it rests on, overall and per task.

Why three: Cohen's kappa compares two people on the samples both labelled; Fleiss' kappa generalises it to
any number of raters but needs the same number of ratings on every sample (it uses the samples with the
most common number); Krippendorff's alpha takes any number of raters and missing ratings, so it uses every
sample with two ratings or more. A "skip" is not a rating: it says nothing about grounding.

Pure functions over ``{sample: {annotator: label}}``; the pilot's report (curation/pilot_results.py) calls
them, the CLI and the Results page print them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Mapping

from .pilot_stats import SKIP, cohen_kappa

Labels = Mapping[str, Mapping[str, str]]  # sample -> annotator -> label


@dataclass(frozen=True)
class Measure:
    value: float | None  # None: too few samples (or no variation) to say anything
    n: int  # samples it rests on


@dataclass
class Agreement:
    annotators: list[str]
    pairwise: dict[str, Measure] = field(default_factory=dict)  # "a|b" -> Cohen's kappa on the samples both rated
    fleiss: Measure = Measure(None, 0)
    fleiss_raters: int = 0  # ratings per sample in the samples Fleiss' kappa used
    alpha: Measure = Measure(None, 0)

    def to_dict(self) -> dict:
        return asdict(self)


def ratings(labels: Labels) -> dict[str, dict[str, str]]:
    """The labels without skips (and samples left with none)."""
    out = {sid: {a: lab for a, lab in by.items() if lab != SKIP} for sid, by in labels.items()}
    return {sid: by for sid, by in out.items() if by}


def pairwise_kappa(labels: Labels) -> dict[str, Measure]:
    """Cohen's kappa of each pair of annotators over the samples both rated (every pair of people who
    labelled, skips included, so that a pair with nothing in common shows as such)."""
    rated = ratings(labels)
    people = sorted({a for by in labels.values() for a in by})
    out: dict[str, Measure] = {}
    for a, b in combinations(people, 2):
        both = [(by[a], by[b]) for by in rated.values() if a in by and b in by]
        out[f"{a}|{b}"] = Measure(cohen_kappa([x for x, _ in both], [y for _, y in both]) if both else None, len(both))
    return out


def fleiss_kappa(labels: Labels) -> tuple[Measure, int]:
    """Fleiss' kappa over the samples with the most common number of ratings (two or more), and that
    number. Fleiss (1971): P_i = (sum_j n_ij^2 - m) / (m (m - 1)), P_e = sum_j p_j^2."""
    rated = [by for by in ratings(labels).values() if len(by) >= 2]
    if not rated:
        return Measure(None, 0), 0
    counts = Counter(len(by) for by in rated)
    m = max(counts, key=lambda k: (counts[k], k))  # the most common number of ratings; ties: more raters
    rows = [Counter(by.values()) for by in rated if len(by) == m]
    categories = sorted({c for row in rows for c in row})
    n = len(rows)
    agreement = sum((sum(v * v for v in row.values()) - m) / (m * (m - 1)) for row in rows) / n
    shares = [sum(row[c] for row in rows) / (n * m) for c in categories]
    expected = sum(p * p for p in shares)
    if expected >= 1.0:  # one label on every rating: agreement is total, chance agreement too
        return Measure(None, n), m
    return Measure((agreement - expected) / (1.0 - expected), n), m


def krippendorff_alpha(labels: Labels) -> Measure:
    """Krippendorff's alpha for nominal labels: 1 - D_o / D_e over the coincidence matrix of the samples
    with two ratings or more (a sample's m ratings give m(m-1) ordered pairs, each weighted 1/(m-1))."""
    rated = [list(by.values()) for by in ratings(labels).values() if len(by) >= 2]
    if not rated:
        return Measure(None, 0)
    coincidence: Counter = Counter()
    for values in rated:
        m = len(values)
        for i, x in enumerate(values):
            for j, y in enumerate(values):
                if i != j:
                    coincidence[(x, y)] += 1.0 / (m - 1)
    total = sum(coincidence.values())
    marginal: Counter = Counter()
    for (x, _), w in coincidence.items():
        marginal[x] += w
    observed = sum(w for (x, y), w in coincidence.items() if x != y) / total
    expected = (total * total - sum(v * v for v in marginal.values())) / (total * (total - 1)) if total > 1 else 0.0
    if expected == 0.0:  # every rating the same label: alpha is undefined
        return Measure(None, len(rated))
    return Measure(1.0 - observed / expected, len(rated))


def agreement(labels: Labels) -> Agreement:
    rated = ratings(labels)
    fleiss, raters = fleiss_kappa(rated)
    return Agreement(sorted({a for by in labels.values() for a in by}), pairwise_kappa(labels), fleiss, raters, krippendorff_alpha(rated))


def by_task(labels: Labels, task_of: Mapping[str, str]) -> dict[str, Agreement]:
    """:func:`agreement` within each task (samples without a task are left out)."""
    tasks: dict[str, dict[str, Mapping[str, str]]] = {}
    for sid, by in labels.items():
        if sid in task_of:
            tasks.setdefault(task_of[sid], {})[sid] = by
    return {task: agreement(part) for task, part in sorted(tasks.items())}
