"""Values of the evaluation metrics in trainer.metrics, checked by hand and against sklearn."""
from __future__ import annotations

import json
import math

import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from curation.verdicts import UNANSWERABLE, parse_yes_no
from trainer.metrics import (
    BinaryMetrics,
    attribute_exact_match,
    binary_metrics,
    normalise_value,
    parse_attributes,
    per_task_metrics,
    relative_to,
    yes_no_balance,
)

# --- parse_yes_no -----------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes.", "yes"),
        ("yes, it is", "yes"),
        ("No", "no"),
        ("YES!", "yes"),
        ("no.", "no"),
        ("Answer: Yes", "yes"),
        ("A: no", "no"),
        ("  yes\n", "yes"),
        ("Yes - the box is torn", "yes"),
        ("true", "yes"),
        ("False", "no"),
        ("Yes, it is damaged", "yes"),
        ("**Yes**", "yes"),
        ("**Answer:** No.", "no"),
        ("Ｙｅｓ", "yes"),  # full-width, folded by NFKC
        ("The answer is yes.", "yes"),
        ("It is not damaged, no.", "no"),
        ("No, there is no damage.", "no"),  # same verdict twice is not ambiguous
        ("Yes, no damage is visible apart from the dent.", "yes"),  # "no" as a determiner
        ("The answer is yes. No further details.", "yes"),  # only the first sentence is searched
        ("No, one corner is dented.", "no"),  # "No," then a clause: still the verdict
    ],
)
def test_parse_yes_no_accepts(text, expected):
    assert parse_yes_no(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "   ",
        "maybe",
        "Yes and no",
        "yes/no",
        "I don't know",
        "Yes. No.",
        "No, yes.",
        "Not damaged",  # "not" is not a verdict word
        "No idea.",  # the next word undoes the "no"
        "No one can tell",
        "There is no damage.",  # a "no" before a noun is a determiner, not a verdict
        "The answer is yes, not no.",
        "**",
        "Answer:",
    ],
)
def test_parse_yes_no_rejects(text):
    assert parse_yes_no(text) is None


def test_unparsed_answer_counts_as_wrong():
    preds = [parse_yes_no(t) for t in ["Yes.", "", "No"]]
    m = binary_metrics(["yes", "yes", "no"], preds)
    assert preds == ["yes", None, "no"]
    assert m.unparsed == 1
    assert m.accuracy == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(1 / 2)  # the "" on a yes-truth is a false negative


# --- binary_metrics ----------------------------------------------------------------

# 10 predictions. Per pair (truth, prediction):
#   yes/yes x3 -> TP=3     yes/no x1 -> FN     yes/None x1 -> FN (unparsed)   => FN=2
#   no/yes  x2 -> FP=2     no/no  x2 -> TN=2   no/None  x1 -> wrong, not a FP
# accuracy  = (TP+TN)/n = 5/10 = 0.5
# precision = TP/(TP+FP) = 3/5 = 0.6
# recall    = TP/(TP+FN) = 3/5 = 0.6
# f1        = 2*0.6*0.6/1.2 = 0.6
# yes_ratio = 5 "yes" predictions / 10 = 0.5; unparsed = 2
TRUTH = ["yes", "yes", "yes", "yes", "yes", "no", "no", "no", "no", "no"]
PRED = ["yes", "yes", "yes", "no", None, "yes", "yes", "no", "no", None]


def test_binary_metrics_hand_computed():
    m = binary_metrics(TRUTH, PRED)
    assert isinstance(m, BinaryMetrics)
    assert m.n == 10
    assert m.unparsed == 2
    assert m.accuracy == pytest.approx(0.5)
    assert m.precision == pytest.approx(0.6)
    assert m.recall == pytest.approx(0.6)
    assert m.f1 == pytest.approx(0.6)
    assert m.yes_ratio == pytest.approx(0.5)
    assert m.to_dict() == {
        "n": 10, "accuracy": m.accuracy, "precision": m.precision, "recall": m.recall,
        "f1": m.f1, "yes_ratio": m.yes_ratio, "unparsed": 2,
    }


def _sklearn(truth, pred):
    # None becomes a third label "none"; with three labels sklearn's binary average
    # refuses, so score only the "yes" class (average=None, labels=["yes"]), which is
    # the pos_label="yes" binary score.
    y = [p if p is not None else "none" for p in pred]
    kw = dict(labels=["yes"], average=None, zero_division=0)
    return (
        accuracy_score(truth, y),
        precision_score(truth, y, **kw)[0],
        recall_score(truth, y, **kw)[0],
        f1_score(truth, y, **kw)[0],
    )


def test_sklearn_helper_agrees_with_binary_pos_label():
    # Without None predictions the labels are binary, and the helper must equal pos_label="yes".
    truth, pred = ["yes", "yes", "no", "no", "yes"], ["yes", "no", "yes", "no", "yes"]
    assert _sklearn(truth, pred)[1:] == pytest.approx((
        precision_score(truth, pred, pos_label="yes"),
        recall_score(truth, pred, pos_label="yes"),
        f1_score(truth, pred, pos_label="yes"),
    ))


@pytest.mark.parametrize(
    "truth, pred",
    [
        (TRUTH, PRED),
        # asymmetric counts: TP=1, FP=3, FN=2 (one via None), TN=1 -> p=0.25, r=1/3
        (["yes", "yes", "yes", "no", "no", "no", "no"], ["yes", "no", None, "yes", "yes", "yes", "no"]),
        # no yes predictions at all -> precision 0 and f1 0
        (["yes", "no", "no"], ["no", None, "no"]),
    ],
)
def test_binary_metrics_matches_sklearn(truth, pred):
    m = binary_metrics(truth, pred)
    acc, p, r, f = _sklearn(truth, pred)
    assert (m.accuracy, m.precision, m.recall, m.f1) == pytest.approx((acc, p, r, f))


def test_binary_metrics_asymmetric_hand_values():
    m = binary_metrics(["yes", "yes", "yes", "no", "no", "no", "no"], ["yes", "no", None, "yes", "yes", "yes", "no"])
    assert m.accuracy == pytest.approx(2 / 7)
    assert m.precision == pytest.approx(1 / 4)
    assert m.recall == pytest.approx(1 / 3)
    assert m.f1 == pytest.approx(2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))
    assert m.yes_ratio == pytest.approx(4 / 7)


def test_binary_metrics_zero_division_and_empty():
    m = binary_metrics(["yes", "no"], ["no", "no"])
    assert m.precision == 0.0 and m.recall == 0.0 and m.f1 == 0.0
    empty = binary_metrics([], [])
    assert empty.to_dict() == {
        "n": 0, "accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0, "unparsed": 0,
    }
    assert not any(isinstance(v, float) and math.isnan(v) for v in empty.to_dict().values())


def test_binary_metrics_errors():
    with pytest.raises(ValueError):
        binary_metrics(["yes", "no"], ["yes"])
    with pytest.raises(ValueError):
        binary_metrics(["maybe"], ["yes"])


# --- per_task_metrics ----------------------------------------------------------------

def test_per_task_metrics():
    rows = [
        ("PM", "yes", "yes"), ("PM", "no", "yes"),                 # PM: 1/2, p=1/2, r=1
        ("AE", "yes", "yes"), ("AE", "no", "no"),                  # AE: 2/2
        ("DD", "yes", None), ("DD", "no", "no"), ("DD", "yes", "yes"),  # DD: 2/3, r=1/2
    ]
    res = per_task_metrics(rows)
    assert list(res) == ["AE", "DD", "PM", "overall"]
    assert res["AE"].accuracy == pytest.approx(1.0)
    assert res["DD"].accuracy == pytest.approx(2 / 3)
    assert res["DD"].recall == pytest.approx(1 / 2)
    assert res["DD"].unparsed == 1
    assert res["PM"].precision == pytest.approx(1 / 2)
    assert res["PM"].recall == pytest.approx(1.0)
    # overall pools the 7 rows: 5 correct; TP=3, FP=1, FN=1
    assert res["overall"].n == 7
    assert res["overall"].accuracy == pytest.approx(5 / 7)
    assert res["overall"].precision == pytest.approx(3 / 4)
    assert res["overall"].recall == pytest.approx(3 / 4)


# --- normalise_value -----------------------------------------------------------------

@pytest.mark.parametrize(
    "a, b",
    [
        ("250 ml", "250ml"),
        ("250ml", "250 ML"),
        ("  Red   Wine ", "red wine"),
        ('"Acme"', "acme"),
        ("Acme.", "ACME"),
        ("“Acme”", "acme"),
        ("ＡＣＭＥ", "acme"),  # NFKC
        ("1.5 L", "1.5l"),
        ("N/A", "unanswerable"),
        ("nan", "-"),
        ("none", "Unknown"),
        ("Not visible.", ""),
        (None, "unanswerable"),
        (" NA ", "Unanswerable"),
        (2, "2"),
    ],
)
def test_normalise_value_equal(a, b):
    assert normalise_value(a) == normalise_value(b)


def test_normalise_value_canonical_forms():
    assert normalise_value(" 250 ML ") == "250ml"
    assert normalise_value("n/a") == UNANSWERABLE
    assert normalise_value("") == UNANSWERABLE
    assert normalise_value("-5") == "-5"


@pytest.mark.parametrize("a, b", [("250 ml", "25 ml"), ("red", "dark red"), ("2", "2.5"), ("none", "no")])
def test_normalise_value_different(a, b):
    assert normalise_value(a) != normalise_value(b)


# --- parse_attributes ----------------------------------------------------------------

def test_parse_attributes_plain_and_fenced():
    assert parse_attributes('{"brand": "Acme", "count": 2}') == {"brand": "Acme", "count": "2"}
    fenced = 'Here you go:\n```json\n{"Brand": "Acme", "volume": "250 ml"}\n```\nHope it helps.'
    assert parse_attributes(fenced) == {"Brand": "Acme", "volume": "250 ml"}


def test_parse_attributes_skips_broken_json():
    text = 'First try {"brand": "Acme", oops} then {"brand": "Acme", "pack": 6}'
    assert parse_attributes(text) == {"brand": "Acme", "pack": "6"}


@pytest.mark.parametrize("text", [None, "", "no json here", '{"brand": "Acme"', "[1, 2]", "{broken}"])
def test_parse_attributes_none(text):
    assert parse_attributes(text) is None


# --- attribute_exact_match -------------------------------------------------------------

def test_attribute_exact_match_hand_computed():
    rows = [
        ({"brand": "Acme", "volume": "250 ml"}, {"Brand": "ACME", "volume": "250ml"}),  # 2/2
        ({"brand": "Zeta", "volume": "1 l"}, {"brand": "Zeta Co", "VOLUME": "1L"}),  # brand wrong
        ({"brand": "Acme", "colour": "unanswerable"}, {"brand": "Acme", "colour": "N/A"}),  # 2/2
        ({"brand": "Acme", "volume": "500 ml"}, None),  # unparsed: both wrong
        ({"colour": "red"}, {"color": "red"}),  # missing key: wrong
    ]
    res = attribute_exact_match(rows)
    assert list(res) == ["brand", "colour", "volume", "overall"]
    # brand: rows 1,2,3,4 -> correct in 1 and 3
    assert res["brand"] == {"n": 4, "correct": 2, "accuracy": 0.5}
    # colour: rows 3,5 -> correct in 3
    assert res["colour"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    # volume: rows 1,2,4 -> correct in 1,2
    assert res["volume"]["n"] == 3 and res["volume"]["correct"] == 2
    assert res["volume"]["accuracy"] == pytest.approx(2 / 3)
    # overall: 9 values, 5 correct
    assert res["overall"]["n"] == 9 and res["overall"]["correct"] == 5
    assert res["overall"]["accuracy"] == pytest.approx(5 / 9)


def test_attribute_exact_match_empty():
    assert attribute_exact_match([]) == {"overall": {"n": 0, "correct": 0, "accuracy": 0.0}}


# --- relative_to -----------------------------------------------------------------------

def test_relative_to():
    res = relative_to({"AE": 0.853, "DD": 0.70, "PM": 0.612, "extra": 1.0}, {"AE": 0.60, "DD": 0.70, "PM": 0.70, "gone": 0.5})
    assert set(res) == {"AE", "DD", "PM"}
    assert res["AE"] == pytest.approx(25.3)
    assert res["DD"] == pytest.approx(0.0)
    assert res["PM"] == pytest.approx(-8.8)


# --- yes_no_balance ----------------------------------------------------------------------

ROWS = [{"id": i, "label": "yes" if i % 3 else "no"} for i in range(30)]  # 20 yes, 10 no


def test_yes_no_balance_equal_counts_and_order():
    out = yes_no_balance(ROWS, seed=1)
    labels = [r["label"] for r in out]
    assert labels.count("yes") == labels.count("no") == 10
    ids = [r["id"] for r in out]
    assert ids == sorted(ids)  # original order kept
    assert all(r in ROWS for r in out)
    assert [r["id"] for r in out if r["label"] == "no"] == list(range(0, 30, 3))  # smaller side kept whole


def test_yes_no_balance_deterministic():
    assert yes_no_balance(ROWS, seed=7) == yes_no_balance(ROWS, seed=7)
    picks = {tuple(r["id"] for r in yes_no_balance(ROWS, seed=s)) for s in range(5)}
    assert len(picks) > 1  # the seed actually drives the sample


def test_yes_no_balance_custom_key_and_edge_cases():
    rows = [("a", "no"), ("b", "no"), ("c", "yes")]
    out = yes_no_balance(rows, key=lambda r: r[1], seed=0)
    assert len(out) == 2 and ("c", "yes") in out
    assert sorted(r[1] for r in out) == ["no", "yes"]
    assert [rows.index(r) for r in out] == sorted(rows.index(r) for r in out)
    assert yes_no_balance([("x", "yes")], key=lambda r: r[1]) == []
    with pytest.raises(ValueError):
        yes_no_balance([{"label": "maybe"}])


# --- one reading of an answer's words, in generation and in evaluation --------------------------

# answer -> its verdict: the label generation gives a generated pair, and what evaluation reads from a prediction
VERDICTS = {"Yes.": "yes", "No, it is torn.": "no", "**No**": "no", "True": "yes", "The answer is yes.": "yes",
            "It is not damaged, no.": "no", "Yes, no damage is visible.": "yes",
            "No idea": None, "No doubt about it": None, "Yes and no": None, "Yes/no": None, "Not damaged.": None,
            "The jar has no label.": None, "Now it's leaking": None, "Nope": None}


def test_generation_labels_a_yes_no_answer_as_evaluation_reads_it():
    from curation.generation.parse import validate
    from trainer.benchmarks import EvalItem
    from trainer.evaluate import Prediction, score_objective

    for text, verdict in VERDICTS.items():
        [pair], _ = validate("damage_detection", [(f"Is it damaged ({text})?", text)])
        assert (pair.label, pair.answer_format == "yes_no") == (verdict, verdict is not None), text
        item = EvalItem("i", "DD", "Is it damaged?", verdict or "yes", [], [], None, "p")
        scored = score_objective([Prediction(item, text, 0.0)])["DD"]
        assert (scored["unparsed"], scored["accuracy"]) == ((0, 1.0) if verdict else (1, 0.0)), text


# every way catalogue cells and answers say "no value"
NO_VALUE = ["Unanswerable", "unanswerable", "N/A", "n/a", "NA", "none", "null", "nan", "unknown", "Unknown", "not visible", "Not visible", "-", "", "  "]


def test_one_word_and_one_rule_for_no_value_in_generation_and_evaluation():
    from curation.generation.facts import Fact, complete_attributes, item_facts
    from curation.generation.parse import normalise_attributes

    # the word generation writes for an empty value is the one evaluation's normal form gives every spelling
    written = json.loads(normalise_attributes('{"Color": ""}')[0])["Color"]
    assert written == "Unanswerable"
    for text in NO_VALUE:
        assert normalise_value(text) == written, text
        # generation treats each as no value: a catalogue cell holding it states nothing, and an LLM's answer
        # giving it for a value the item's fields state is filled in from the fields
        assert item_facts(title=None, attributes={"Color": text}) == {}, text
        red = Fact("Color", "Red", "attributes.Color", "Red")
        assert complete_attributes({"Color": text}, {"Color": red})[0] == {"Color": "Red"}, text
