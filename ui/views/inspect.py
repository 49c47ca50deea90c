"""Inspect: browse samples and read one closely: image(s), question and answer, the answer's grounding
token by token (the paper's Table 2 colouring), both scores with their percentiles, OCR and lineage. Where
several VLMs scored the samples, a second one is shown beside the first (its own token colouring and score)."""
from __future__ import annotations

import streamlit as st

from ui import browse_cache, context, sample_actions, sample_query
from ui import view_state as vs
from ui.heat import escape, gain_block, heat_block, segment_tokens
from ui.images import show_zoomable
from ui.labels import md

context.ensure_signed_in()
context.page_header("Inspect", "Browse samples; ← / → step through them, X excludes (or restores) the one shown. "
                    "Hover a word for its exact A(t) and percentile.")

with st.expander("Filter and sort", expanded=True):
    q = sample_query.controls("insp")
    c5 = q.columns[4]
    others = [m for m in q.vis_models if m != q.vis_model]
    compare = (c5.selectbox("Beside it, VisAttnScore of", [None, *others], index=1 if len(others) == 1 else 0, key="insp_vis2",
                            format_func=lambda m: "(no second model)" if m is None else q.names.get(m, m)) if others else None)
vis_model, clip_model, names, facets = q.vis_model, q.clip_model, q.names, q.facets
vs.publish("insp", q.keys, prefix="insp_")  # the query in the address beside ?sample= (ui/view_state.py)

query = (tuple(q.tasks), tuple(q.categories), q.text, q.order, vis_model, clip_model, q.scored_only)
if st.session_state.get("insp_query") != query:  # a new query starts at its first sample
    if "insp_query" in st.session_state:
        st.session_state["insp_pinned"] = None  # and leaves a linked sample for the list
    st.session_state["insp_query"], st.session_state["insp_pos"] = query, 0
query_args = q.args()
total, _ = browse_cache.browse(**dict(query_args), limit=0)  # from the browse index: no query per step

# A permalink (?sample=<id>) shows that sample; the URL then follows the sample on screen, so a copied
# address always names what was being read.
linked = st.query_params.get("sample")
if linked and linked != st.session_state.get("insp_shown"):
    st.session_state["insp_pinned"] = linked
pinned = st.session_state.get("insp_pinned")
rec = context.read("inspect_record", pinned, vis_model, clip_model) if pinned else None
if pinned and rec is None:
    st.error(f"No sample with id {pinned!r} in the store: the link may be mistyped, or the sample was never generated here. "
             "Showing the list instead.")
    st.session_state["insp_pinned"] = pinned = None

if rec is None and total == 0:
    st.info("No samples match." if facets["task"] else "No samples yet: run the pipeline (Jobs page, or `vitpro demo`).")
    st.stop()


def _step(delta: int) -> None:
    pinned = st.session_state.get("insp_pinned")
    if pinned:  # from a linked sample: to its neighbour in the list, or where the list was left if it is not in it
        st.session_state["insp_pinned"] = None
        at = browse_cache.position(pinned, **dict(query_args))
        if at is None:
            return
        st.session_state["insp_pos"] = at
    st.session_state["insp_pos"] = min(max(0, st.session_state.get("insp_pos", 0) + delta), max(total - 1, 0))


nav = st.columns([1, 1, 4])
nav[0].button("◀ Previous", on_click=_step, args=(-1,), shortcut="left", key="insp_prev", disabled=total == 0)
nav[1].button("Next ▶", on_click=_step, args=(1,), shortcut="right", key="insp_next", disabled=total == 0)
if rec is None:
    pos = min(st.session_state.get("insp_pos", 0), total - 1)
    nav[2].markdown(f"sample **{pos + 1}** of **{total:,}**")
    _, page = browse_cache.browse(**dict(query_args), limit=1, offset=pos)
    rec = context.read("inspect_record", page[0]["sample_id"], vis_model, clip_model)
else:
    nav[2].markdown("the linked sample · ◀ / ▶ step to its neighbours in the list")
sample_id = rec["sample_id"]
st.session_state["insp_shown"] = sample_id
if st.query_params.get("sample") != sample_id:
    st.query_params["sample"] = sample_id
rec2 = context.read("inspect_record", sample_id, compare, None) if compare else None

left, right = st.columns([5, 6])
with left:
    for k, path in enumerate(rec["images"]):
        show_zoomable(path, key=f"insp_img_{k}")
        if len(rec["images"]) > 1:  # the [1], [2] the OCR text and a multi-image prompt refer to
            st.caption(f"image [{k + 1}]")
    if rec["images"]:
        st.caption("scroll to zoom, drag to pan, double-click to reset")
    else:
        st.info("this sample has no image")
with right:
    st.markdown(f"**{escape(rec['task'])}** · {escape(rec['category'])} · `{sample_id}`")
    on = context.read("tags_of", (sample_id,)).get(sample_id)
    if on:
        st.markdown("tags: " + " ".join(f":blue-badge[{md(t)}]" for t in on))
    exclusion = context.read("exclusion_of", sample_id)
    if exclusion:
        st.warning(f"Excluded from the data set by {exclusion['by']} on {exclusion['at']:%Y-%m-%d %H:%M} UTC: {exclusion['reason']}",
                   icon=":material/block:")
    if context.allowed("exclude_samples"):  # X: this sample out of the data set (or back), then → for the next
        def _toggle(shown: str = sample_id) -> None:
            st.session_state["insp_flash"] = sample_actions.toggle_exclusion(shown, st.session_state.get("insp_reason") or "",
                                                                             by=context.user().username)

        x1, x2 = st.columns([3, 2], vertical_alignment="bottom")
        x1.text_input("Reason for X", key="insp_reason", placeholder="e.g. answer not in the image",
                      help="typed once, kept for the next samples you exclude with X")
        x2.button("Restore (X)" if exclusion else "Exclude (X)", on_click=_toggle, shortcut="x", key="insp_exclude",
                  help="X: take this sample out of the data set with the reason beside it, or put it back")
        sample_actions.show(st.session_state.pop("insp_flash", ""))
    st.markdown(f"[Link to this sample](inspect?sample={sample_id})")
    st.code(f"inspect?sample={sample_id}", language=None)
    unit = st.radio("Colour by", ["words", "sub-word pieces"], horizontal=True, key="insp_unit")
    show_q = st.toggle("Colour the question too", key="insp_q")
    pieces = unit == "sub-word pieces"

    def _segment(name: str, text: str, label: str, record=None, model=None) -> bool:
        """The segment coloured on the store-wide scale where its tokens are stored; plain otherwise."""
        tok = segment_tokens((record or rec)["tokens"], name)
        shown = tok and (tok["tokens"] if pieces else tok["words"])
        if shown:
            breaks = context.read("token_percentiles", model or vis_model, tok["segment"], "pieces" if pieces else "words")
            st.html(heat_block(tok["tokens"] if pieces else tok["words"], tok["scores"] if pieces else tok["word_scores"],
                               pieces=pieces, label=label, breaks=breaks))
        else:
            st.html(f'<div style="font-weight:600;margin-top:6px">{escape(label)}</div><div class="plain">{escape(text)}</div>')
        return bool(shown)

    if show_q:
        if not _segment("question", rec["question"], "Question") and vis_model:
            st.caption(f"{names.get(vis_model, vis_model)} has no per-token scores for this question: its grounding run scored the "
                       "answer only. Score the question too (Jobs page, grounding with segment 'question' or 'text') to colour it.")
    else:
        st.html(f'<div style="font-weight:600">Question</div><div class="plain">{escape(rec["question"])}</div>')
    _segment("answer", rec["answer"], "Answer" if rec2 is None else f"Answer, as {names.get(vis_model, vis_model)} grounds it")
    gained, tok = rec.get("gains", {}).get("answer"), rec["tokens"].get("answer")
    if gained and tok and st.toggle("Colour the answer by visual information gain too", value=True, key="insp_gain"):
        # the same tokens in the same order as A(t)'s row: how much the image raised each one's probability
        st.html(gain_block(tok["tokens"] if pieces else gained["words"], gained["gain"] if pieces else gained["word_gain"], pieces=pieces,
                           label="Answer, by visual information gain"))

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
        st.caption(f"attention mass on the image: {vis['mass']:.4g} · model {escape(names.get(vis['model'], vis['model']))}")
    gain = rec["scores"].get("vis_gain/answer")
    if gain and gain.get("value") is not None:
        st.caption(f"visual information gain (answer): {gain['value']:+.4g} nats per token · log p without the image: {gain['blind_logp']:.4g} "
                   "(high: the answer can be guessed from the text alone)")
    judged = rec["scores"].get("judge_yes/answer")
    if judged and judged.get("value") is not None:
        st.caption(f"VLM judge: p(yes) = {judged['value']:.3f} that the image shows what the answer says")
    if rec2 is not None:
        # the same answer as a second VLM grounds it: absolute values differ between models, percentiles compare
        other = rec2["scores"].get("vis_attn/answer")
        _segment("answer", rec["answer"], f"Answer, as {names.get(compare, compare)} grounds it", rec2, model=compare)
        value, pct = _fmt(other)
        st.metric(f"VisAttnScore (answer), {names.get(compare, compare)}", value, pct, delta_color="off")

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
