"""Inspect: browse samples and read one closely: image(s), question and answer, the answer's grounding
token by token (the paper's Table 2 colouring), both scores with their percentiles, OCR and lineage. Where
several VLMs scored the samples, a second one is shown beside the first (its own token colouring and score)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from curation.model_ids import public_model_id
from db import browse
from ui import context
from ui.heat import escape, heat_block

context.ensure_signed_in()
context.page_header("Inspect", "Browse samples; ← / → step through them. Hover a word for its exact A(t).")

vis_models = context.read("stored_models", "vis_attn", "answer", True)
clip_models = context.read("stored_models", "clip_score", "", True)
facets = context.read("facets")
with st.expander("Filter and sort", expanded=True):
    c1, c2, c3 = st.columns(3)
    tasks = c1.multiselect("Task", facets["task"], key="insp_tasks")
    cats = c2.multiselect("Category", facets["category"], key="insp_cats")
    text = c3.text_input("Text contains", key="insp_text")
    c4, c5, c6 = st.columns(3)
    order = c4.selectbox("Order", list(browse.ORDERS), key="insp_order")
    vis_model = c5.selectbox("VisAttnScore model", vis_models, key="insp_vis", format_func=public_model_id) if vis_models else None
    clip_model = c6.selectbox("CLIPScore model", clip_models, key="insp_clip", format_func=public_model_id) if clip_models else None
    others = [m for m in vis_models if m != vis_model]
    compare = (c5.selectbox("Beside it, VisAttnScore of", [None, *others], index=1 if len(others) == 1 else 0, key="insp_vis2",
                            format_func=lambda m: "(no second model)" if m is None else public_model_id(m)) if others else None)

query = (tuple(tasks), tuple(cats), text, order, vis_model, clip_model)
if st.session_state.get("insp_query") != query:  # a new query starts at its first sample
    st.session_state["insp_query"], st.session_state["insp_pos"] = query, 0
query_args = (("vis_model", vis_model), ("clip_model", clip_model), ("tasks", tuple(tasks)), ("categories", tuple(cats)), ("text", text), ("order", order))
total, _ = context.read("browse", query_args + (("limit", 0),))
if total == 0:
    st.info("No samples match." if facets["task"] else "No samples yet: run the pipeline (Jobs page, or `vitpro demo`).")
    st.stop()


def _step(delta: int) -> None:
    st.session_state["insp_pos"] = min(max(0, st.session_state.get("insp_pos", 0) + delta), total - 1)


nav = st.columns([1, 1, 4])
nav[0].button("◀ Previous", on_click=_step, args=(-1,), shortcut="left", key="insp_prev")
nav[1].button("Next ▶", on_click=_step, args=(1,), shortcut="right", key="insp_next")
pos = min(st.session_state.get("insp_pos", 0), total - 1)
nav[2].markdown(f"sample **{pos + 1}** of **{total:,}**")
_, page = context.read("browse", query_args + (("limit", 1), ("offset", pos)))
rec = context.read("sample_record", page[0]["sample_id"], vis_model, clip_model)
rec2 = context.read("sample_record", page[0]["sample_id"], compare, None) if compare else None

left, right = st.columns([5, 6])
with left:
    for path in rec["images"]:
        if Path(path).is_file():
            st.image(path, width="stretch")
        else:
            st.warning(f"image file missing: {path}")
    if not rec["images"]:
        st.info("this sample has no image")
with right:
    st.markdown(f"**{escape(rec['task'])}** · {escape(rec['category'])} · `{rec['sample_id']}`")
    unit = st.radio("Colour by", ["words", "sub-word pieces"], horizontal=True, key="insp_unit")
    show_q = st.toggle("Colour the question too", key="insp_q")
    pieces = unit == "sub-word pieces"

    def _segment(name: str, text: str, label: str, record=None) -> None:
        tok = (record or rec)["tokens"].get(name)
        if tok and (tok["tokens"] if pieces else tok["words"]):
            st.html(heat_block(tok["tokens"] if pieces else tok["words"], tok["scores"] if pieces else tok["word_scores"], pieces=pieces, label=label))
        else:
            st.html(f'<div style="font-weight:600;margin-top:6px">{escape(label)}</div><div class="plain">{escape(text)}</div>')

    if show_q:
        _segment("question", rec["question"], "Question")
    else:
        st.html(f'<div style="font-weight:600">Question</div><div class="plain">{escape(rec["question"])}</div>')
    _segment("answer", rec["answer"], "Answer" if rec2 is None else f"Answer, as {public_model_id(vis_model)} grounds it")

    m = st.columns(2)
    clip = rec["scores"].get("clip_score")
    vis = rec["scores"].get("vis_attn/answer")

    def _fmt(score) -> tuple[str, str | None]:
        if not score or score.get("value") is None:
            return "—", "not scored"
        pct = score.get("percentile")
        return f"{score['value']:.4g}", (f"percentile {pct:.0f}" if pct is not None else None)

    value, pct = _fmt(clip)
    m[0].metric("CLIPScore (item)", value, pct, delta_color="off")
    value, pct = _fmt(vis)
    m[1].metric("VisAttnScore (answer)", value, pct, delta_color="off")
    if vis and vis.get("mass") is not None:
        st.caption(f"attention mass on the image: {vis['mass']:.4g} · model {escape(public_model_id(vis['model']))}")
    if rec2 is not None:
        # the same answer as a second VLM grounds it: absolute values differ between models, percentiles compare
        other = rec2["scores"].get("vis_attn/answer")
        _segment("answer", rec["answer"], f"Answer, as {public_model_id(compare)} grounds it", rec2)
        value, pct = _fmt(other)
        st.metric(f"VisAttnScore (answer), {public_model_id(compare)}", value, pct, delta_color="off")

with st.expander("Evidence: the item's fields this answer rests on", expanded=rec.get("evidence") is not None):
    if rec.get("evidence"):
        st.dataframe([{"field": e.get("field"), "key": e.get("key") or "", "text": e.get("text")} for e in rec["evidence"]],
                     width="stretch", hide_index=True)
    else:
        st.caption("none recorded: an LLM wrote this answer from the item's text (the template backend records its sources)")
with st.expander("OCR text of the images"):
    for k, text in enumerate(rec["ocr"], 1):
        st.html(f"<div><b>[{k}]</b> {escape(text) or '<i>no text read</i>'}</div>")
with st.expander("Lineage"):
    st.json(rec["lineage"])
    st.text(f"item text: {rec['item_text'] or ''}"[:600])
