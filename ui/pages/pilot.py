"""Pilot: the paper's human check. Label samples grounded / not grounded (buttons or G / N / S, words
clicked to mark them ungrounded), each annotator seeing only their own labels; then the results: ROC
curves of both scores, AUC, accuracy at the current thresholds, the recommended threshold, kappa."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from curation.filters import FilterError, stored_models
from curation.pilot_stats import GROUNDED, NOT_GROUNDED, PAPER_RELATIVE_IMPROVEMENT, SKIP
from db import pilot_results, pilots, sampling, saved_filters
from ui import context
from ui.heat import escape

me = context.ensure_signed_in()
context.page_header("Pilot", "Label a sample of the data by hand; the results calibrate the thresholds.")
s, lake, engine = context.settings(), context.lake(), context.engine()


def _create(name: str, size: int, seed: int, selection: str | None, vis_model: str, clip_model: str | None) -> int:
    return len(pilots.draw_and_create(lake, engine, name=name, size=size, seed=seed, vis_model=vis_model, clip_model=clip_model,
                                      selection=selection, created_by=me.username))


with st.expander("Create a pilot" + ("" if context.allowed("create_pilots") else " (admins)")):
    vis_models = stored_models(lake, "vis_attn", segment="answer", scored_only=True)
    clip_models = stored_models(lake, "clip_score", scored_only=True)
    with st.form("pilot_create"):
        c1, c2, c3 = st.columns(3)
        new_name = c1.text_input("Name", value="pilot-1", key="pilot_new_name")
        size = c2.number_input("Samples", 10, 5000, 200, help="The paper labels 200.", key="pilot_new_size")
        seed = c3.number_input("Seed", 0, 10**6, 0)
        c4, c5, c6 = st.columns(3)
        sel = c4.selectbox("From", ["all samples", *[n for n, kind, _ in sampling.selection_names(lake) if kind == "sample"]])
        vis_model = c5.selectbox("VisAttnScore model", vis_models)
        clip_model = c6.selectbox("CLIPScore model", [None, *clip_models], format_func=lambda m: m or "none")
        if st.form_submit_button("Create pilot"):
            if not vis_model:
                st.error("no VisAttnScore stored yet: score the samples first")
            else:
                try:
                    n = context.guarded("create_pilots", _create, new_name.strip(), int(size), int(seed), None if sel == "all samples" else sel, vis_model, clip_model)
                    if n is not context.REFUSED:
                        st.success(f"pilot {new_name.strip()!r}: {n} samples drawn over task and VisAttnScore decile")
                except pilots.PilotError as exc:
                    st.error(str(exc))

listing = pilots.list_pilots(engine)
if not listing:
    st.info("No pilot yet." + (" Create one above." if context.allowed("create_pilots") else " Ask an admin to create one."))
    st.stop()
names = [row[0] for row in listing]
name = st.selectbox("Pilot", names, index=len(names) - 1, key="pilot_name")
pilot = pilots.get(engine, name)
chosen = pilots.samples(engine, pilot.id)
label_tab, results_tab = st.tabs(["Label", "Results"])

with label_tab:
    mine = {row.sample_id: row for row in pilots.labels(engine, pilot.id, annotator=me.username)}  # only my own labels
    order = [x.sample_id for x in chosen]
    pos_key = f"pilot_pos_{pilot.id}"
    if pos_key not in st.session_state:  # a fresh session (or a refresh) resumes at my first unlabelled sample
        st.session_state[pos_key] = next((k for k, sid in enumerate(order) if sid not in mine), 0)
    done = sum(1 for sid in order if sid in mine)
    st.progress(done / len(order) if order else 0.0, text=f"you have labelled {done} of {len(order)}")

    def _goto(delta: int) -> None:
        st.session_state[pos_key] = min(max(0, st.session_state[pos_key] + delta), len(order) - 1)

    def _label(value: str) -> None:
        sid = order[st.session_state[pos_key]]
        words = st.session_state.get(f"words_{pilot.id}_{sid}") or []
        if context.guarded("label", pilots.set_label, engine, pilot.id, sid, me.username, value, words if value == NOT_GROUNDED else []) is context.REFUSED:
            return
        later = [k for k in range(st.session_state[pos_key] + 1, len(order)) if order[k] not in mine and order[k] != sid]
        st.session_state[pos_key] = later[0] if later else min(st.session_state[pos_key] + 1, len(order) - 1)

    pos = st.session_state[pos_key]
    sid = order[pos]
    detail = pilots.sample_details(lake, [sid], vis_model=pilot.config.get("vis_model"), segment=pilot.config.get("segment", "answer"),
                                   blob_root=s.blob_path).get(sid)
    b = st.columns([1, 1, 2, 2, 1, 3])
    b[0].button("◀", on_click=_goto, args=(-1,), shortcut="left", key="pilot_prev", help="previous (←)")
    b[1].button("▶", on_click=_goto, args=(1,), shortcut="right", key="pilot_next", help="next (→)")
    b[2].button("Grounded", on_click=_label, args=(GROUNDED,), shortcut="g", type="primary", key="pilot_grounded", help="G")
    b[3].button("Not grounded", on_click=_label, args=(NOT_GROUNDED,), shortcut="n", key="pilot_not_grounded", help="N")
    b[4].button("Skip", on_click=_label, args=(SKIP,), shortcut="s", key="pilot_skip", help="S")
    own = mine.get(sid)
    b[5].markdown(f"sample **{pos + 1}** of {len(order)}" + (f" · you said **{own.label.replace('_', ' ')}**" if own else " · not labelled by you yet"))
    if detail is None:
        st.warning(f"sample {sid} is no longer in the store")
    else:
        left, right = st.columns([5, 6])
        for path in detail["images"]:
            if Path(path).is_file():
                left.image(path, width="stretch")
        right.markdown(f"**{escape(detail['task'])}** · {escape(detail['category'])}")
        right.html(f'<div style="font-weight:600">Question</div><div>{escape(detail["question"])}</div>'
                   f'<div style="font-weight:600;margin-top:8px">Answer</div><div class="pilot-answer">{escape(detail["answer"])}</div>')
        words = list(dict.fromkeys(w.strip(".,;:!?()[]\"'") for w in str(detail["answer"]).split() if w.strip(".,;:!?()[]\"'")))
        default = list(own.ungrounded_words) if own and own.ungrounded_words else []
        right.pills("Click the words the image does not support (saved with 'Not grounded')", words, selection_mode="multi",
                    default=[w for w in default if w in words], key=f"words_{pilot.id}_{sid}")
        if detail["ocr"]:
            right.caption("OCR: " + " | ".join(t for t in detail["ocr"] if t)[:300])

with results_tab:
    filters = [f.name for f in saved_filters.list_all(engine)]
    fname = st.selectbox("Current thresholds from the saved filter", [None, *filters], index=len(filters) if filters else 0,
                         format_func=lambda n: n or "none", key="pilot_filter")
    try:
        found = pilot_results.results(lake, engine, name, fname)
    except FilterError as exc:
        st.error(f"filter {fname!r}: {exc}")
        st.stop()
    if found is None:
        st.info("No labels yet.")
        st.stop()
    rep = found.report
    c = st.columns(4)
    c[0].metric("samples with a majority label", f"{rep.labelled} / {found.samples}")
    c[1].metric("grounded", rep.grounded)
    c[2].metric("not grounded", rep.not_grounded)
    c[3].metric("annotators", len(rep.annotators))
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
        rows = [{"score": r.name, "n": r.n, "AUC": round(r.auc, 3), "best accuracy": round(r.best_accuracy, 3),
                 "recommended threshold (best accuracy)": r.best_accuracy_threshold, "Youden's J threshold": r.youden_threshold,
                 "accuracy at current thresholds": None if r.current_accuracy is None else round(r.current_accuracy, 3),
                 "current thresholds": r.current_threshold} for r in rep.scores.values()]
        right.dataframe(rows, hide_index=True, width="stretch")
        gains = {"best thresholds": rep.relative_improvement, "current thresholds": rep.relative_improvement_current}
        gains = {k: v for k, v in gains.items() if v is not None}
        if gains:
            bar = go.Figure(go.Bar(x=list(gains), y=[100 * v for v in gains.values()], marker_color="#1f77b4"))
            bar.add_hline(y=100 * PAPER_RELATIVE_IMPROVEMENT, line_dash="dash", line_color="#d62728",
                          annotation_text=f"paper: +{100 * PAPER_RELATIVE_IMPROVEMENT:.0f}%")
            bar.update_layout(height=300, yaxis_title="% relative accuracy", title="VisAttnScore over CLIPScore", margin=dict(l=10, r=10, t=40, b=10))
            right.plotly_chart(bar, width="stretch")
    for pair, kappa in rep.kappa.items():
        a, b_ = pair.split("|")
        st.write(f"Cohen's κ {a} / {b_}: **{kappa:.3f}**")
    if len(rep.annotators) < 2:
        st.caption("κ needs a second annotator.")
    if found.ungrounded_words:
        st.caption("words marked ungrounded most often: " + ", ".join(f"{w} ({n})" for w, n in found.ungrounded_words[:10]))
