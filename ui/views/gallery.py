"""Gallery: the samples as a grid of thumbnails, a page at a time, with task, both scores and whether a
saved filter keeps each; each tile opens the sample on Inspect. Admins act on a selection: exclude it from
the data set (with a reason) or restore it, or add it to a pilot."""
from __future__ import annotations

import streamlit as st

from curation.filters import FilterConfig, FilterError
from db.app import pilots, saved_filters
from db.lake import exclusions
from db.reads import browse
from ui import browse_cache, context, sample_query
from ui.images import thumbnail

COLUMNS = 4
PAGE_SIZES = (12, 24, 48, 96)

me = context.ensure_signed_in()
context.page_header("Gallery", "A page of samples at a time; click a thumbnail (or 'Inspect') to read the sample closely.")
lake, engine = context.lake(), context.engine()

filters = [f.name for f in saved_filters.list_all(engine)]
with st.expander("Filter and sort", expanded=True):
    q = sample_query.controls("gal")
    c5, c6 = q.columns[4], q.columns[5]
    vis_model, facets = q.vis_model, q.facets
    lo, hi = context.read("score_range", vis_model) if vis_model else (None, None)
    vis_range = None
    if lo is not None and hi > lo:
        vis_range = c5.slider("VisAttnScore between", lo, hi, (lo, hi), step=(hi - lo) / 200, format="%.4g", key="gal_range")
        if tuple(vis_range) == (lo, hi):
            vis_range = None  # the whole range: no condition (samples without a score stay listed unless "scored only")
    chosen_filter = c6.selectbox("Kept or dropped by", ["(no filter)", *filters], index=1 if filters else 0, key="gal_filter")

query_args = q.args(vis_range=tuple(vis_range) if vis_range else None)
total, _ = browse_cache.browse(**dict(query_args), limit=0)  # from the browse index: no query per page
if total == 0:
    st.info("No samples match." if facets["task"] else "No samples yet: run the pipeline (Jobs page, or `vitpro demo`).")
    st.stop()

p1, p2, p3 = st.columns([1, 1, 3])
size = p1.selectbox("Per page", PAGE_SIZES, index=1, key="gal_size")
pages = (total + size - 1) // size
if st.session_state.get("gal_page", 1) > pages:  # a narrower query: the last page there is
    st.session_state["gal_page"] = pages
number = int(p2.number_input("Page", min_value=1, max_value=pages, step=1, key="gal_page"))
p3.markdown(f"page **{number}** of **{pages:,}** · **{total:,}** samples")
_, rows = browse_cache.browse(**dict(query_args), limit=size, offset=(number - 1) * size)
ids = [r["sample_id"] for r in rows]

kept: dict[str, bool] = {}
if chosen_filter != "(no filter)":
    try:
        config = FilterConfig.from_dict(saved_filters.get(engine, chosen_filter).config)
        kept = browse.kept_flags(lake, context.stats_table(config).kept_sql(config), ids)
    except FilterError as exc:
        st.warning(f"filter {chosen_filter!r} cannot be applied to the current data: {exc}")


def _select_page() -> None:
    for sid in ids:
        st.session_state[f"gal_sel_{sid}"] = st.session_state["gal_all"]


selected = [sid for sid in ids if st.session_state.get(f"gal_sel_{sid}")]
may_exclude, may_pilot = context.allowed("exclude_samples"), context.allowed("create_pilots")
if may_exclude or may_pilot:  # annotators see no bulk actions at all (the server checks again on each)
    st.checkbox("Select all on this page", key="gal_all", on_change=_select_page)
    a, b = st.columns(2)
    done = None
    if may_exclude:
        with a.form("gal_exclude_form"):
            st.markdown(f"**Exclude from the data set** · {len(selected)} selected")
            reason = st.text_input("Reason (kept with the exclusion)", key="gal_reason")
            x1, x2 = st.columns(2)
            do_exclude = x1.form_submit_button("Exclude selected")
            do_restore = x2.form_submit_button("Restore selected")
        if (do_exclude or do_restore) and not selected:
            st.error("select samples first (the tick box under each thumbnail)")
        elif do_exclude and not reason.strip():
            st.error("give a reason: it is kept with the excluded samples")
        elif do_exclude or do_restore:
            try:
                if do_exclude:
                    n = context.guarded("exclude_samples", exclusions.exclude, lake, selected, reason=reason.strip(), by=me.username)
                    done = None if n is context.REFUSED else f"excluded {n} sample(s)" + (f" ({len(selected) - n} were already)" if n < len(selected) else "")
                else:
                    n = context.guarded("exclude_samples", exclusions.restore, lake, selected, by=me.username)
                    done = None if n is context.REFUSED else f"restored {n} sample(s)"
            except exclusions.ExclusionError as exc:
                st.error(str(exc))
    if may_pilot:
        listing = [p[0] for p in pilots.list_pilots(engine)]
        with b.form("gal_pilot_form"):
            st.markdown(f"**Add to a pilot** · {len(selected)} selected")
            pilot_name = st.selectbox("Pilot", listing, key="gal_pilot", placeholder="no pilot yet (Pilot page)")
            do_add = st.form_submit_button("Add selected to the pilot")
        if do_add:
            if not selected:
                st.error("select samples first (the tick box under each thumbnail)")
            elif not pilot_name:
                st.error("create a pilot first (Pilot page)")
            else:
                try:
                    n = context.guarded("create_pilots", pilots.add_samples, lake, engine, pilot_name, selected)
                    if n is not context.REFUSED:
                        done = f"added {n} sample(s) to pilot {pilot_name!r}" + (f" ({len(selected) - n} were in it already)" if n < len(selected) else "")
                except pilots.PilotError as exc:
                    st.error(str(exc))
    if done:
        st.success(done)
        for sid in selected:  # done with this selection (the boxes are drawn below: they may still be set)
            st.session_state[f"gal_sel_{sid}"] = False

excluded = context.read("excluded_among", tuple(ids))
images = context.read("first_images", tuple(ids))
blobs = context.blobs()
for start in range(0, len(rows), COLUMNS):
    cols = st.columns(COLUMNS)
    for col, r in zip(cols, rows[start:start + COLUMNS]):
        sid = r["sample_id"]
        link = f"inspect?sample={sid}"
        with col.container(border=True):
            thumb = thumbnail(str(blobs.local(images[sid], missing_ok=True))) if sid in images else None
            if thumb:
                st.image(thumb, width="stretch", link=link)
            else:
                st.caption("no image" if sid not in images else "image file missing")
            if sid in excluded:
                badge = ":gray-badge[excluded]"
            elif sid in kept:
                badge = ":green-badge[kept]" if kept[sid] else ":red-badge[dropped]"
            else:
                badge = ""
            vis = "—" if r["vis_attn"] is None else f"{r['vis_attn']:.4g}"
            clip = "—" if r["clip_score"] is None else f"{r['clip_score']:.4g}"
            st.markdown(f"**{r['task']}** {badge}  \nVisAttnScore {vis} · CLIPScore {clip}  \n[Inspect]({link})")
            if may_exclude or may_pilot:
                st.checkbox("select", key=f"gal_sel_{sid}")
