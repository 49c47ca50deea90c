"""The pilot study: statistics held to scikit-learn's, the stratified draw, labels from several annotators,
CSV export and an all-or-nothing CSV import."""
from __future__ import annotations

import collections
import csv
import io
import json
import random

import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from config.settings import load_settings
from curation import pilot_results
from curation.pilot_stats import accuracy, auc, best_thresholds, cohen_kappa, consensus, evaluate, roc_curve
from db.app import pilots
from db.app.engine import write_engine

from .curation_store import CLIP_MODEL, VIS_MODEL, add_scores, ingest_and_generate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_and_kappa_equal_scikit_learn(seed):
    rng = random.Random(seed)
    n = 200
    truth = [int(rng.random() < 0.6) for _ in range(n)]
    # informative scores, rounded so that ties occur
    scores = [round(rng.gauss(0.6 if t else 0.4, 0.2), 2) for t in truth]
    fpr, tpr, thresholds = roc_curve(scores, truth)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(truth, scores, drop_intermediate=False)
    assert fpr == pytest.approx(list(sk_fpr)) and tpr == pytest.approx(list(sk_tpr))
    assert thresholds[1:] == pytest.approx(list(sk_thr[1:]))
    assert auc(fpr, tpr) == pytest.approx(roc_auc_score(truth, scores))
    best = best_thresholds(scores, truth)
    assert best["accuracy_value"] == pytest.approx(max(accuracy(scores, truth, t) for t in set(scores)))
    j = [t - f for f, t in zip(sk_fpr, sk_tpr)]
    assert best["youden_j"] == pytest.approx(max(j))
    labels = ["grounded", "not_grounded"]
    a = [rng.choice(labels) for _ in range(n)]
    b = [x if rng.random() < 0.7 else rng.choice(labels) for x in a]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    three = ["grounded", "not_grounded", "skip"]
    c = [rng.choice(three) for _ in range(n)]
    d = [x if rng.random() < 0.5 else rng.choice(three) for x in c]
    assert cohen_kappa(c, d) == pytest.approx(cohen_kappa_score(c, d))


def test_consensus_and_evaluate_report():
    assert consensus(["grounded", "grounded", "not_grounded"]) == "grounded"
    assert consensus(["grounded", "not_grounded"]) is None and consensus(["skip"]) is None
    labels = {f"s{k}": {"ann": "grounded" if k % 3 else "not_grounded", "bob": "grounded" if k % 4 else "not_grounded"} for k in range(60)}
    vis = {f"s{k}": (0.9 if k % 3 else 0.1) + k / 1000 for k in range(60)}  # separates ann's labels perfectly
    clip = {f"s{k}": float(k % 7) for k in range(60)}
    report = evaluate({"vis_attn": vis, "clip_score": clip}, labels, current_predictions={"vis_attn": ("vis_attn >= 0.5", {s: v >= 0.5 for s, v in vis.items()})})
    truth = {s: 1 for s, by in labels.items() if consensus(list(by.values())) == "grounded"}
    decided = [s for s, by in labels.items() if consensus(list(by.values())) is not None]
    assert report.labelled == len(decided) and report.grounded == len(truth)
    assert report.scores["vis_attn"].current_threshold == "vis_attn >= 0.5"
    assert report.scores["vis_attn"].current_accuracy == pytest.approx(sum((vis[s] >= 0.5) == (s in truth) for s in decided) / len(decided))
    assert report.kappa["ann|bob"] == pytest.approx(cohen_kappa_score([labels[s]["ann"] for s in labels], [labels[s]["bob"] for s in labels]))
    vis_best, clip_best = report.scores["vis_attn"].best_accuracy, report.scores["clip_score"].best_accuracy
    assert report.relative_improvement == pytest.approx((vis_best - clip_best) / clip_best)


@pytest.fixture
def pilot_store(home, tmp_path):
    lake = ingest_and_generate(tmp_path / "demo")
    add_scores(lake)
    return lake, write_engine(load_settings().app_url)


def test_pilot_draw_is_stratified_seeded_and_labels_import_all_or_nothing(pilot_store, tmp_path):
    lake, engine = pilot_store
    scored = lake.fetchall("SELECT s.task, v.value FROM samples s JOIN scores v ON v.subject_id = s.sample_id AND v.metric = 'vis_attn' AND v.value IS NOT NULL")
    rows = pilots.draw(lake, size=60, seed=1, vis_model=VIS_MODEL, clip_model=CLIP_MODEL)
    assert len(rows) == 60 < len(scored) and len({r["sample_id"] for r in rows}) == 60
    assert rows == pilots.draw(lake, size=60, seed=1, vis_model=VIS_MODEL, clip_model=CLIP_MODEL)
    assert {r["sample_id"] for r in rows} != {r["sample_id"] for r in pilots.draw(lake, size=60, seed=2, vis_model=VIS_MODEL, clip_model=CLIP_MODEL)}
    # evenly over tasks: no task gets one more while another with spare samples has fewer
    everything = pilots.draw(lake, size=10_000, seed=1, vis_model=VIS_MODEL)
    available = collections.Counter(r["task"] for r in everything)
    taken = collections.Counter(r["task"] for r in rows)
    level = min(taken[t] for t in available if taken[t] < available[t])
    assert all(taken[t] in (min(available[t], level), min(available[t], level + 1)) for t in available), (taken, available)
    assert len(set(available.values())) > 1  # the tasks have unequal numbers of scored samples (6 to 41 here)
    # and within a task round-robin over its deciles: none gets a second while one with spare samples has none
    for task in available:
        spare = collections.Counter(r["decile"] for r in everything if r["task"] == task)
        got = collections.Counter(r["decile"] for r in rows if r["task"] == task)
        low = min((got[d] for d in spare if got[d] < spare[d]), default=None)
        if low is not None:
            assert all(got[d] in (min(spare[d], low), min(spare[d], low + 1)) for d in spare), (task, got, spare)
    assert len({r["decile"] for r in rows}) == 10 and len({r["task"] for r in rows}) == len({t for t, _ in scored})
    assert sum(r["clip_score"] is not None for r in rows) >= 50  # CLIPScore of the sample's item, where there is one

    pid = pilots.create(engine, name="p", rows=rows, size=60, seed=1, config={"vis_model": VIS_MODEL}, created_by="tester")
    with pytest.raises(pilots.PilotError, match="exists already"):
        pilots.create(engine, name="p", rows=rows, size=60, seed=1, config={}, created_by="tester")
    ids = [r["sample_id"] for r in rows]
    pilots.set_label(engine, pid, ids[0], "ann", "grounded")
    pilots.set_label(engine, pid, ids[0], "ann", "not_grounded", ["dented"], "box looks fine")  # replaces
    pilots.set_label(engine, pid, ids[0], "bob", "grounded")
    with pytest.raises(pilots.PilotError, match="not in this pilot"):
        pilots.set_label(engine, pid, "nope", "ann", "grounded")
    with pytest.raises(pilots.PilotError, match="a label is one of"):
        pilots.set_label(engine, pid, ids[1], "ann", "maybe")
    pilot = pilots.get(engine, "p")
    exported = pilots.export_csv(engine, pilot)
    parsed = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["annotator"], r["label"], r["ungrounded_words"], r["note"]) for r in parsed] == [
        ("ann", "not_grounded", '["dented"]', "box looks fine"), ("bob", "grounded", "[]", "")]

    before = pilots.export_csv(engine, pilot)
    bad_files = {
        "unknown sample": ("sample_id,label,annotator\n" + f"{ids[1]},grounded,cy\nnot-a-sample,grounded,cy\n", "row 3: sample 'not-a-sample' is not in pilot 'p'"),
        "bad value": ("sample_id,label,annotator\n" + f"{ids[1]},grounded,cy\n{ids[2]},yes,cy\n", "row 3: label 'yes' is not one of"),
        "bad words": ("sample_id,label,annotator,ungrounded_words\n" + f"{ids[1]},not_grounded,cy,dented\n", "ungrounded_words must be a JSON list"),
        "no annotator": ("sample_id,label\n" + f"{ids[1]},grounded\n", "no annotator"),
        "missing column": ("id,label\nx,grounded\n", "needs the column\\(s\\) sample_id"),
        "other pilot": ("pilot,sample_id,label,annotator\n" + f"q,{ids[1]},grounded,cy\n", "pilot 'q' is not 'p'"),
    }
    for name, (text, message) in bad_files.items():
        with pytest.raises(pilots.PilotError, match=message):
            pilots.import_csv(engine, pilot, text)
        assert pilots.export_csv(engine, pilot) == before, name  # nothing changed
    good = "sample_id,label,ungrounded_words,note\n" + "".join(f"{sid},{'grounded' if k % 2 else 'not_grounded'},[],\n" for k, sid in enumerate(ids[:20]))
    result = pilots.import_csv(engine, pilot, good, default_annotator="cy")
    assert result.written == 20 and result.annotators == ["cy"]
    # the export re-imports to the same labels
    again = pilots.export_csv(engine, pilot)
    pilots.import_csv(engine, pilot, again)
    assert pilots.export_csv(engine, pilot) == again
    assert pilots.list_pilots(engine) == [("p", 60, 20, 3)]


def test_labelling_loop_reads_answers_and_prints_customer_text_safely():
    from vitpro.commands.pilot import _clean, _one_line, _parse_answer

    assert _parse_answer("g\n") == ("grounded", [], None)
    assert _parse_answer("n dented, lid // box is fine\n") == ("not_grounded", ["dented", "lid"], "box is fine")
    assert _parse_answer("s") == ("skip", [], None) and _parse_answer("B") == ("back", [], None)
    assert _parse_answer("whatever")[0] == "help" and _parse_answer("")[0] == "help"
    hostile = "Refund\x1b[2J\x1b]0;owned\x07 now\r\nplease"
    assert "\x1b" not in _clean(hostile) and "\x07" not in _clean(hostile) and "\r" not in _clean(hostile)
    assert _one_line(hostile) == "Refund [2J ]0;owned now please"


def test_export_before_any_label_writes_the_sample_ids_to_label_by_csv(pilot_store, tmp_path, cli):
    lake, engine = pilot_store
    rows = pilots.draw_and_create(lake, engine, name="p", size=12, seed=4, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, created_by="tester")
    out = cli("pilot", "export", "p", "--out", str(tmp_path / "todo.csv"), check=True)
    assert "wrote 12 sample id(s) with blank labels" in out.stderr and "vitpro pilot import p" in out.stderr
    template = list(csv.DictReader(io.StringIO((tmp_path / "todo.csv").read_text())))
    assert [r["sample_id"] for r in template] == [r["sample_id"] for r in rows]  # in labelling order
    assert {(r["pilot"], r["label"], r["annotator"]) for r in template} == {("p", "", "")}
    # label a few in the file, leave the rest blank, bring it back
    for k, r in enumerate(template[:5]):
        r["label"], r["annotator"] = ("grounded" if k % 2 else "not_grounded"), "dana"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(pilots.CSV_COLUMNS))
    writer.writeheader()
    writer.writerows(template)
    (tmp_path / "done.csv").write_text(buf.getvalue())
    imported = cli("pilot", "import", "p", str(tmp_path / "done.csv"), check=True).stdout
    assert "imported 5 label(s) from dana into pilot 'p'; 7 row(s) with no label left out" in imported
    pilot = pilots.get(engine, "p")
    assert {(lab.sample_id, lab.label) for lab in pilots.labels(engine, pilot.id)} == {
        (r["sample_id"], "grounded" if k % 2 else "not_grounded") for k, r in enumerate(template[:5])}
    # once labelled, the export is the labels again
    assert len(list(csv.DictReader(io.StringIO(pilots.export_csv(engine, pilot))))) == 5
    # a blank label on a sample that is not in the pilot is still refused
    with pytest.raises(pilots.PilotError, match="not in pilot 'p'"):
        pilots.import_csv(engine, pilot, "sample_id,label,annotator\nnot-a-sample,,dana\n")


# ---- second pass: word groups, intervals, disagreements, undo, adding samples ---------------------------
ATTRIBUTE_ANSWER = ('{"ProductType": "Body Lotion", "Name": "Pinecrest Fresh Mint Body Lotion 300 ml", "Brand": "Pinecrest", "Color": "Red", '
                    '"Count": "1", "Size": "300 ml", "TargetGender": "Unisex"}')  # an attribute_extraction answer of the demo store
COMPARISON_ANSWER = ('Photo [1] shows the delivered item, which the customer describes as: "My order [UCI] from Sunvale - the Citrus '
                     'Conditioner came badly dented, the package is crushed in the middle."; photo [2] shows it as listed.')  # its longest


def test_answer_groups_give_one_choice_per_json_value_and_distinct_words():
    from curation.pilot_words import answer_groups, group_word

    assert answer_groups(ATTRIBUTE_ANSWER) == ["ProductType: Body Lotion", "Name: Pinecrest Fresh Mint Body Lotion 300 ml", "Brand: Pinecrest",
                                               "Color: Red", "Count: 1", "Size: 300 ml", "TargetGender: Unisex"]
    prose = answer_groups(COMPARISON_ANSWER)
    assert len(prose) == len(set(prose)) == 35  # every position its own choice; "-" is no word
    assert prose[:4] == ["Photo", "1", "shows", "the"] and "the (5)" in prose and "shows (2)" in prose and "UCI" in prose and "middle" in prose
    assert not any(ch in "".join(prose) for ch in '[]":;,')
    long = " ".join(f"word{k % 40}" for k in range(600)) + "."
    groups = answer_groups(long)
    assert len(groups) == 600 == len(set(groups)) and groups[40] == "word0 (2)" and groups[-1] == "word39 (15)"
    nested = '{"Size": {"Width": "10 cm", "Height": 5}, "Colors": ["Red", "Blue"], "Note": "two\\nlines", "Boxed": true, "Lid": null, "Tags": []}'
    assert answer_groups(nested) == ["Size.Width: 10 cm", "Size.Height: 5", "Colors[1]: Red", "Colors[2]: Blue", "Note: two lines",
                                     "Boxed: true", "Lid: null", "Tags: []"]
    assert answer_groups('{"a.b": 1, "a": {"b": 1}}') == ["a.b: 1", "a.b: 1 (2)"]  # two paths that read the same stay distinct
    assert answer_groups("Yes.") == ["Yes"] and answer_groups("1") == ["1"] and answer_groups('{"broken": ') == ["broken"]
    assert answer_groups("") == [] and answer_groups(None) == []
    assert group_word("the (5)") == "the" and group_word("Color: Red") == "Color: Red" and group_word("Photo") == "Photo"


def test_wilson_and_hanley_mcneil_intervals():
    from scipy.stats import binomtest

    from curation.pilot_stats import auc_interval, wilson_interval

    for k, n in [(8, 10), (0, 5), (5, 5), (37, 50), (150, 192)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook example
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
    # Hanley & McNeil (1982) by hand: A = 0.8, 50 + 50: Q1 = 2/3, Q2 = 0.7111, SE = 0.04450
    assert auc_interval(0.8, 50, 50) == pytest.approx((0.8 - 1.959964 * 0.0445024, 0.8 + 1.959964 * 0.0445024), abs=1e-5)
    assert auc_interval(0.99, 5, 5)[1] == 1.0  # clipped
    # and its standard error is what resampling the labels gives (scikit-learn's AUC, a fixed seed)
    rng = random.Random(7)
    truth = [int(rng.random() < 0.5) for _ in range(200)]
    scores = [rng.gauss(0.6 if t else 0.4, 0.2) for t in truth]
    area = roc_auc_score(truth, scores)
    boot = []
    for _ in range(400):
        idx = [rng.randrange(200) for _ in range(200)]
        t = [truth[i] for i in idx]
        if 0 < sum(t) < len(t):
            boot.append(roc_auc_score(t, [scores[i] for i in idx]))
    mean = sum(boot) / len(boot)
    boot_se = (sum((b - mean) ** 2 for b in boot) / (len(boot) - 1)) ** 0.5
    lo, hi = auc_interval(area, sum(truth), 200 - sum(truth))
    assert (hi - lo) / (2 * 1.959964) == pytest.approx(boot_se, rel=0.2)


def test_evaluate_counts_ties_lets_verdicts_replace_labels_and_gives_intervals():
    labels = {f"s{k}": {"ann": "grounded" if k % 2 else "not_grounded"} for k in range(40)}
    labels["s0"]["bob"] = "grounded"  # ann said not grounded: a tie
    labels["s1"]["bob"] = "not_grounded"  # a tie too
    labels["s2"] = {"ann": "skip", "bob": "skip"}
    vis = {f"s{k}": k / 40 for k in range(40)}
    report = evaluate({"vis_attn": vis}, labels)
    assert (report.labelled, report.without_majority, report.settled, report.skipped_only) == (37, 2, 0, 1)
    settled = evaluate({"vis_attn": vis}, labels, settled={"s0": "grounded", "s3": "not_grounded"})  # s3 had a majority: the verdict wins
    assert (settled.labelled, settled.without_majority, settled.settled) == (38, 1, 2)
    assert settled.grounded == report.grounded + 1 - 1  # s0 gained as grounded, s3 lost from grounded
    r = settled.scores["vis_attn"]
    assert r.auc_ci[0] < r.auc < r.auc_ci[1] and r.best_accuracy_ci[0] < r.best_accuracy <= r.best_accuracy_ci[1]
    from curation.pilot_stats import auc_interval, wilson_interval
    assert r.auc_ci == auc_interval(r.auc, settled.grounded, settled.not_grounded)
    assert r.best_accuracy_ci == wilson_interval(round(r.best_accuracy * r.n), r.n)


def test_clear_undo_adjudicate_and_add_samples(pilot_store):
    lake, engine = pilot_store
    rows = pilots.draw_and_create(lake, engine, name="p2", size=10, seed=3, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, created_by="tester")
    pid = pilots.get(engine, "p2").id
    ids = [r["sample_id"] for r in rows]
    # clear and undo
    assert pilots.set_label(engine, pid, ids[0], "ann", "grounded") is None
    previous = pilots.set_label(engine, pid, ids[0], "ann", "not_grounded", ["Color: Red"], "lid")
    assert previous == pilots.LabelState("grounded", (), None)
    undo = pilots.set_label(engine, pid, ids[0], "ann", "skip")
    pilots.restore_label(engine, pid, ids[0], "ann", undo)  # back to not grounded with its words and note
    (row,) = pilots.labels(engine, pid, "ann")
    assert (row.label, row.ungrounded_words, row.note) == ("not_grounded", ["Color: Red"], "lid")
    first = pilots.set_label(engine, pid, ids[1], "ann", "grounded")
    pilots.restore_label(engine, pid, ids[1], "ann", first)  # undoing a first label leaves none
    assert [r.sample_id for r in pilots.labels(engine, pid, "ann")] == [ids[0]]
    pilots.set_label(engine, pid, ids[0], "bob", "grounded")
    assert pilots.clear_label(engine, pid, ids[0], "ann") is True and pilots.clear_label(engine, pid, ids[0], "ann") is False
    assert [(r.annotator, r.label) for r in pilots.labels(engine, pid)] == [("bob", "grounded")]  # bob's label untouched
    # disagreements and verdicts
    pilots.set_label(engine, pid, ids[0], "ann", "not_grounded", ["dented"])
    for k, sid in enumerate(ids[2:6]):
        pilots.set_label(engine, pid, sid, "ann", "grounded")
        pilots.set_label(engine, pid, sid, "bob", "grounded" if k else "skip")
    pilots.set_label(engine, pid, ids[6], "ann", "grounded")
    pilots.set_label(engine, pid, ids[6], "bob", "not_grounded")
    pilots.set_label(engine, pid, ids[6], "cy", "not_grounded")  # a 2-1 majority: a disagreement with a majority
    found = pilot_results.disagreements(engine, pid)
    assert [(d.sample_id, d.majority, sorted(d.labels)) for d in found] == [(ids[0], None, ["ann", "bob"]), (ids[6], "not_grounded", ["ann", "bob", "cy"])]
    assert found[0].labels["ann"].ungrounded_words == ["dented"] and found[0].settled is None
    before = pilot_results.results(lake, engine, "p2").report
    assert (before.without_majority, before.settled) == (1, 0)
    pilots.adjudicate(engine, pid, ids[0], "grounded", "admin")
    pilots.adjudicate(engine, pid, ids[0], "not_grounded", "admin", "the lid is dented")  # changed
    verdict = pilots.adjudications(engine, pid)[ids[0]]
    assert (verdict.label, verdict.settled_by, verdict.note) == ("not_grounded", "admin", "the lid is dented")
    assert pilot_results.disagreements(engine, pid)[0].settled.label == "not_grounded"
    after = pilot_results.results(lake, engine, "p2").report
    assert (after.without_majority, after.settled, after.labelled, after.not_grounded) == (0, 1, before.labelled + 1, before.not_grounded + 1)
    with pytest.raises(pilots.PilotError, match="a verdict is one of grounded, not_grounded"):
        pilots.adjudicate(engine, pid, ids[0], "skip", "admin")
    with pytest.raises(pilots.PilotError, match="not in this pilot"):
        pilots.adjudicate(engine, pid, "nope", "grounded", "admin")
    assert pilots.unsettle(engine, pid, ids[0]) is True and pilots.adjudications(engine, pid) == {}
    # add samples: appended, tasks and scores from the lake, unknown ids refuse the whole request
    others = [sid for (sid,) in lake.fetchall("SELECT sample_id FROM samples ORDER BY sample_id") if sid not in ids][:3]
    with pytest.raises(pilots.PilotError, match=r"nothing added to pilot 'p2': 1 sample id\(s\) are not in the store: not-a-sample"):
        pilots.add_samples(lake, engine, "p2", [others[0], "not-a-sample"])
    assert len(pilots.samples(engine, pid)) == 10
    assert pilots.add_samples(lake, engine, "p2", [others[0], ids[0], others[1], others[0]]) == 2  # ids[0] is in it already
    assert pilots.add_samples(lake, engine, "p2", [others[1], others[2]]) == 1 and pilots.add_samples(lake, engine, "p2", []) == 0
    chosen = pilots.samples(engine, pid)
    assert [x.sample_id for x in chosen] == ids + others and [x.position for x in chosen] == list(range(13))
    truth = dict(lake.fetchall(f"SELECT sample_id, task FROM samples WHERE sample_id IN ({', '.join('?' for _ in others)})", others))
    assert [x.task for x in chosen[10:]] == [truth[sid] for sid in others]
    vis = dict(lake.fetchall("SELECT subject_id, value FROM scores WHERE metric = 'vis_attn' AND model_id = ? AND segment = 'answer'", [VIS_MODEL]))
    assert [x.vis_attn for x in chosen[10:]] == [vis.get(sid) for sid in others]
    drawn = {r["sample_id"]: r["decile"] for r in pilots.draw(lake, size=10_000, seed=0, vis_model=VIS_MODEL)}
    assert [x.decile for x in chosen[10:]] == [drawn.get(sid) for sid in others]  # the same deciles the draw uses
    assert pilots.list_pilots(engine)[-1][:2] == ("p2", 13)
    with pytest.raises(pilots.PilotError, match="no pilot 'nope'"):
        pilots.add_samples(lake, engine, "nope", others)


def test_cli_report_counts_settled_and_without_majority_with_intervals_and_adjudicate(pilot_store, cli):
    lake, engine = pilot_store
    rows = pilots.draw_and_create(lake, engine, name="p", size=12, seed=5, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, created_by="tester")
    pid = pilots.get(engine, "p").id
    ids = [r["sample_id"] for r in rows]
    for k, sid in enumerate(ids):
        pilots.set_label(engine, pid, sid, "ann", "grounded" if k % 2 else "not_grounded", ["lid"] if k == 0 else [])
    pilots.set_label(engine, pid, ids[0], "bob", "grounded")  # a tie
    out = cli("pilot", "report", "p", check=True).stdout
    assert "11 with a label" in out and "0 settled by an adjudicator, 1 without a majority (left out: vitpro pilot disagreements p)" in out
    assert "results at n=11 are not meaningful" in out and "Wilson for accuracies, Hanley-McNeil (1982) for AUC" in out
    report = pilot_results_report(lake, engine)
    r = report.scores["vis_attn"]
    assert f"{r.auc:.3f} [{r.auc_ci[0]:.3f}-{r.auc_ci[1]:.3f}]" in out
    assert f"{r.best_accuracy:.3f} [{r.best_accuracy_ci[0]:.3f}-{r.best_accuracy_ci[1]:.3f}]" in out
    listed = cli("pilot", "disagreements", "p", check=True).stdout
    assert ids[0] in listed and "ann: not_grounded (lid); bob: grounded" in listed and ids[1] not in listed
    settled = cli("pilot", "adjudicate", "p", ids[0], "grounded", "--note", "lid fine", check=True).stdout
    assert f"pilot 'p': sample {ids[0]} settled as grounded" in settled
    again = cli("pilot", "adjudicate", "p", ids[0], "not_grounded", check=True).stdout
    assert "(was grounded)" in again and pilots.adjudications(engine, pid)[ids[0]].label == "not_grounded"
    out = cli("pilot", "report", "p", check=True).stdout
    assert "12 with a label" in out and "1 settled by an adjudicator, 0 without a majority (left out)" in out
    as_json = json.loads(cli("pilot", "report", "p", "--json", check=True).stdout)
    assert (as_json["settled"], as_json["without_majority"]) == (1, 0) and len(as_json["scores"]["vis_attn"]["auc_ci"]) == 2
    bad = cli("pilot", "adjudicate", "p", ids[0], "skip")
    assert bad.returncode == 2 and "'skip' is not one of 'grounded', 'not_grounded'" in bad.stderr
    unknown = cli("pilot", "adjudicate", "p", "not-a-sample", "grounded")
    assert unknown.returncode == 2 and "sample not-a-sample is not in this pilot 'p'" in unknown.stderr


def test_cli_report_says_too_few_rather_than_a_point_interval(pilot_store, cli):
    """At n = 4 the AUC's interval collapses to "1.000-1.000" when the labels split cleanly: said as too few."""
    lake, engine = pilot_store
    rows = pilots.draw_and_create(lake, engine, name="tiny", size=4, seed=1, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, created_by="tester")
    pid = pilots.get(engine, "tiny").id
    by_score = sorted(rows, key=lambda r: r["vis_attn"])
    for k, r in enumerate(by_score):  # the two highest grounded: AUC 1
        pilots.set_label(engine, pid, r["sample_id"], "ann", "grounded" if k >= 2 else "not_grounded")
    out = cli("pilot", "report", "tiny", check=True).stdout
    assert "1.000 [too few (n=4)]" in out and "1.000-1.000" not in out


def pilot_results_report(lake, engine):
    from curation import pilot_results

    return pilot_results.results(lake, engine, "p").report
