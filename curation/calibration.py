"""The pilot decides: a logistic regression over the grounding signals (VisAttnScore, the visual information
gain, the blind log-probability, CLIPScore), fitted on the pilot's human labels, turned into a calibrated
probability that a sample is grounded (``grounded_p``) for every sample that has the signals.

Why a logistic regression: a few hundred labels carry a handful of coefficients and no more; its output is
a probability (so a cut such as ``grounded_p >= 0.7`` reads as one), and its coefficients say which signal
it leans on. The signals are standardised first (their scales differ by orders of magnitude).

How good it is, honestly: the AUC of the combined score is measured by k-fold cross-validation (each label
predicted by a fit that did not see it; folds stratified by label), never on the labels the final fit saw,
with the Hanley-McNeil interval of the pooled out-of-fold predictions. The final model is then fitted on
every label. Under 100 labels the result is flagged: the interval is wide and the fit unstable.

Pure functions (no store): the caller reads the signals and the labels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .pilot_stats import auc, auc_interval, roc_curve

MIN_LABELS = 100  # fewer: said in the result (the threshold for a fit worth trusting)


class CalibrationError(ValueError):
    """Too few labels (or of one class only) to fit or to cross-validate."""


@dataclass
class Fit:
    signals: list[str]
    coef: list[float]  # per signal, on the standardised scale
    intercept: float
    mean: list[float]
    scale: list[float]
    n: int
    positives: int
    folds: int
    cv_auc: float
    cv_auc_ci: tuple[float, float]
    cv_probabilities: dict[str, float] = field(default_factory=dict)  # sample -> out-of-fold probability
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("cv_probabilities")
        return out

    def describe(self) -> str:
        weights = ", ".join(f"{s} {c:+.3f}" for s, c in zip(self.signals, self.coef))
        return (f"logistic regression on {self.n} labels ({self.positives} grounded) over {', '.join(self.signals)}: "
                f"{self.folds}-fold cross-validated AUC {self.cv_auc:.3f} [{self.cv_auc_ci[0]:.3f}-{self.cv_auc_ci[1]:.3f}]; "
                f"weights per standard deviation: {weights}")


def complete(features: dict[str, dict[str, float | None]], signals: list[str]) -> dict[str, list[float]]:
    """The samples that have every signal (the others cannot be placed on the fitted scale)."""
    return {sid: [float(row[s]) for s in signals] for sid, row in features.items() if all(row.get(s) is not None for s in signals)}


def fit(features: dict[str, dict[str, float | None]], labels: dict[str, int], signals: list[str], *, folds: int = 5, seed: int = 0) -> Fit:
    """``features``: sample -> signal -> value; ``labels``: sample -> 1 (grounded) / 0 (not grounded).
    Raises CalibrationError when the labelled samples with every signal are too few for ``folds`` folds."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    if not signals:
        raise CalibrationError("no signals to combine")
    rows = complete(features, signals)
    ids = [sid for sid in labels if sid in rows]
    y = np.array([labels[sid] for sid in ids])
    positives = int(y.sum()) if len(ids) else 0
    if min(positives, len(ids) - positives) < folds:
        raise CalibrationError(f"{len(ids)} labelled sample(s) with every signal ({positives} grounded, {len(ids) - positives} not): "
                               f"each class needs at least {folds} (one per fold); label more, or use fewer folds")
    x = np.array([rows[sid] for sid in ids], dtype=float)
    out_of_fold = np.zeros(len(ids))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[train])
        model = LogisticRegression().fit(scaler.transform(x[train]), y[train])
        out_of_fold[test] = model.predict_proba(scaler.transform(x[test]))[:, 1]
    fpr, tpr, _ = roc_curve(out_of_fold.tolist(), y.tolist())
    area = auc(fpr, tpr)
    scaler = StandardScaler().fit(x)
    final = LogisticRegression().fit(scaler.transform(x), y)
    warnings = []
    if len(ids) < MIN_LABELS:
        warnings.append(f"only {len(ids)} labels: under {MIN_LABELS} the fit is unstable and its AUC interval wide (the paper labels 200)")
    return Fit(list(signals), [float(c) for c in final.coef_[0]], float(final.intercept_[0]), [float(m) for m in scaler.mean_],
               [float(s) for s in scaler.scale_], len(ids), positives, folds, area, auc_interval(area, positives, len(ids) - positives),
               dict(zip(ids, out_of_fold.tolist())), warnings)


def probabilities(model: Fit, features: dict[str, list[float]]) -> dict[str, float]:
    """``grounded_p`` for every sample with every signal (``features`` as :func:`complete` gives them)."""
    import numpy as np

    if not features:
        return {}
    ids = list(features)
    x = (np.array([features[sid] for sid in ids], dtype=float) - np.array(model.mean)) / np.array(model.scale)
    z = x @ np.array(model.coef) + model.intercept
    return dict(zip(ids, (1.0 / (1.0 + np.exp(-z))).tolist()))
