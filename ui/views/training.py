"""Training: LoRA runs with their loss curves, evaluations as tables against a baseline, ablation tables.
Launch runs and evaluations from the Jobs page."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from db.app import training
from trainer.evaluate import accuracies
from trainer.metrics import relative_to
from ui import context
from ui.labels import md

context.ensure_signed_in()
context.page_header("Training", "LoRA runs, their loss curves and the benchmarks (launch them on the Jobs page).")
engine = context.engine()


runs = training.list_runs(engine)
st.subheader("Runs")
if not runs:
    st.info("No training runs yet.")
else:
    st.dataframe([{"name": r.name, "snapshot": r.snapshot, "status": training.run_status(engine, r), "steps": f"{r.steps_done}/{r.total_steps or '?'}",
                   "final loss": r.summary.get("final_loss"), "LoRA r": r.config["lora"]["r"], "lr": r.config["learning_rate"],
                   "adapter": r.summary.get("adapter")} for r in runs], hide_index=True, width="stretch")
    picked = st.multiselect("Loss curves of", [r.name for r in runs], default=[runs[-1].name], key="train_curves")
    if picked:
        loss, lr = go.Figure(), go.Figure()
        for name in picked:
            steps = training.steps(engine, training.get_run(engine, name).id)
            loss.add_trace(go.Scatter(x=[x.step for x in steps], y=[x.loss for x in steps], mode="lines+markers", name=name))
            lr.add_trace(go.Scatter(x=[x.step for x in steps], y=[x.learning_rate for x in steps], mode="lines", name=name))
        loss.update_layout(height=320, title="training loss", xaxis_title="optimiser step", margin=dict(l=10, r=10, t=40, b=10))
        lr.update_layout(height=220, title="learning rate", xaxis_title="optimiser step", margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(loss, width="stretch")
        st.plotly_chart(lr, width="stretch")

evals = training.list_evals(engine)
plain = [e for e in evals if "table" not in (e.results or {})]
ablations = [e for e in evals if "table" in (e.results or {})]
st.subheader("Evaluations")
if not plain:
    st.info("No evaluations yet.")
else:
    names = [e.name for e in plain]
    c = st.columns(2)
    name = c[0].selectbox("Evaluation", names, index=len(names) - 1, key="eval_pick")
    ev = training.get_eval(engine, name)
    baseline = c[1].selectbox("Against", [None, *[n for n in names if n != name]], format_func=lambda n: n or "no baseline",
                              index=([None, *[n for n in names if n != name]].index(ev.baseline) if ev.baseline in names else 0), key="eval_base")
    st.caption(f"{ev.model}" + (f" + adapter {ev.adapter}" if ev.adapter else " (no adapter)") + f" on snapshot {ev.snapshot}")
    if not ev.results:
        st.info(f"no results yet (job {ev.job_id})")
    else:
        base = training.get_eval(engine, baseline) if baseline else None
        rel = relative_to(accuracies(ev.results), accuracies(base.results)) if base is not None and base.results else {}
        for bench in ("objective", "generative", "attributes"):
            scores = ev.results.get(bench)
            if scores is None:
                continue
            m = ev.results.get("measures", {}).get(bench, {})
            st.markdown(f"**{bench}** · {m.get('items', 0)} item(s), {m.get('seconds_per_item', 0):.3f} s/item, peak {m.get('peak_memory_gb', 0):.2f} GB")
            rows = []
            for key, v in scores.items():
                row = {"task" if bench != "attributes" else "attribute": key, "n": v["n"], "accuracy %": round(100 * v["accuracy"], 1)}
                if bench == "objective":
                    row.update({"precision %": round(100 * v["precision"], 1), "recall %": round(100 * v["recall"], 1), "F1 %": round(100 * v["f1"], 1),
                                "yes %": round(100 * v["yes_ratio"], 1), "unparsed": v["unparsed"]})
                if base is not None:
                    row["vs baseline (points)"] = rel.get(f"{bench}/{key}")
                rows.append(row)
            st.dataframe(rows, hide_index=True, width="stretch")
        if base is not None:
            keys = [k for k in rel if k.startswith("objective/")]
            if keys:
                fig = go.Figure(go.Bar(x=[k.split("/", 1)[1] for k in keys], y=[rel[k] for k in keys],
                                       marker_color=["#2ca02c" if rel[k] >= 0 else "#d62728" for k in keys]))
                fig.update_layout(height=280, title=f"objective accuracy against {base.name} (points)", margin=dict(l=10, r=10, t=40, b=10))
                st.plotly_chart(fig, width="stretch")

st.subheader("Ablations")
if not ablations:
    st.caption("No ablations yet (`vitpro ablate SNAPSHOT --model DIR --grid ocr=on,off ...`).")
for ev in ablations:
    with st.expander(f"{md(ev.name)} · snapshot {md(ev.snapshot)}", expanded=ev is ablations[-1]):
        rows = ev.results.get("ablation") or []
        flat = []
        for r in rows:
            row = {"setting": r.get("label")}
            for task, v in (r.get("scores") or {}).items():
                row[f"{task} %"] = round(100 * v["accuracy"], 1)
            row.update({"s/item": r.get("seconds_per_item"), "peak GB": r.get("peak_memory_gb"), "not run": r.get("unavailable")})
            flat.append(row)
        st.dataframe(flat, hide_index=True, width="stretch")
