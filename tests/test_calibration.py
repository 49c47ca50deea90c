"""The pilot decides (curation/calibration.py): a logistic regression over the grounding signals fitted on a
pilot's labels, its AUC cross-validated (never measured on the labels it was fitted on), against
scikit-learn run directly; then as a job that writes grounded_p for every sample with the signals, which a
filter cuts on, and in the pilot report."""
from __future__ import annotations

import random

import numpy as np
import pytest

from curation import calibration


def _synthetic(n: int, seed: int = 3):
    """Two signals, the first telling the labels apart (with noise), the second noise; a third sample set
    misses a signal."""
    rng = random.Random(seed)
    features, labels = {}, {}
    for k in range(n):
        grounded = k % 2
        features[f"s{k}"] = {"vis_attn": grounded + rng.gauss(0, 0.6), "clip_score": 30 + rng.gauss(0, 5)}
        labels[f"s{k}"] = grounded
    features["no-clip"] = {"vis_attn": 1.0, "clip_score": None}
    return features, labels


def test_the_fit_matches_scikit_learn_and_its_auc_is_out_of_fold():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = _synthetic(120)
    found = calibration.fit(features, labels, ["vis_attn", "clip_score"], folds=5, seed=0)
    ids = [sid for sid in labels]
    x = np.array([[features[s]["vis_attn"], features[s]["clip_score"]] for s in ids])
    y = np.array([labels[s] for s in ids])
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    oof = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression()), x, y, cv=folds, method="predict_proba")[:, 1]
    assert [found.cv_probabilities[s] for s in ids] == pytest.approx(oof.tolist())
    assert found.cv_auc == pytest.approx(roc_auc_score(y, oof))
    assert found.cv_auc > 0.75 and found.cv_auc_ci[0] < found.cv_auc < found.cv_auc_ci[1]
    direct = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    probs = calibration.probabilities(found, calibration.complete(features, found.signals))
    assert [probs[s] for s in ids] == pytest.approx(direct.predict_proba(x)[:, 1].tolist())
    assert "no-clip" not in probs and found.n == 120 and found.positives == 60 and not found.warnings
    assert found.coef[0] > 1.0 > abs(found.coef[1])  # it leans on the signal that tells the labels apart
    # in-sample AUC would flatter it: the out-of-fold one is never above it here
    assert found.cv_auc <= roc_auc_score(y, direct.predict_proba(x)[:, 1]) + 1e-9


def test_too_few_labels_are_refused_and_under_100_said():
    features, labels = _synthetic(40)
    assert calibration.fit(features, labels, ["vis_attn"], folds=5).warnings[0].startswith("only 40 labels: under 100")
    few = {k: v for k, v in list(labels.items())[:7]}  # 3 or 4 of each class: not one per fold of five
    with pytest.raises(calibration.CalibrationError, match="each class needs at least 5"):
        calibration.fit(features, few, ["vis_attn"], folds=5)
    with pytest.raises(calibration.CalibrationError, match="no signals"):
        calibration.fit(features, labels, [])


@pytest.mark.slow
def test_the_job_writes_grounded_p_a_filter_cuts_on_it_and_the_report_shows_the_combined_score(home, tmp_path, inprocess_worker, cli):
    from curation import pilot_results
    from db.app import pilots
    from db.reads.scoring_reads import sample_signals

    from .ui_store import CLIP_MODEL, VIS_MODEL, build

    lake, engine = build(tmp_path / "data")
    inprocess_worker("cpu")
    p = pilots.get(engine, "ui-pilot")
    chosen = [x for x in pilots.samples(engine, p.id) if x.vis_attn is not None]
    median = sorted(x.vis_attn for x in chosen)[len(chosen) // 2]
    for x in chosen:  # the annotator agrees with VisAttnScore, more or less
        pilots.set_label(engine, p.id, x.sample_id, "ann", "grounded" if x.vis_attn >= median else "not_grounded")
    features = sample_signals(lake, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, segment="answer", signals=["vis_attn", "clip_score"])
    complete = calibration.complete(features, ["vis_attn", "clip_score"])
    for x in chosen:  # the signals as the pilot recorded them from the store when it was drawn
        assert features[x.sample_id]["vis_attn"] == pytest.approx(x.vis_attn)
        assert features[x.sample_id]["clip_score"] == (pytest.approx(x.clip_score) if x.clip_score is not None else None)
    usable = sum(1 for x in chosen if x.sample_id in complete)  # a labelled sample without a CLIPScore cannot be fitted on
    assert 10 <= usable <= len(chosen)
    out = cli("pilot", "calibrate", "ui-pilot", "--signals", "vis_attn,clip_score", "--folds", "3", check=True).stdout
    assert "succeeded" in out and f"labels {usable}," in out and f"samples_scored {len(complete)}," in out
    stored = dict(lake.fetchall("SELECT subject_id, value FROM scores WHERE metric = 'grounded_p' AND model_id = 'pilot:ui-pilot'"))
    assert set(stored) == set(complete) and 0 < len(stored) < lake.scalar("SELECT count(*) FROM samples")
    _, labels = pilot_results.pilot_labels(engine, "ui-pilot")
    expected = calibration.probabilities(calibration.fit(features, labels, ["vis_attn", "clip_score"], folds=3), complete)
    assert stored == pytest.approx(expected)
    assert all(0.0 < v < 1.0 for v in stored.values())
    # fitted again: replaced, not added to
    cli("pilot", "calibrate", "ui-pilot", "--signals", "vis_attn,clip_score", "--folds", "3", check=True)
    assert lake.scalar("SELECT count(*) FROM scores WHERE metric = 'grounded_p'") == len(stored)
    kept = cli("filter", "save", "calibrated", "--where", "grounded_p >= 0.5", "--dry-run", check=True).stdout
    assert f"kept {sum(v >= 0.5 for v in stored.values())} of" in kept
    report = cli("pilot", "report", "ui-pilot", check=True).stdout
    assert "combined (5-fold CV)" in report and "logistic regression on" in report and "under 100" in report
    # a signal the pilot's models never stored is left out, and said; none stored at all: refused, with why
    partly = cli("pilot", "calibrate", "ui-pilot", "--signals", "vis_attn,vis_gain,clip_score", "--folds", "3", check=True).stdout
    assert "warning: left out, stored for no sample by the pilot's models: vis_gain" in partly
    assert "logistic regression on" in partly and "over vis_attn, clip_score:" in partly
    gone = cli("pilot", "calibrate", "ui-pilot", "--signals", "vis_gain,judge_yes")
    assert gone.returncode != 0 and "none of vis_gain, judge_yes is stored" in gone.stdout + gone.stderr
    # the Results tab shows the combined score, and an admin launches the job from there
    from db.app import jobs as jobs_db

    from .test_ui_pages import page, texts

    at = page("pilot", pilot_name="ui-pilot")
    assert not at.exception and "**The signals combined** (row *combined (5-fold CV)* above)" in texts(at)
    before = len([j for j in jobs_db.list_jobs(engine, limit=100) if j.kind == "calibrate"])
    at.button(key="pilot_calibrate").click().run()
    assert any(s.value.startswith("launched calibrate job") for s in at.success)
    assert len([j for j in jobs_db.list_jobs(engine, limit=100) if j.kind == "calibrate"]) == before + 1
