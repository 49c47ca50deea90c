"""Thresholds: set each filter by value or percentile and watch kept / dropped move, overall and per task
and category; histograms with the cut drawn; the samples on either side of each cut; save as a filter."""
from __future__ import annotations

import time

import plotly.graph_objects as go
import streamlit as st

from curation.filters import Condition, FilterConfig, FilterError, subject_of
from curation.model_ids import public_model_id
from db import batches, queries, sampling, saved_filters
from ui import context

context.ensure_signed_in()
context.page_header("Thresholds", "Each move is one aggregate query over the stored scores; nothing is recomputed.")
lake, engine = context.lake(), context.engine()

LABELS = {"vis_attn": "VisAttnScore", "clip_score": "CLIPScore", "vis_attn_mass": "image attention mass", "ocr_chars": "OCR characters",
          "ocr_boxes": "OCR boxes", "text_tokens": "text tokens"}
stats = [r for r in queries.score_summary(lake) if r["subject_kind"] == subject_of(r["metric"]) and r["n"] > r["missing"]
         and r["segment"] in ("", "answer")]
if not stats:
    st.info("No scores stored yet: run CLIPScore and VisAttnScore (Jobs page).")
    st.stop()

def _label(r: dict, full_id: bool = False) -> str:
    model = (r["model_id"] if full_id else public_model_id(r["model_id"])) if r["model_id"] else "no model"
    return f"{LABELS.get(r['metric'], r['metric'])} · {model}" + (f" · {r['segment']}" if r["segment"] else "")


short = [_label(r) for r in stats]
# a model's folder name, unless two folders of one name scored the same stat: then the whole id
options = {(_label(r, full_id=True) if short.count(label) > 1 else label): r for r, label in zip(stats, short)}
# one VisAttnScore and one CLIPScore to start with (the first model of each, where several scored them)
first_of: dict[str, str] = {}
for label, r in options.items():
    first_of.setdefault(r["metric"], label)
defaults = [label for metric, label in first_of.items() if metric in ("vis_attn", "clip_score")]
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Stats to threshold", list(options), default=defaults, key="thr_stats")
selections = [name for name, kind, _ in sampling.selection_names(lake) if kind == "sample"]
selection = c2.selectbox("Samples", ["all samples", *selections], key="thr_sel")
selection = None if selection == "all samples" else selection

conditions: list[Condition] = []
for k, label in enumerate(chosen):
    r = options[label]
    with st.container(border=True):
        a, b, c, d = st.columns([2, 1, 4, 2])
        a.markdown(f"**{label}**")
        mode = b.radio("by", ["percentile", "value"], key=f"thr_mode_{label}", label_visibility="collapsed")
        op = d.selectbox("keep", [">=", "<="], key=f"thr_op_{label}", help=">= keeps samples at or above the cut")
        missing = d.checkbox("missing passes", key=f"thr_miss_{label}", value=r["metric"] == "clip_score")
        per_task = d.checkbox("percentile per task", key=f"thr_pt_{label}", disabled=mode != "percentile")
        if mode == "percentile":
            pct = c.slider("percentile", 0, 100, 25 if r["metric"] == "vis_attn" else 20, key=f"thr_pct_{label}")
            cond = Condition(r["metric"], op, None, float(pct), model_id=r["model_id"], segment=r["segment"], per_task=per_task, keep_missing=missing)
        else:
            lo, hi = float(r["min"]), float(r["max"])
            step = (hi - lo) / 200 if hi > lo else 1.0
            value = c.slider("value", lo, hi if hi > lo else lo + 1.0, float(r["p25"]), step=step, format="%.4g", key=f"thr_val_{label}")
            cond = Condition(r["metric"], op, float(value), model_id=r["model_id"], segment=r["segment"], keep_missing=missing)
        conditions.append(cond)

if not conditions:
    st.info("Pick at least one stat.")
    st.stop()
config = FilterConfig(conditions, selection=selection)
try:
    table = context.stats_table(config)
    started = time.perf_counter()
    report, hists = table.summary(config, hist=conditions)
    query_ms = 1000 * (time.perf_counter() - started)
except FilterError as exc:
    st.error(str(exc))
    st.stop()

total = report.kept + report.dropped
m = st.columns(4)
m[0].metric("kept", f"{report.kept:,}", f"{100 * report.kept / total:.1f}%" if total else None, delta_color="off")
m[1].metric("dropped", f"{report.dropped:,}")
m[2].metric("samples", f"{total:,}")
m[3].metric("query time", f"{query_ms:.0f} ms")
st.caption("Cuts: " + "; ".join(f"{k} → {v if isinstance(v, dict) else f'{v:.4g}'}" for k, v in report.thresholds.items()) if report.thresholds else "")


def _cut(cond: Condition):
    if cond.percentile is None:
        return cond.value
    return report.thresholds.get(cond.describe())


for cond in conditions:
    bins = hists.get(table.column(cond)) or []
    if not bins:
        continue
    width = (bins[1][0] - bins[0][0]) if len(bins) > 1 else 1.0
    centres = [b[0] + width / 2 for b in bins]
    fig = go.Figure([go.Bar(x=centres, y=[b[1] - b[2] for b in bins], name="dropped", marker_color="#d62728", width=width),
                     go.Bar(x=centres, y=[b[2] for b in bins], name="kept", marker_color="#2ca02c", width=width)])
    cut = _cut(cond)
    for value in (cut.values() if isinstance(cut, dict) else [cut]):
        if value is not None:
            fig.add_vline(x=value, line_dash="dash", line_color="black")
    fig.update_layout(barmode="stack", height=260, title=LABELS.get(cond.metric, cond.metric) + f": {cond.describe()}", margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, width="stretch")
    if isinstance(cut, (int, float)):
        above, below = table.margin(cond, float(cut))
        texts = {r["sample_id"]: r for r in batches.samples_with_images(lake, [sid for sid, _ in above + below])}
        cols = st.columns(2)
        for col, title, rows in ((cols[0], "just below the cut", below), (cols[1], "just above the cut", above)):
            col.markdown(f"*{title}*")
            col.dataframe([{"value": round(v, 6), "task": texts.get(sid, {}).get("task"), "question": texts.get(sid, {}).get("question"),
                            "answer": texts.get(sid, {}).get("answer")} for sid, v in rows], hide_index=True, width="stretch")
    elif cut is not None:
        st.caption("per-task cuts: the margin strip is shown for a single cut")

left, right = st.columns(2)
for col, title, rows in ((left, "per task", report.per_task), (right, "per category", report.per_category)):
    names = [r[0] for r in rows]
    fig = go.Figure([go.Bar(name="kept", x=names, y=[r[1] for r in rows], marker_color="#2ca02c"),
                     go.Bar(name="dropped", x=names, y=[r[2] for r in rows], marker_color="#d62728")])
    fig.update_layout(barmode="stack", height=300, title=f"Kept and dropped {title}", margin=dict(l=10, r=10, t=40, b=10))
    col.plotly_chart(fig, width="stretch")
    col.dataframe([{"name": n, "kept": k, "dropped": d} for n, k, d in rows], hide_index=True, width="stretch")

st.subheader("Save as a named filter")
with st.form("save_filter"):
    name = st.text_input("Filter name", key="thr_name")
    save = st.form_submit_button("Save filter", help=None if context.allowed("save_filters") else "admins save filters: you will be refused")
if save:
    if not name.strip():
        st.error("give the filter a name")
    else:
        replaced = context.guarded("save_filters", saved_filters.save, engine, name.strip(), config.to_dict(), context.user().username)
        if replaced is not context.REFUSED:
            st.success(f"{'replaced' if replaced else 'saved'} filter {name.strip()!r}: {report.kept:,} samples kept")
