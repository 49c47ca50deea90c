"""Pilot: the paper's human check. Label samples grounded / not grounded (buttons or G / N / S; the words,
or for a JSON answer the values, the image does not support marked by clicking them), each annotator seeing
only their own labels, with undo and clear; then the results: ROC curves of both scores, AUC and accuracy
with their 95% intervals, the recommended threshold, kappa; and, for admins, the disagreements to settle."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from curation import pilot_results
from curation.agreement import Measure
from curation.filters import FilterError
from curation.pilot_stats import AUC_CI_METHOD, GROUNDED, MIN_INTERVAL_N, MIN_MEANINGFUL, NOT_GROUNDED, PAPER_RELATIVE_IMPROVEMENT, SKIP
from curation.pilot_words import answer_groups
from db.app import pilots, saved_filters
from db.lake import sampling
from ui import context
from ui import view_state as vs
from ui.heat import escape
from ui.labels import md

me = context.ensure_signed_in()
context.page_header("Pilot", "Label a sample of the data by hand; the results calibrate the thresholds.")
lake, engine = context.lake(), context.engine()
FLASH, ADJ_FLASH = "pilot_flash", "pilot_adj_flash"  # a callback's message, shown in its own tab on the run it triggers


def _create(name: str, size: int, seed: int, selection: str | None, vis_model: str, clip_model: str | None) -> int:
    return len(pilots.draw_and_create(lake, engine, name=name, size=size, seed=seed, vis_model=vis_model, clip_model=clip_model,
                                      selection=selection, created_by=me.username))


def _create_form() -> None:
    # cached reads (until the next commit to scores): each costs a scan of every score at a million samples
    vis_models = list(context.read("stored_models", "vis_attn", "answer", True))
    clip_models = list(context.read("stored_models", "clip_score", "", True))
    with st.form("pilot_create"):
        c1, c2, c3 = st.columns(3)
        new_name = c1.text_input("Name", value="pilot-1", key="pilot_new_name")
        size = c2.number_input("Samples", 10, 5000, 200, help="The paper labels 200.", key="pilot_new_size")
        seed = c3.number_input("Seed", 0, 10**6, 0)
        c4, c5, c6 = st.columns(3)
        sel = c4.selectbox("From", ["all samples", *[n for n, kind, _ in sampling.selection_names(lake) if kind == "sample"]])
        vis_model = c5.selectbox("VisAttnScore model", vis_models)
        # the model that scored, by default: without one the results lose the paper's comparison with CLIPScore
        clip_model = c6.selectbox("CLIPScore model", [*clip_models, None], format_func=lambda m: m or "none")
        if st.form_submit_button("Create pilot"):
            if not vis_model:
                st.error("no VisAttnScore stored yet: score the samples first")
                return
            try:
                n = context.guarded("create_pilots", _create, new_name.strip(), int(size), int(seed), None if sel == "all samples" else sel, vis_model, clip_model)
                if n is not context.REFUSED:
                    st.success(f"pilot {new_name.strip()!r}: {n} samples drawn over task and VisAttnScore decile")
            except pilots.PilotError as exc:
                st.error(str(exc))


if context.allowed("create_pilots"):  # annotators do not see the form at all; guarded() still checks on the server
    with st.expander("Create a pilot"):
        _create_form()

listing = pilots.list_pilots(engine)
if not listing:
    st.info("No pilot yet." + (" Create one above." if context.allowed("create_pilots") else " Ask an admin to create one."))
    st.stop()
names = [row[0] for row in listing]
# the pilot being labelled is in the address: a reload or a copied link stays on it (the newest otherwise)
VIEW = [vs.Key("pilot_name", str, tuple(names))]
vs.restore("pilot", VIEW)
st.session_state.setdefault("pilot_name", names[-1])
name = st.selectbox("Pilot", names, key="pilot_name")
vs.publish("pilot", VIEW, prefix="pilot_")
pilot = pilots.get(engine, name)
chosen = pilots.samples(engine, pilot.id)
order = [x.sample_id for x in chosen]
# what this user labels: the samples assigned to them (`vitpro pilot assign`), or every sample without assignments
queue = pilots.queue(engine, pilot.id, me.username)
adjudicator = context.allowed("adjudicate")
tabs = st.tabs(["Label", "Results", *(["Adjudicate"] if adjudicator else [])])  # annotators do not see the adjudication at all
pos_key = f"pilot_pos_{pilot.id}"
UNDO_KEPT = 500  # undo steps kept per tab


@st.cache_resource(show_spinner=False)
def _undo_stacks() -> dict[tuple[str, int, str], list]:
    """Every browser tab's undo history, in the server process: a reload starts a new Streamlit session but
    keeps the tab's address, whose ``tab`` id finds its history again. Keyed by user too, so that an id
    typed into another person's address finds nothing of theirs."""
    return {}


def _tab_id() -> str:
    tab = st.query_params.get("tab", "")
    if not re.fullmatch(r"[0-9a-f]{12}", tab):
        tab = uuid.uuid4().hex[:12]
        st.query_params["tab"] = tab
    return tab


undo_stack: list = _undo_stacks().setdefault((me.username, pilot.id, _tab_id()), [])


def _details(sample_id: str) -> dict | None:
    """One pilot sample's details, from the cached details of every sample of the pilot (read once per
    version of the tables behind them: the next sample, a label or a verdict then sends no lake query)."""
    found = context.read("pilot_details", tuple(order), pilot.config.get("vis_model"), pilot.config.get("segment", "answer"))
    return found.get(sample_id)


def _show_sample(detail: dict, where):
    """Images left, question and answer right; returns the right column for what follows."""
    left, right = where.columns([5, 6])
    for path in detail["images"]:
        if Path(path).is_file():
            left.image(path, width="stretch")
    right.markdown(f"**{escape(detail['task'])}** · {escape(detail['category'])}")
    right.html(f'<div style="font-weight:600">Question</div><div>{escape(detail["question"])}</div>'
               f'<div style="font-weight:600;margin-top:8px">Answer</div><div class="pilot-answer">{escape(detail["answer"])}</div>')
    return right


# ---- label ------------------------------------------------------------------------------------------------
# The word chips and the note keep one key (so one widget identity) from sample to sample; each sample's values
# are loaded into them when it is shown. With a key per sample, every sample drew a new widget, and when a live
# refresh (a run_every fragment, the sidebar's job notices included) ran right after, Streamlit's browser side
# kept the previous sample's chips on the page, faded: a click on them marked the other sample, and N then saved
# no word. What the annotator marked but did not save is kept per sample (drafts) when they move on.
WORDS_KEY, NOTE_KEY = f"pilot_words_{pilot.id}", f"pilot_note_{pilot.id}"
SHOWN_KEY = f"pilot_shown_{pilot.id}"  # (sample id, words, note) as loaded into the widgets
drafts: dict[str, tuple[list, str]] = st.session_state.setdefault(f"pilot_drafts_{pilot.id}", {})


def _shown_sample() -> str | None:
    shown = st.session_state.get(SHOWN_KEY)
    return shown[0] if shown else None


def _keep_draft() -> None:
    """Before the annotator moves to another sample: what they marked or wrote there and did not save."""
    shown = st.session_state.get(SHOWN_KEY)
    if not shown or WORDS_KEY not in st.session_state:  # no chips on the last run (a sample gone from the store): nothing typed
        return
    now = (list(st.session_state.get(WORDS_KEY) or []), st.session_state.get(NOTE_KEY) or "")
    if now != (shown[1], shown[2]):
        drafts[shown[0]] = now


def _forget(sid: str) -> None:
    """The stored label is what the widgets show next: after a label, a clear or an undo on this sample."""
    drafts.pop(sid, None)
    st.session_state.pop(SHOWN_KEY, None)


def _load(sid: str, own, groups: list[str]) -> None:
    """Put this sample's values into the chips and the note: the annotator's draft, else their stored label."""
    if _shown_sample() == sid and WORDS_KEY in st.session_state:
        if any(w not in groups for w in st.session_state[WORDS_KEY]):  # the answer changed in the store meanwhile
            st.session_state[WORDS_KEY] = [w for w in st.session_state[WORDS_KEY] if w in groups]
        return
    words, note = drafts.pop(sid, None) or (list(own.ungrounded_words or []) if own else [], (own.note or "") if own else "")
    words = [w for w in words if w in groups]
    st.session_state[WORDS_KEY], st.session_state[NOTE_KEY] = words, note
    st.session_state[SHOWN_KEY] = (sid, words, note)


def _goto(delta: int) -> None:
    _keep_draft()
    st.session_state[pos_key] = min(max(0, st.session_state[pos_key] + delta), len(queue) - 1)


def _push(entry: tuple) -> None:
    undo_stack.append(entry)
    del undo_stack[:-UNDO_KEPT]


def _label(value: str, mine: dict) -> None:
    pos = st.session_state[pos_key]
    sid = queue[pos]
    on_screen = _shown_sample() == sid  # the chips and the note show this sample (they always should)
    words = (st.session_state.get(WORDS_KEY) or []) if on_screen else []
    note = ((st.session_state.get(NOTE_KEY) or "").strip() or None) if on_screen else None
    written = pilots.LabelState(value, tuple(words) if value == NOT_GROUNDED else (), note)
    try:  # only over the label this tab shows: another tab's label is shown first, not overwritten unseen
        previous = context.guarded("label", pilots.set_label, engine, pilot.id, sid, me.username, written.label, written.ungrounded_words,
                                   written.note, expected=pilots.state_of(mine.get(sid)))
    except pilots.LabelChanged as exc:
        st.session_state[FLASH] = f"warning: {exc}. Shown now: press again to replace it."
        return
    if previous is context.REFUSED:
        return
    _push((sid, pos, previous, written))  # undo puts back what this replaced, if the label is still what this wrote
    _forget(sid)
    pilots.release(engine, pilot.id, me.username)  # done with it: free for the next annotator at once
    busy = pilots.locked_by_others(engine, pilot.id, me.username)
    later = [k for k in range(pos + 1, len(queue)) if queue[k] not in mine and queue[k] != sid and queue[k] not in busy]
    st.session_state[pos_key] = later[0] if later else min(pos + 1, len(queue) - 1)


def _clear(mine: dict) -> None:
    pos = st.session_state[pos_key]
    sid = queue[pos]
    own = pilots.state_of(mine.get(sid))
    if own is None:
        return
    try:
        if context.guarded("label", pilots.clear_label, engine, pilot.id, sid, me.username, expected=own) is context.REFUSED:
            return
    except pilots.LabelChanged as exc:
        st.session_state[FLASH] = f"warning: {exc}. Shown now."
        return
    _push((sid, pos, own, None))
    _forget(sid)  # the word chips show the (now empty) stored state again
    st.session_state[FLASH] = f"your label on sample {pos + 1} is cleared"


def _undo() -> None:
    if not undo_stack:
        return
    sid, pos, previous, written = undo_stack[-1]
    try:  # what this tab did, and only while the label is still what it wrote
        if context.guarded("label", pilots.restore_label, engine, pilot.id, sid, me.username, previous, expected=written) is context.REFUSED:
            return
    except pilots.LabelChanged as exc:
        undo_stack.pop()
        st.session_state[pos_key] = pos
        st.session_state[FLASH] = f"warning: not undone: {exc}."
        return
    undo_stack.pop()
    if pos != st.session_state[pos_key]:
        _keep_draft()
    st.session_state[pos_key] = pos
    _forget(sid)
    st.session_state[FLASH] = (f"undone: sample {pos + 1} is back to " + ("no label" if previous is None else f"'{previous.label.replace('_', ' ')}'"))


def label_tab() -> None:
    guidelines = (pilot.config or {}).get("guidelines")
    if guidelines:
        with st.expander("Guidelines for this pilot", expanded=pos_key not in st.session_state):
            st.markdown(guidelines)
    if not queue:
        st.info("No sample of this pilot is assigned to you. An admin assigns them (Assign, below the Results; or `vitpro pilot assign`).")
        return
    mine = {row.sample_id: row for row in pilots.labels(engine, pilot.id, annotator=me.username)}  # only my own labels
    if pos_key not in st.session_state:  # a fresh session (or a refresh) resumes at my first unlabelled sample nobody else has open
        busy = pilots.locked_by_others(engine, pilot.id, me.username)
        st.session_state[pos_key] = next((k for k, sid in enumerate(queue) if sid not in mine and sid not in busy),
                                         next((k for k, sid in enumerate(queue) if sid not in mine), 0))
    done = sum(1 for sid in queue if sid in mine)
    st.progress(done / len(queue) if queue else 0.0, text=f"you have labelled {done} of {len(queue)}")
    if FLASH in st.session_state:
        message = st.session_state.pop(FLASH)
        (st.warning if message.startswith("warning: ") else st.success)(message.removeprefix("warning: "))
    pos = min(st.session_state[pos_key], len(queue) - 1)
    sid = queue[pos]
    detail = _details(sid)
    own = mine.get(sid)
    holder = pilots.claim(engine, pilot.id, sid, me.username)  # on my screen: kept from the others while I read it
    if holder is not None:
        st.info(f"{holder} has this sample open right now: ▶ goes on to the next one.")
    b = st.columns([1, 1, 2, 2, 1, 3])
    b[0].button("◀", on_click=_goto, args=(-1,), shortcut="left", key="pilot_prev", help="previous (←)")
    b[1].button("▶", on_click=_goto, args=(1,), shortcut="right", key="pilot_next", help="next (→)")
    b[2].button("Grounded", on_click=_label, args=(GROUNDED, mine), shortcut="g", type="primary", key="pilot_grounded", help="G")
    b[3].button("Not grounded", on_click=_label, args=(NOT_GROUNDED, mine), shortcut="n", key="pilot_not_grounded", help="N")
    b[4].button("Skip", on_click=_label, args=(SKIP, mine), shortcut="s", key="pilot_skip", help="S")
    b[5].markdown(f"sample **{pos + 1}** of {len(queue)}" + (f" · you said **{own.label.replace('_', ' ')}**" if own else " · not labelled by you yet"))
    u = st.columns([2, 2, 6])
    u[0].button("Undo my last label", on_click=_undo, disabled=not undo_stack, shortcut="u", key="pilot_undo",
                help="U: puts back what your last label or clear in this tab replaced (kept through a reload)")
    u[1].button("Clear my label", on_click=_clear, args=(mine,), disabled=own is None, key="pilot_clear",
                help="remove your label on this sample (others' labels stay)")
    if detail is None:
        st.warning(f"sample {sid} is no longer in the store")
        return
    right = _show_sample(detail, st)
    groups = answer_groups(detail["answer"])
    _load(sid, own, groups)
    json_answer = bool(groups) and all(": " in g for g in groups) and str(detail["answer"]).lstrip()[:1] in "{["
    # wrap=True: directly in a column st.pills keeps one row and scrolls, which clipped long answers
    right.pills("Click the " + ("values" if json_answer else "words") + " the image does not support (saved with 'Not grounded')",
                groups, selection_mode="multi", key=WORDS_KEY, wrap=True, width="stretch")
    right.text_input("Note (optional, saved with your label)", key=NOTE_KEY, placeholder="e.g. the lid is not in the photo")
    if detail["ocr"]:
        right.caption("OCR: " + " | ".join(t for t in detail["ocr"] if t)[:300])


# ---- results ----------------------------------------------------------------------------------------------
def _ci(pair, n: int) -> str | None:
    """As the CLI prints it: "too few" at a handful of samples, or where the interval collapses to a point."""
    if pair is None:
        return None
    return f"too few (n={n})" if n < MIN_INTERVAL_N or pair[0] == pair[1] else f"{pair[0]:.3f}–{pair[1]:.3f}"


def _value(m) -> float | None:
    return None if m.value is None else round(m.value, 3)


def _agreement(overall, per_task) -> None:
    """Agreement between the annotators: the pairwise Cohen's kappa matrix, then Fleiss' kappa and
    Krippendorff's alpha overall and per task, each with the samples it rests on."""
    st.subheader("Agreement between annotators")
    people = overall.annotators
    left, right = st.columns([2, 3])
    matrix = [[1.0 if a == b else _value(overall.pairwise.get(f"{min(a, b)}|{max(a, b)}", Measure(None, 0))) for b in people] for a in people]
    counts = [["" if a == b else f"n={overall.pairwise.get(f'{min(a, b)}|{max(a, b)}', Measure(None, 0)).n}" for b in people] for a in people]
    fig = go.Figure(go.Heatmap(z=matrix, x=people, y=people, zmin=-1, zmax=1, colorscale="RdBu", text=counts,
                               texttemplate="%{z:.2f}<br>%{text}", hovertemplate="%{y} / %{x}: κ %{z:.3f} (%{text})<extra></extra>"))
    fig.update_layout(height=120 + 50 * len(people), title="Cohen's κ per pair", margin=dict(l=10, r=10, t=40, b=10))
    left.plotly_chart(fig, width="stretch", key="pilot_kappa_matrix")
    rows = [{"task": "all", "Fleiss' κ": _value(overall.fleiss), "n (Fleiss)": overall.fleiss.n, "raters": overall.fleiss_raters or None,
             "Krippendorff's α": _value(overall.alpha), "n (α)": overall.alpha.n}]
    rows += [{"task": t, "Fleiss' κ": _value(a.fleiss), "n (Fleiss)": a.fleiss.n, "raters": a.fleiss_raters or None,
              "Krippendorff's α": _value(a.alpha), "n (α)": a.alpha.n} for t, a in per_task.items()]
    right.dataframe(rows, hide_index=True, width="stretch", key="pilot_agreement")
    right.caption("Skips are not ratings. Fleiss' κ uses the samples with the most common number of ratings; Krippendorff's α every "
                  "sample rated twice or more. Empty: too few ratings, or one label throughout."
                  + (f" Rests on {overall.alpha.n} sample(s): not meaningful below {MIN_MEANINGFUL}." if overall.alpha.n < MIN_MEANINGFUL else ""))


def _assign_form() -> None:
    """Admins: who labels which sample (each by ``overlap`` annotators), and the guidelines annotators read."""
    from db.app import users as users_db

    people = [u.username for u in users_db.list_users(engine) if not getattr(u, "disabled", False)]
    config = pilot.config or {}
    with st.expander("Assign annotators and write the guidelines"):
        with st.form(f"assign_{pilot.id}"):
            chosen_people = st.multiselect("Annotators", people, default=[a for a in config.get("annotators", []) if a in people])
            overlap = st.number_input("Each sample labelled by", 1, max(1, len(people)), min(int(config.get("overlap", 1)), max(1, len(people))),
                                      help="2 or more: the annotators' agreement can be measured on every sample")
            if st.form_submit_button("Assign"):
                try:
                    given = context.guarded("create_pilots", pilots.assign, engine, pilot.id, chosen_people, int(overlap))
                    if given is not context.REFUSED:
                        st.success("assigned: " + ", ".join(f"{md(a)} {n}" for a, n in given.items()))
                except pilots.PilotError as exc:
                    st.error(md(str(exc)))
        with st.form(f"guidelines_{pilot.id}"):
            text = st.text_area("Guidelines (Markdown), shown to annotators above the samples", value=config.get("guidelines", ""), height=150)
            if st.form_submit_button("Save guidelines"):
                if context.guarded("create_pilots", pilots.set_guidelines, engine, pilot.id, text) is not context.REFUSED:
                    st.success("guidelines saved")


def results_tab() -> None:
    st.download_button("Download the labels (CSV)", lambda: pilots.export_csv(engine, pilot), file_name=f"{name}-labels.csv", mime="text/csv",
                       key="pilot_labels_csv", on_click="ignore", help="every annotator's labels, as `vitpro pilot export` writes them")
    work = pilots.progress(engine, pilot.id)
    if work:
        st.dataframe([{"annotator": a, "to label": n, "labelled": done, "done": f"{100 * done / n:.0f}%" if n else "-"} for a, n, done in work],
                     hide_index=True, key="pilot_progress")
    saved = saved_filters.list_all(engine)
    filters = [f.name for f in saved]
    fname = st.selectbox("Current thresholds from the saved filter", [None, *filters], index=1 + filters.index(saved_filters.newest(saved)) if filters else 0,
                         format_func=lambda n: n or "none", key="pilot_filter")
    try:
        found = pilot_results.results(lake, engine, name, fname, stats=context.stats_table)  # the app's kept stats table
    except FilterError as exc:
        st.error(f"filter '{md(fname)}': {md(exc)}")
        return
    if found is None:
        st.info("No labels yet.")
        return
    rep = found.report
    if rep.labelled < MIN_MEANINGFUL:
        st.warning(f"Only {rep.labelled} sample(s) have a label: results at n={rep.labelled} are not meaningful. "
                   f"Label at least {MIN_MEANINGFUL} (the paper labels 200); the intervals below show how uncertain they are.")
    c = st.columns(6)
    c[0].metric("samples with a label", f"{rep.labelled} / {found.samples}")
    c[1].metric("grounded", rep.grounded)
    c[2].metric("not grounded", rep.not_grounded)
    c[3].metric("without a majority", rep.without_majority, help="annotators split evenly and nobody settled it: left out of the results")
    c[4].metric("settled", rep.settled, help="an admin's verdict replaces the annotators' labels")
    c[5].metric("annotators", len(rep.annotators))
    if rep.without_majority:
        st.caption(f"{rep.without_majority} sample(s) without a majority are left out of the results: "
                   + ("settle them on the Adjudicate tab." if adjudicator else "an admin can settle them."))
    if not rep.scores:
        st.info("The labels need both grounded and not-grounded samples before a score can be measured against them.")
    else:
        fig = go.Figure()
        for r in rep.scores.values():
            fig.add_trace(go.Scatter(x=r.roc["fpr"], y=r.roc["tpr"], mode="lines", name=f"{r.name} (AUC {r.auc:.3f})"))
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
        fig.update_layout(height=380, xaxis_title="false positive rate", yaxis_title="true positive rate", title="ROC against the human labels",
                          margin=dict(l=10, r=10, t=40, b=10))
        left, right = st.columns(2)
        left.plotly_chart(fig, width="stretch")
        rows = [{"score": r.name, "n": r.n, "AUC": round(r.auc, 3), "AUC 95% CI": _ci(r.auc_ci, r.n),
                 "best accuracy": round(r.best_accuracy, 3), "best accuracy 95% CI": _ci(r.best_accuracy_ci, r.n),
                 "recommended threshold (best accuracy)": r.best_accuracy_threshold, "Youden's J threshold": r.youden_threshold,
                 "accuracy at current thresholds": None if r.current_accuracy is None else round(r.current_accuracy, 3),
                 "current accuracy 95% CI": _ci(r.current_accuracy_ci, r.current_n), "current thresholds": r.current_threshold} for r in rep.scores.values()]
        right.dataframe(rows, hide_index=True, width="stretch")
        right.caption(f"95% intervals: Wilson for accuracies, {AUC_CI_METHOD} (1982) for AUC. The best accuracy's threshold is "
                      "fitted on these same labels, so it is optimistic.")
        gains = {"best thresholds": rep.relative_improvement, "current thresholds": rep.relative_improvement_current}
        gains = {k: v for k, v in gains.items() if v is not None}
        if gains:
            bar = go.Figure(go.Bar(x=list(gains), y=[100 * v for v in gains.values()], marker_color="#1f77b4"))
            bar.add_hline(y=100 * PAPER_RELATIVE_IMPROVEMENT, line_dash="dash", line_color="#d62728",
                          annotation_text=f"paper: +{100 * PAPER_RELATIVE_IMPROVEMENT:.0f}%")
            bar.update_layout(height=300, yaxis_title="% relative accuracy", title="VisAttnScore over CLIPScore", margin=dict(l=10, r=10, t=40, b=10))
            right.plotly_chart(bar, width="stretch")
    if found.combined is not None:
        _combined(found.combined)
    if len(rep.annotators) < 2:
        st.caption("Agreement between annotators needs a second one.")
    else:
        _agreement(found.agreement, found.agreement_by_task)
    if found.ungrounded_words:
        st.caption("words marked ungrounded most often: " + ", ".join(f"{w} ({n})" for w, n in found.ungrounded_words[:10]))


def _combined(fit) -> None:
    """The signals together (a logistic regression fitted on these labels; its AUC cross-validated), and
    for admins the job that writes it as grounded_p for every sample."""
    st.markdown("**The signals combined** (row *combined (5-fold CV)* above)")
    st.caption(md(fit.describe()))
    for warning in fit.warnings:
        st.warning(warning)
    if context.allowed("launch_jobs") and st.button("Write grounded_p for every sample from these labels (a job)", key="pilot_calibrate",
                                                    help="then cut on it like any stat (Thresholds, or `grounded_p >= 0.7` in a filter)"):
        from jobs.calibrate import CalibrateJob
        from jobs.submit import JobRefused, submit_job

        try:
            job = context.guarded("launch_jobs", submit_job, "calibrate", CalibrateJob(pilot=name).params(), launched_by=me.username)
            if job is not context.REFUSED:
                st.success(f"launched calibrate job {job}: grounded_p (model pilot:{md(name)}) appears on Thresholds once it ends")
        except JobRefused as exc:
            st.error(f"cannot launch calibrate: {md(str(exc))}")


# ---- adjudicate (admins) ------------------------------------------------------------------------------------
def _verdict_key(sid: str) -> str:
    return f"adj_verdict_{pilot.id}_{sid}"


def _settle(sid: str, pos: int) -> None:
    verdict = st.session_state.get(_verdict_key(sid))
    note = st.session_state.get(f"adj_note_{pilot.id}_{sid}")
    try:
        if context.guarded("adjudicate", pilots.adjudicate, engine, pilot.id, sid, verdict, me.username, note) is context.REFUSED:
            return
    except pilots.PilotError as exc:
        st.session_state[ADJ_FLASH] = f"error: {exc}"
        return
    st.session_state[ADJ_FLASH] = f"sample {pos + 1} settled as {verdict.replace('_', ' ')}"


def _unsettle(sid: str, pos: int) -> None:
    if context.guarded("adjudicate", pilots.unsettle, engine, pilot.id, sid) is not context.REFUSED:
        st.session_state[ADJ_FLASH] = f"verdict on sample {pos + 1} withdrawn: the annotators' labels count again"


def _said(row) -> str:
    words = f" ({', '.join(row.ungrounded_words)})" if row.ungrounded_words else ""
    return f"{row.label.replace('_', ' ')}{words}"


def adjudicate_tab() -> None:
    if ADJ_FLASH in st.session_state:
        message = st.session_state.pop(ADJ_FLASH)
        (st.error if message.startswith("error: ") else st.success)(message.removeprefix("error: "))
    found = pilot_results.disagreements(engine, pilot.id)
    every = st.checkbox("Also samples with a majority (not unanimous)", key="pilot_adj_all",
                        help="by default only the samples the annotators split evenly on, which the results leave out")
    shown = [d for d in found if every or d.majority is None]
    open_ = sum(1 for d in found if d.majority is None and d.settled is None)
    st.caption(f"{len(found)} sample(s) with disagreeing annotators; {sum(d.majority is None for d in found)} without a majority "
               f"({open_} not settled yet); {sum(d.settled is not None for d in found)} settled.")
    if not shown:
        st.info("No sample has disagreeing annotators." if every else "Nothing to settle: no sample has annotators split evenly.")
        return
    st.dataframe([{"sample": d.position + 1, "sample id": d.sample_id,
                   "labels": "; ".join(f"{a}: {_said(r)}" for a, r in sorted(d.labels.items())),
                   "majority": (d.majority or "none").replace("_", " "),
                   "verdict": None if d.settled is None else d.settled.label.replace("_", " ")} for d in shown],
                 hide_index=True, width="stretch")
    pick = st.selectbox("Sample to settle", range(len(shown)), key="pilot_adj_pick",
                        format_func=lambda k: f"sample {shown[k].position + 1} · {shown[k].sample_id[:16]}"
                        + (f" · settled: {shown[k].settled.label.replace('_', ' ')}" if shown[k].settled else " · open"))
    d = shown[pick]
    detail = _details(d.sample_id)
    if detail is None:
        st.warning(f"sample {d.sample_id} is no longer in the store")
    else:
        _show_sample(detail, st)
    st.html("<ul>" + "".join(f"<li><b>{escape(a)}</b>: {escape(r.label.replace('_', ' '))}"
                             + (f" · marked: {escape(', '.join(r.ungrounded_words))}" if r.ungrounded_words else "")
                             + (f" · note: {escape(r.note)}" if r.note else "") + "</li>" for a, r in sorted(d.labels.items())) + "</ul>")
    if d.settled is not None:
        st.html(f"<div>settled as <b>{escape(d.settled.label.replace('_', ' '))}</b> by {escape(d.settled.settled_by)}"
                + (f" · note: {escape(d.settled.note)}" if d.settled.note else "") + "</div>")
    with st.form(f"adj_form_{pilot.id}_{d.sample_id}"):
        current = d.settled.label if d.settled else (d.majority or GROUNDED)
        st.radio("Verdict", list(pilots.VERDICTS), index=list(pilots.VERDICTS).index(current), horizontal=True,
                 format_func=lambda v: v.replace("_", " "), key=_verdict_key(d.sample_id))
        st.text_input("Note (optional)", value=(d.settled.note or "") if d.settled else "", key=f"adj_note_{pilot.id}_{d.sample_id}")
        st.form_submit_button("Change verdict" if d.settled else "Settle", on_click=_settle, args=(d.sample_id, d.position), type="primary")
    if d.settled is not None:
        st.button("Withdraw verdict", on_click=_unsettle, args=(d.sample_id, d.position), key=f"adj_withdraw_{pilot.id}_{d.sample_id}")


# Results and Adjudicate read the labels again this often (VITPRO_UI_LIVE_SECONDS): another annotator's work shows up
LIVE_SECONDS = context.settings().ui_live_seconds


def _as_of() -> None:
    st.caption(f"as of {datetime.now(timezone.utc):%H:%M:%S} UTC · refreshed every {LIVE_SECONDS:g} s")


@st.fragment(run_every=LIVE_SECONDS)
def live_results() -> None:
    _as_of()
    results_tab()


@st.fragment(run_every=LIVE_SECONDS)
def live_adjudication() -> None:
    _as_of()
    adjudicate_tab()


with tabs[0]:
    label_tab()  # not live: a redraw under the annotator's hands would move what they are reading
with tabs[1]:
    live_results()
    if context.allowed("create_pilots"):  # outside the live fragment: a form being filled in is not redrawn under the user
        _assign_form()
if adjudicator:
    with tabs[2]:
        live_adjudication()
