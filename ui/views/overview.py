"""Overview: the funnel from raw image-text pairs to the final set, and counts per task and category."""
from __future__ import annotations

import json

import plotly.graph_objects as go
import streamlit as st

from curation.filters import FilterError
from db.app import saved_filters, snapshots
from db.reads.quality import ALL
from ui import context
from ui.labels import md

context.ensure_signed_in()
context.page_header("Overview", "How far the data has come: every stage's count, and where samples are lost.")
lake, engine = context.lake(), context.engine()

counts = dict(context.read("funnel"))
# Two funnels, each of one unit: items (what was ingested) and samples (what generation made of them). One
# funnel of both read as "344 samples = 860% of 40 items"; and the selection is beside the sample funnel,
# not in it, since scoring may cover samples outside it (a stage larger than the one before is no funnel).
item_stages = [(name, counts[name]) for name in ("image-text pairs ingested", "with a usable image", "items with generated samples")]
sample_stages = [("samples generated", counts["samples generated"]), ("samples with VisAttnScore", counts["samples with VisAttnScore"])]
filters = saved_filters.list_all(engine)
names_ = [f.name for f in filters]
chosen = st.selectbox("Final set: kept by the saved filter", names_, index=names_.index(saved_filters.newest(filters)) if filters else None,
                      placeholder="no saved filter yet (Thresholds page)") if filters else None
if chosen:
    try:
        # the saved config as the key: editing the filter, like a commit to the tables it reads, counts anew
        kept = context.read("filter_kept", json.dumps(saved_filters.get(engine, chosen).config, sort_keys=True))
        sample_stages.append((f"kept by filter '{md(chosen)}'", kept))
    except FilterError as exc:
        st.warning(f"filter '{md(chosen)}' cannot be applied to the current data: {exc}")
snaps = snapshots.list_all(engine)
if snaps:
    latest = max(snaps, key=lambda s: s.created_at)
    sample_stages.append((f"in snapshot '{md(latest.name)}'", int(latest.counts.get("kept", 0))))

left, right = st.columns(2)
for col, title, stages, colour in ((left, "Items", item_stages, "#1f77b4"), (right, "Samples", sample_stages, "#2ca02c")):
    col.markdown(f"**{title}**")
    cols = col.columns(min(3, len(stages)))
    for k, (name, n) in enumerate(stages):
        cols[k % len(cols)].metric(name, f"{n:,}")
    fig = go.Figure(go.Funnel(y=[name for name, _ in stages], x=[n for _, n in stages], textinfo="value+percent initial", marker_color=colour))
    fig.update_layout(height=60 + 48 * len(stages), margin=dict(l=10, r=10, t=10, b=10))
    col.plotly_chart(fig, width="stretch", key=f"funnel_{title.lower()}")
if counts["samples in a stratified selection"]:
    right.caption(f"{counts['samples in a stratified selection']:,} samples are in a stratified selection (`vitpro sample`); "
                  "scores may cover samples outside it, so it is not a stage of this funnel.")

rows = context.read("per_task_category")
if not rows:
    st.info("No samples yet: ingest data and generate samples (Jobs page, or `vitpro demo`).")
else:
    left, right = st.columns(2)
    tasks: dict[str, list[int]] = {}
    cats: dict[str, list[int]] = {}
    for r in rows:
        for table, key in ((tasks, r["task"]), (cats, r["category"])):
            t = table.setdefault(key, [0, 0])
            t[0] += r["samples"]
            t[1] += r["scored"]
    for col, title, table in ((left, "per task", tasks), (right, "per category", cats)):
        names = sorted(table)
        fig = go.Figure([go.Bar(name="samples", x=names, y=[table[n][0] for n in names]),
                         go.Bar(name="with VisAttnScore", x=names, y=[table[n][1] for n in names])])
        fig.update_layout(barmode="group", height=320, title=f"Samples {title}", margin=dict(l=10, r=10, t=40, b=10))
        col.plotly_chart(fig, width="stretch")
    with st.expander("Counts per task and category"):
        st.dataframe(rows, width="stretch", hide_index=True)

    # The generation quality report (`vitpro generate report`): a stock sentence repeated over thousands of
    # products, or answers that drop the products' own attributes, show here before anyone trains on them.
    st.subheader("Quality of the generated answers")
    backend = st.selectbox("Backend", ["all", "template", "openai", "hf"], key="quality_backend")
    # Every backend's report comes from one read (seconds of aggregates at a million samples, once per
    # version of samples and items): switching the backend reads nothing.
    reports = context.read("generation_quality")
    quality = reports.get(ALL if backend == "all" else backend, {"tasks": []})
    if not quality["tasks"]:
        st.info("No samples from this backend.")
    else:
        limit = quality["max_repeat_share"]
        table = [{"task": t["task"], "samples": t["samples"], "distinct answers": f"{100 * t['distinct_share']:.1f}%",
                  "Unanswerable": f"{100 * t['unanswerable_share']:.1f}%", "yes/no": f"{100 * t['yes_no_share']:.1f}%",
                  "most repeated (not yes/no)": f"{100 * t['most_repeated_share']:.1f}%",
                  "fact coverage": "—" if t["coverage"] is None else f"{100 * t['coverage']:.1f}%",
                  "repetition rule": "ok" if t["within_rule"] else "repeats"} for t in quality["tasks"]]
        names = [t["task"] for t in quality["tasks"]]
        fig = go.Figure([
            go.Bar(name="distinct answers", x=names, y=[100 * t["distinct_share"] for t in quality["tasks"]]),
            go.Bar(name="fact coverage", x=names, y=[100 * (t["coverage"] or 0) for t in quality["tasks"]]),
            go.Bar(name="most repeated answer", x=names, y=[100 * t["most_repeated_share"] for t in quality["tasks"]]),
        ])
        fig.add_hline(y=100 * limit, line_dash="dot", annotation_text=f"repetition limit {100 * limit:g}%")
        fig.update_layout(barmode="group", height=320, yaxis_title="% of the task's samples", margin=dict(l=10, r=10, t=20, b=10))
        st.plotly_chart(fig, width="stretch")
        st.dataframe(table, width="stretch", hide_index=True)
        if not quality["within_rule"]:
            st.warning("Some task repeats one answer for more than "
                       f"{100 * limit:g}% of its samples: see the most repeated answers below.")
        with st.expander("Most repeated answers per task"):
            for t in quality["tasks"]:
                for a in t["top_answers"]:
                    st.text(f"{t['task']}: {a['count']}x {a['answer'][:120]}" + ("  (yes/no)" if a["yes_no"] else ""))
