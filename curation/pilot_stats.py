"""Statistics of the pilot study: how well a score separates what humans call grounded from what they do
not. Plain Python over lists (the pilot is 200 samples); the tests hold it to scikit-learn's numbers.

"Positive" is *grounded*: a score predicts grounded when it is at least the threshold.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations

GROUNDED, NOT_GROUNDED, SKIP = "grounded", "not_grounded", "skip"
LABELS = (GROUNDED, NOT_GROUNDED, SKIP)
PAPER_RELATIVE_IMPROVEMENT = 0.36  # the paper: VisAttnScore agrees with humans 36% more often than CLIPScore
MIN_MEANINGFUL = 50  # below this many labelled samples the intervals are too wide to read anything into
MIN_INTERVAL_N = 10  # below this many, an interval is not shown at all ("too few"): its approximations do not hold
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
AUC_CI_METHOD = "Hanley-McNeil"


def consensus(labels: list[str]) -> str | None:
    """The majority of the non-skip labels; None for no label or a tie."""
    votes = Counter(label for label in labels if label != SKIP)
    if not votes:
        return None
    (top, n), *rest = votes.most_common()
    if rest and rest[0][1] == n:
        return None
    return top


def roc_curve(scores: list[float], truth: list[int]) -> tuple[list[float], list[float], list[float]]:
    """(false positive rates, true positive rates, thresholds), thresholds descending; the first point is
    (0, 0) at +inf, as scikit-learn returns them with drop_intermediate=False."""
    if len(scores) != len(truth) or not scores:
        raise ValueError("scores and labels must be non-empty and of the same length")
    positives = sum(truth)
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("the ROC needs both grounded and not-grounded labels")
    pairs = sorted(zip(scores, truth), key=lambda p: -p[0])
    fpr, tpr, thresholds = [0.0], [0.0], [float("inf")]
    tp = fp = 0
    for k, (score, label) in enumerate(pairs):
        tp += label
        fp += 1 - label
        if k + 1 < len(pairs) and pairs[k + 1][0] == score:
            continue  # one point per distinct score
        fpr.append(fp / negatives)
        tpr.append(tp / positives)
        thresholds.append(score)
    return fpr, tpr, thresholds


def auc(fpr: list[float], tpr: list[float]) -> float:
    return sum((fpr[k] - fpr[k - 1]) * (tpr[k] + tpr[k - 1]) / 2 for k in range(1, len(fpr)))


def accuracy(scores: list[float], truth: list[int], threshold: float) -> float:
    return sum((s >= threshold) == bool(t) for s, t in zip(scores, truth)) / len(truth)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): unlike the normal approximation it
    stays inside [0, 1] and is not degenerate at 0 or n successes, which small pilots hit."""
    if n <= 0:
        raise ValueError("an interval needs at least one sample")
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def auc_interval(area: float, positives: int, negatives: int, z: float = Z95) -> tuple[float, float]:
    """Hanley & McNeil's (1982) interval of an AUC: its standard error from the AUC and the numbers of
    positives and negatives alone (no resampling, so the same labels always give the same interval),
    clipped to [0, 1]."""
    if positives <= 0 or negatives <= 0:
        raise ValueError("the AUC needs both grounded and not-grounded labels")
    q1, q2 = area / (2 - area), 2 * area * area / (1 + area)
    variance = (area * (1 - area) + (positives - 1) * (q1 - area * area) + (negatives - 1) * (q2 - area * area)) / (positives * negatives)
    half = z * math.sqrt(max(variance, 0.0))
    return max(0.0, area - half), min(1.0, area + half)


def best_thresholds(scores: list[float], truth: list[int]) -> dict[str, float]:
    """The threshold that maximises accuracy, and the one that maximises Youden's J (TPR - FPR)."""
    fpr, tpr, thresholds = roc_curve(scores, truth)
    candidates = [t for t in thresholds[1:]]
    best_acc = max(candidates, key=lambda t: (accuracy(scores, truth, t), -t))
    j = [tpr[k] - fpr[k] for k in range(1, len(thresholds))]
    best_j = thresholds[1 + max(range(len(j)), key=lambda k: (j[k], -k))]
    return {"accuracy": best_acc, "accuracy_value": accuracy(scores, truth, best_acc), "youden": best_j, "youden_j": max(j)}


def cohen_kappa(a: list[str], b: list[str]) -> float:
    """Cohen's kappa of two annotators' labels on the same samples."""
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two equally long, non-empty label lists")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


@dataclass
class ScoreResult:
    name: str
    n: int
    auc: float
    roc: dict[str, list[float]]
    best_accuracy_threshold: float
    best_accuracy: float
    youden_threshold: float
    youden_j: float
    current_threshold: str | None = None  # the filter's conditions on this score
    current_accuracy: float | None = None
    auc_ci: tuple[float, float] | None = None  # 95%, Hanley-McNeil
    best_accuracy_ci: tuple[float, float] | None = None  # 95% Wilson (the threshold is fitted on the same labels: optimistic)
    current_n: int = 0  # samples the current thresholds were judged on
    current_accuracy_ci: tuple[float, float] | None = None  # 95% Wilson


@dataclass
class PilotReport:
    samples: int
    labelled: int  # samples with a consensus label
    grounded: int
    not_grounded: int
    annotators: list[str]
    without_majority: int = 0  # labelled, annotators split evenly, not settled: left out of the results
    settled: int = 0  # samples an adjudicator's verdict decides (it replaces the annotators' labels)
    skipped_only: int = 0  # samples every annotator skipped
    scores: dict[str, ScoreResult] = field(default_factory=dict)
    kappa: dict[str, float] = field(default_factory=dict)  # "a|b" -> kappa
    relative_improvement: float | None = None  # VisAttnScore accuracy over CLIPScore's, at the best thresholds
    relative_improvement_current: float | None = None  # the same at the current thresholds


def evaluate(
    score_values: dict[str, dict[str, float | None]],
    labels: dict[str, dict[str, str]],
    current_predictions: dict[str, tuple[str, dict[str, bool]]] | None = None,
    settled: dict[str, str] | None = None,
) -> PilotReport:
    """``score_values``: score name -> sample -> value; ``labels``: sample -> annotator -> label;
    ``settled``: sample -> an adjudicator's verdict, which replaces the annotators' majority (or its lack).

    The current thresholds come as what the filter's conditions on each score keep: (description,
    sample -> kept), which covers a percentile per task as well as one value."""
    current_predictions = current_predictions or {}
    settled = {sid: lab for sid, lab in (settled or {}).items() if lab in (GROUNDED, NOT_GROUNDED)}
    truth = {sid: consensus(list(by.values())) for sid, by in labels.items()}
    votes = {sid: [lab for lab in by.values() if lab != SKIP] for sid, by in labels.items()}
    truth.update(settled)
    decided = {sid: 1 if lab == GROUNDED else 0 for sid, lab in truth.items() if lab is not None}
    annotators = sorted({a for by in labels.values() for a in by})
    report = PilotReport(
        samples=len(next(iter(score_values.values()), {})) if score_values else len(labels),
        labelled=len(decided),
        grounded=sum(decided.values()),
        not_grounded=len(decided) - sum(decided.values()),
        annotators=annotators,
        without_majority=sum(1 for sid, lab in truth.items() if lab is None and votes.get(sid)),
        settled=len(settled),
        skipped_only=sum(1 for sid, lab in truth.items() if lab is None and not votes.get(sid)),
    )
    for name, values in score_values.items():
        ids = [sid for sid in decided if values.get(sid) is not None]
        scores = [float(values[sid]) for sid in ids]
        truth_list = [decided[sid] for sid in ids]
        if len(set(truth_list)) < 2:
            continue
        fpr, tpr, thresholds = roc_curve(scores, truth_list)
        best = best_thresholds(scores, truth_list)
        area = auc(fpr, tpr)
        positives = sum(truth_list)
        result = ScoreResult(
            name, len(ids), area, {"fpr": fpr, "tpr": tpr, "thresholds": [None] + thresholds[1:]},  # None: above every score
            best["accuracy"], best["accuracy_value"], best["youden"], best["youden_j"],
            auc_ci=auc_interval(area, positives, len(ids) - positives),
            best_accuracy_ci=wilson_interval(round(best["accuracy_value"] * len(ids)), len(ids)),
        )
        if name in current_predictions:
            described, kept = current_predictions[name]
            judged = [(kept[sid], decided[sid]) for sid in ids if sid in kept]
            if judged:
                right = sum(k == bool(t) for k, t in judged)
                result.current_threshold = described
                result.current_accuracy = right / len(judged)
                result.current_n = len(judged)
                result.current_accuracy_ci = wilson_interval(right, len(judged))
        report.scores[name] = result
    for a, b in combinations(annotators, 2):
        both = [(labels[sid][a], labels[sid][b]) for sid in labels if a in labels[sid] and b in labels[sid]
                and SKIP not in (labels[sid][a], labels[sid][b])]
        if both:
            report.kappa[f"{a}|{b}"] = cohen_kappa([x for x, _ in both], [y for _, y in both])
    vis, clip = report.scores.get("vis_attn"), report.scores.get("clip_score")
    if vis and clip and clip.best_accuracy:
        report.relative_improvement = (vis.best_accuracy - clip.best_accuracy) / clip.best_accuracy
        if vis.current_accuracy is not None and clip.current_accuracy:
            report.relative_improvement_current = (vis.current_accuracy - clip.current_accuracy) / clip.current_accuracy
    return report
