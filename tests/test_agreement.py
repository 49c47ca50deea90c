"""Annotator agreement (curation/agreement.py) against reference implementations: scikit-learn's Cohen's
kappa, the krippendorff package's alpha, and the worked example of Fleiss' kappa from Fleiss (1971) as
reprinted in the literature (10 subjects, 14 raters, 5 categories: kappa 0.210)."""
from __future__ import annotations

import random

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from curation import agreement
from curation.pilot_stats import GROUNDED, NOT_GROUNDED, SKIP

FLEISS_TABLE = [  # per subject, how many of the 14 raters chose each of 5 categories
    (0, 0, 0, 0, 14), (0, 2, 6, 4, 2), (0, 0, 3, 5, 6), (0, 3, 9, 2, 0), (2, 2, 8, 1, 1),
    (7, 7, 0, 0, 0), (3, 2, 6, 3, 0), (2, 5, 3, 2, 2), (6, 5, 2, 1, 0), (0, 2, 2, 3, 7),
]


def _random_labels(seed: int, people: int, samples: int, missing: float) -> dict[str, dict[str, str]]:
    rng = random.Random(seed)
    out = {}
    for k in range(samples):
        truth = rng.random() < 0.6
        by = {}
        for p in range(people):
            if rng.random() < missing:
                continue
            agrees = rng.random() < 0.8
            by[f"p{p}"] = rng.choice([SKIP]) if rng.random() < 0.05 else (GROUNDED if truth == agrees else NOT_GROUNDED)
        out[f"s{k}"] = by
    return out


def test_fleiss_kappa_gives_the_published_worked_example():
    labels = {}
    for i, row in enumerate(FLEISS_TABLE):
        raters = [c for c, n in enumerate(row) for _ in range(n)]
        labels[f"subject{i}"] = {f"r{j}": f"category{c}" for j, c in enumerate(raters)}
    measure, raters = agreement.fleiss_kappa(labels)
    assert raters == 14 and measure.n == 10 and measure.value == pytest.approx(0.210, abs=5e-4)


@pytest.mark.parametrize("seed", range(5))
def test_cohen_and_krippendorff_match_the_reference_implementations(seed):
    labels = _random_labels(seed, people=4, samples=60, missing=0.3)
    found = agreement.agreement(labels)
    rated = agreement.ratings(labels)
    for pair, measure in found.pairwise.items():
        a, b = pair.split("|")
        both = [(by[a], by[b]) for by in rated.values() if a in by and b in by]
        assert measure.n == len(both) > 5
        assert measure.value == pytest.approx(cohen_kappa_score([x for x, _ in both], [y for _, y in both]), abs=1e-12)
    people = sorted({a for by in labels.values() for a in by})
    code = {GROUNDED: 1.0, NOT_GROUNDED: 0.0}
    data = np.array([[code[rated[sid][p]] if sid in rated and p in rated[sid] else np.nan for sid in labels] for p in people])
    assert found.alpha.value == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"), abs=1e-12)
    assert found.alpha.n == sum(1 for by in rated.values() if len(by) >= 2)


def test_skips_are_not_ratings_and_too_little_says_none():
    labels = {"s1": {"a": GROUNDED, "b": SKIP}, "s2": {"a": SKIP, "b": SKIP}}
    found = agreement.agreement(labels)
    assert found.pairwise == {"a|b": agreement.Measure(None, 0)} and found.alpha == agreement.Measure(None, 0)
    assert found.fleiss == agreement.Measure(None, 0) and found.annotators == ["a", "b"]
    same = agreement.agreement({"s1": {"a": GROUNDED, "b": GROUNDED}, "s2": {"a": GROUNDED, "b": GROUNDED}})
    assert same.alpha.value is None and same.alpha.n == 2  # one label throughout: no variation to agree on
    # Fleiss uses the most common number of ratings: here the three samples rated by two people
    mixed = {"s1": {"a": GROUNDED, "b": GROUNDED}, "s2": {"a": NOT_GROUNDED, "b": NOT_GROUNDED}, "s3": {"a": GROUNDED, "b": NOT_GROUNDED},
             "s4": {"a": GROUNDED, "b": GROUNDED, "c": GROUNDED}}
    measure, raters = agreement.fleiss_kappa(mixed)
    assert raters == 2 and measure.n == 3


def test_agreement_per_task():
    labels = {"s1": {"a": GROUNDED, "b": GROUNDED}, "s2": {"a": NOT_GROUNDED, "b": GROUNDED}, "s3": {"a": GROUNDED, "b": NOT_GROUNDED},
              "s4": {"a": NOT_GROUNDED, "b": NOT_GROUNDED}}
    tasks = agreement.by_task(labels, {"s1": "counting", "s2": "counting", "s3": "matching", "s4": "matching"})
    assert list(tasks) == ["counting", "matching"] and tasks["counting"].pairwise["a|b"].n == 2
    assert tasks["matching"].alpha.n == 2
