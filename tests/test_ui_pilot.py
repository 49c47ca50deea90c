"""The Pilot page's second pass under Streamlit's AppTest on a real store: word chips that wrap (one per
JSON value), undo and clear of a label, the results' small-n warning and intervals, the disagreements an
admin settles, and what annotators do not see."""
from __future__ import annotations

from sqlalchemy.orm import Session

from curation.pilot_words import answer_groups
from db.app import pilots
from db.app.models import Pilot, PilotSample

from .curation_store import CLIP_MODEL, VIS_MODEL
from .test_ui_pages import ADMIN, ANNA, page, texts, ui_store  # noqa: F401  (ui_store: the fixture, module-scoped here)


def _pilot(lake, engine, name: str, sample_ids: list[str]) -> int:
    """A pilot of exactly these samples (the page opens the last one; tests name theirs in the state)."""
    pid = pilots.create(engine, name=name, rows=[{"sample_id": sample_ids[0], "task": "seed", "decile": None, "vis_attn": None, "clip_score": None}],
                        size=1, seed=0, config={"vis_model": VIS_MODEL, "clip_model": CLIP_MODEL, "segment": "answer"}, created_by="admin")
    with Session(engine) as s, s.begin():  # create() needs a row; add_samples gives every one its real task and scores
        s.query(PilotSample).filter_by(pilot_id=pid).delete()
        s.get(Pilot, pid).size = 0
    assert pilots.add_samples(lake, engine, name, sample_ids) == len(sample_ids)
    return pid


def _scored(lake) -> list[tuple[str, str]]:
    return lake.fetchall("SELECT x.sample_id, x.answer FROM samples x JOIN scores v ON v.subject_id = x.sample_id AND v.metric = 'vis_attn' "
                         "AND v.model_id = ? AND v.value IS NOT NULL ORDER BY x.sample_id", [VIS_MODEL])


def test_annotators_see_neither_the_create_form_nor_the_adjudication(ui_store):
    anna = page("pilot", who=ANNA)
    assert not anna.exception
    assert not [b for b in anna.button if b.label == "Create pilot"] and "pilot_new_name" not in [t.key for t in anna.text_input]
    assert [t.label for t in anna.tabs] == ["Label", "Results"]
    admin = page("pilot")
    assert [b for b in admin.button if b.label == "Create pilot"] and [t.label for t in admin.tabs] == ["Label", "Results", "Adjudicate"]


def test_word_chips_wrap_one_per_json_value_and_are_saved_as_marked(ui_store):
    home, lake, engine = ui_store
    scored = _scored(lake)
    json_sid, json_answer = next((sid, a) for sid, a in scored if a.startswith("{"))
    long_sid, long_answer = max(scored, key=lambda r: len(r[1].split()))
    pid = _pilot(lake, engine, "chips", [json_sid, long_sid])
    at = page("pilot", who=ANNA, pilot_name="chips")
    chips = at.button_group[0]
    assert chips.proto.wrap is True  # directly in a column st.pills would keep one scrolling row
    assert chips.options == answer_groups(json_answer) and all(": " in o and "{" not in o for o in chips.options)
    color = next(o for o in chips.options if o.startswith("Color: "))
    chips.select(color).run()
    at.button(key="pilot_not_grounded").click().run()
    (row,) = pilots.labels(engine, pid, "anna")
    assert (row.sample_id, row.label, row.ungrounded_words) == (json_sid, "not_grounded", [color])
    chips = at.button_group[0]  # now the long prose answer: every word position a chip of its own
    assert chips.options == answer_groups(long_answer) and len(chips.options) == len(set(chips.options)) >= 25
    repeated = next(o for o in chips.options if o.endswith(" (2)"))
    chips.select(repeated).run()
    at.button(key="pilot_not_grounded").click().run()
    assert {r.sample_id: r.ungrounded_words for r in pilots.labels(engine, pid, "anna")}[long_sid] == [repeated]
    at.button(key="pilot_prev").click().run()  # back on the JSON sample: the chips show what was saved
    assert at.button_group[0].value == [color]


def test_the_chips_and_note_keep_one_widget_across_samples_and_unsaved_marks_wait_for_the_annotator(ui_store):
    """One widget identity for the chips and the note from sample to sample (a new widget per sample left the
    previous sample's chips on the page in the browser when a live refresh ran right after; a click there marked
    the wrong sample); each sample's own values are loaded into it, and marks not yet saved are kept per sample."""
    home, lake, engine = ui_store
    scored = _scored(lake)[:3]
    ids = [sid for sid, _ in scored]
    pid = _pilot(lake, engine, "drafts", ids)
    pilots.set_label(engine, pid, ids[1], "anna", "not_grounded", [answer_groups(scored[1][1])[0]], note="seen before")
    at = page("pilot", who=ANNA, pilot_name="drafts")
    assert "sample **1** of 3" in texts(at)
    first_chips, first_note = at.button_group[0], at.text_input(key=f"pilot_note_{pid}")
    assert first_chips.options == answer_groups(scored[0][1]) and first_chips.value == [] and first_note.value == ""
    marked = first_chips.options[-1]
    first_chips.select(marked).run()
    at.text_input(key=f"pilot_note_{pid}").input("draft, not saved").run()
    at.button(key="pilot_next").click().run()  # moves on without saving
    assert "sample **2** of 3" in texts(at)
    chips = at.button_group[0]
    assert chips.id == first_chips.id and at.text_input(key=f"pilot_note_{pid}").id == first_note.id  # the same widgets
    assert chips.options == answer_groups(scored[1][1])
    assert (chips.value, at.text_input(key=f"pilot_note_{pid}").value) == ([answer_groups(scored[1][1])[0]], "seen before")  # its stored label
    at.button(key="pilot_prev").click().run()  # back: the unsaved marks and note are still there
    assert (at.button_group[0].value, at.text_input(key=f"pilot_note_{pid}").value) == ([marked], "draft, not saved")
    assert ids[0] not in {r.sample_id for r in pilots.labels(engine, pid, "anna")}  # nothing saved by moving
    at.button(key="pilot_not_grounded").click().run()  # saved now, with what was marked before moving away
    saved = {r.sample_id: (r.label, r.ungrounded_words, r.note) for r in pilots.labels(engine, pid, "anna")}
    assert saved[ids[0]] == ("not_grounded", [marked], "draft, not saved")
    assert at.button_group[0].value == []  # sample 3 (the next unlabelled one), nothing marked
    assert "sample **3** of 3" in texts(at)


def test_undo_and_clear_my_label(ui_store):
    home, lake, engine = ui_store
    ids = [sid for sid, _ in _scored(lake)][:3]
    pid = _pilot(lake, engine, "undo", ids)
    pilots.set_label(engine, pid, ids[0], "admin", "not_grounded")  # someone else's label stays through all of this
    at = page("pilot", who=ANNA, pilot_name="undo")
    assert at.button(key="pilot_undo").disabled and at.button(key="pilot_clear").disabled
    at.button(key="pilot_grounded").click().run()
    assert {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")} == {ids[0]: "grounded"}
    at.button(key="pilot_undo").click().run()  # a first label undone: none again, back on that sample
    assert pilots.labels(engine, pid, "anna") == [] and "sample **1** of 3" in texts(at)
    assert "undone: sample 1 is back to no label" in texts(at)
    at.button(key="pilot_grounded").click().run()
    at.button(key="pilot_prev").click().run()
    at.button(key="pilot_skip").click().run()  # replaces grounded
    assert {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")} == {ids[0]: "skip"}
    at.button(key="pilot_undo").click().run()  # the previous label comes back
    assert {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")} == {ids[0]: "grounded"}
    assert "back to 'grounded'" in texts(at) and "you said **grounded**" in texts(at)
    at.button(key="pilot_clear").click().run()
    assert pilots.labels(engine, pid, "anna") == [] and "your label on sample 1 is cleared" in texts(at)
    assert at.button(key="pilot_clear").disabled
    at.button(key="pilot_undo").click().run()  # a clear can be undone too
    assert {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")} == {ids[0]: "grounded"}
    assert [(r.annotator, r.label) for r in pilots.labels(engine, pid) if r.annotator != "anna"] == [("admin", "not_grounded")]


def test_results_warn_below_50_show_intervals_and_admins_settle_disagreements(ui_store):
    home, lake, engine = ui_store
    chosen = _scored(lake)[:24]
    ids = [sid for sid, _ in chosen]
    pid = _pilot(lake, engine, "settle", ids)
    for k, sid in enumerate(ids):
        pilots.set_label(engine, pid, sid, "anna", "grounded" if k % 2 else "not_grounded", ["lid"] if k == 0 else [])
    pilots.set_label(engine, pid, ids[0], "bob", "grounded")  # anna said not grounded: a tie, no majority
    pilots.set_label(engine, pid, ids[1], "bob", "not_grounded")  # a tie too
    at = page("pilot", pilot_name="settle", pilot_filter="ui-filter")
    assert not at.exception
    assert "results at n=22 are not meaningful" in texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["without a majority"] == "2" and metrics["settled"] == "0" and metrics["samples with a label"] == "22 / 24"
    assert "2 sample(s) without a majority are left out of the results: settle them on the Adjudicate tab." in texts(at)
    table = next(df.value for df in at.dataframe if "AUC 95% CI" in df.value.columns)
    for col in ("AUC 95% CI", "best accuracy 95% CI", "current accuracy 95% CI"):
        lo, hi = (float(x) for x in table[col][0].split("–"))
        assert 0 <= lo < hi <= 1, col
    assert "Wilson for accuracies, Hanley-McNeil (1982) for AUC" in texts(at)
    listed = next(df.value for df in at.dataframe if "sample id" in df.value.columns)  # the Adjudicate tab: both ties, each annotator's label and marked words
    assert list(listed["sample id"]) == ids[:2] and list(listed["majority"]) == ["none", "none"]
    assert listed["labels"][0] == "anna: not grounded (lid); bob: grounded"
    assert "<b>anna</b>: not grounded · marked: lid" in "\n".join(str(getattr(n, "body", "")) for n in at.get("html"))
    at.radio(key=f"adj_verdict_{pid}_{ids[0]}").set_value("grounded")
    at.text_input(key=f"adj_note_{pid}_{ids[0]}").input("the lid is fine in photo 2")
    [b for b in at.button if b.label == "Settle"][0].click().run()
    verdict = pilots.adjudications(engine, pid)[ids[0]]
    assert (verdict.label, verdict.settled_by, verdict.note) == ("grounded", "admin", "the lid is fine in photo 2")
    assert "sample 1 settled as grounded" in texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["without a majority"] == "1" and metrics["settled"] == "1" and metrics["samples with a label"] == "23 / 24"
    at.radio(key=f"adj_verdict_{pid}_{ids[0]}").set_value("not_grounded")  # a verdict can be changed
    [b for b in at.button if b.label == "Change verdict"][0].click().run()
    assert pilots.adjudications(engine, pid)[ids[0]].label == "not_grounded"
    assert next(df.value for df in at.dataframe if "verdict" in df.value.columns)["verdict"][0] == "not grounded"
    at.button(key=f"adj_withdraw_{pid}_{ids[0]}").click().run()
    assert pilots.adjudications(engine, pid) == {} and {m.label: m.value for m in at.metric}["without a majority"] == "2"
