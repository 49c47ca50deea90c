"""Evaluation metrics for MMPI-Bench style results (paper, "Evaluation").

Obj-Bench asks balanced yes/no questions and reports accuracy per task (AE/DD/PM);
attribute extraction is scored per attribute by exact match after normalising both
strings; results are reported relative to a baseline model in percentage points.

Everything here is a pure function over plain Python values, so the same code scores
real model outputs, fake-model test outputs and saved prediction files, and it can be
imported without torch.
"""
from __future__ import annotations

import json
import random
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

from curation.verdicts import NO, UNANSWERABLE, YES, is_unanswerable

OVERALL = "overall"


@dataclass
class BinaryMetrics:
    """Scores of yes/no predictions with "yes" as the positive class."""

    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float  # share of all n predicted "yes": a yes-bias shows up here
    unparsed: int  # predictions that were None (no usable answer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(value: str, what: str) -> str:
    label = value.strip().casefold() if isinstance(value, str) else value
    if label not in (YES, NO):
        raise ValueError(f"{what} label must be 'yes' or 'no', got {value!r}")
    return label


def binary_metrics(truth: list[str], predicted: list[str | None]) -> BinaryMetrics:
    """Accuracy, precision, recall, F1 and yes-ratio of yes/no predictions.

    An unparsed prediction (None, or anything not yes/no) is wrong for accuracy and
    counts as not-"yes", so on a "yes" truth it is a false negative: a model cannot
    gain by refusing to answer. Empty input gives zeros rather than NaN so reports
    stay printable and JSON-serialisable.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truth labels but {len(predicted)} predictions")
    tp = fp = fn = correct = yes_pred = unparsed = 0
    for t, p in zip(truth, predicted):
        t = _label(t, "truth")
        p = p.strip().casefold() if isinstance(p, str) else None
        if p not in (YES, NO):
            p = None
            unparsed += 1
        correct += p == t
        if p == YES:
            yes_pred += 1
            if t == YES:
                tp += 1
            else:
                fp += 1
        elif t == YES:
            fn += 1
    n = len(truth)
    if n == 0:
        return BinaryMetrics(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(
        n=n,
        accuracy=correct / n,
        precision=precision,
        recall=recall,
        f1=f1,
        yes_ratio=yes_pred / n,
        unparsed=unparsed,
    )


def per_task_metrics(rows: list[tuple[str, str, str | None]]) -> dict[str, BinaryMetrics]:
    """Binary metrics per task (AE/DD/PM, ...) sorted by task name, plus "overall".

    "overall" pools all rows (micro-average), which equals the mean over tasks only
    when the tasks are the same size, as in the balanced benchmark.
    """
    by_task: dict[str, tuple[list[str], list[str | None]]] = {}
    for task, truth, pred in rows:
        if task == OVERALL:
            raise ValueError(f"task name {OVERALL!r} is reserved for the pooled result")
        t, p = by_task.setdefault(task, ([], []))
        t.append(truth)
        p.append(pred)
    result = {task: binary_metrics(*by_task[task]) for task in sorted(by_task)}
    result[OVERALL] = binary_metrics([r[1] for r in rows], [r[2] for r in rows])
    return result


_LEADING = "\"'`‘’“”«» \t\n"
_TRAILING = _LEADING + ".,;:!?"
_NUMBER_UNIT = re.compile(r"(\d)\s+(?=[^\W\d_]|%|°)")


def normalise_value(text: Any) -> str:
    """Canonical form of an attribute value for exact-match scoring (paper Table 11).

    Both truth and prediction go through this, so only differences that do not change
    the value are removed: Unicode width/compatibility forms, case, surrounding quotes
    and sentence punctuation, repeated whitespace, the space in "250 ml", and the many
    spellings of "no answer" (``is_unanswerable``; all become ``UNANSWERABLE``, which no casefolded
    value equals). Leading "-" or "." is kept so "-5" and ".5" survive.
    """
    s = unicodedata.normalize("NFKC", str(text)).casefold()
    s = " ".join(s.split())
    s = s.lstrip(_LEADING).rstrip(_TRAILING)
    s = " ".join(s.split())
    s = _NUMBER_UNIT.sub(r"\1", s)
    return UNANSWERABLE if is_unanswerable(s) else s


def parse_attributes(text: str | None) -> dict[str, str] | None:
    """The first JSON object in a model answer, with values as strings.

    Models wrap JSON in ```json fences or add prose around it, so every "{" is tried
    in order and the first position that decodes to an object wins. Values go through
    str() so numbers compare as text ("2"); None if no object parses.
    """
    if not isinstance(text, str):
        return None
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return {str(k): str(v) for k, v in obj.items()}
    return None


def attribute_exact_match(
    rows: list[tuple[dict[str, str], dict[str, str] | None]],
) -> dict[str, dict]:
    """Per-attribute exact-match accuracy after normalise_value, plus "overall".

    Attributes are those of the truth; the prediction's keys are matched ignoring
    case and surrounding spaces ("Brand" == "brand"). A missing key or an unparsed
    prediction (None) is wrong. "overall" is the micro-average over all values.
    """
    counts: dict[str, list[int]] = {}
    for truth, pred in rows:
        lookup: dict[str, Any] = {}
        for k, v in (pred or {}).items():
            lookup.setdefault(str(k).strip().casefold(), v)
        for key, value in truth.items():
            if key == OVERALL:
                raise ValueError(f"attribute name {OVERALL!r} is reserved for the pooled result")
            c = counts.setdefault(key, [0, 0])
            c[0] += 1
            folded = key.strip().casefold()
            if folded in lookup and normalise_value(lookup[folded]) == normalise_value(value):
                c[1] += 1

    def entry(n: int, correct: int) -> dict:
        return {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0}

    result = {key: entry(*counts[key]) for key in sorted(counts)}
    result[OVERALL] = entry(sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()))
    return result


def relative_to(results: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Differences to a baseline in percentage points, as the paper reports them.

    Inputs are fractions (0.853); a key missing on either side is left out rather
    than compared against an implicit zero.
    """
    return {k: 100.0 * (results[k] - baseline[k]) for k in results if k in baseline}


def yes_no_balance(
    rows: Iterable[Any],
    key: Callable[[Any], str] = lambda r: r["label"],
    seed: int = 0,
) -> list[Any]:
    """A subset with as many "yes" as "no" rows, as Obj-Bench is balanced.

    A balanced set makes always-"yes" score 50%. The larger side is downsampled with
    random.Random(seed) (reproducible), and kept rows stay in their original order.
    """
    rows = list(rows)
    sides: dict[str, list[int]] = {YES: [], NO: []}
    for i, row in enumerate(rows):
        sides[_label(key(row), "row")].append(i)
    k = min(len(sides[YES]), len(sides[NO]))
    rng = random.Random(seed)
    keep: set[int] = set()
    for label in (YES, NO):
        idx = sides[label]
        keep.update(idx if len(idx) == k else rng.sample(idx, k))
    return [rows[i] for i in sorted(keep)]
