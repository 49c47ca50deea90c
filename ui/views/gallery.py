"""Gallery: the samples as a grid of thumbnails, a page at a time, with task, both scores and whether a
saved filter keeps each; each tile opens the sample on Inspect. Admins act on a selection (ticks on any page
of the query) or on every sample the query matches (the count confirmed first): exclude from the data set
(with a reason) or restore, or add to a pilot. The query, the page and the filter are in the address. A set
of samples handed over by the Map page ("Open in Gallery") limits the page to them until it is let go."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from curation.filters import FilterConfig, FilterError
from db.app import pilots, saved_filters
from db.lake import exclusions, tags
from db.reads import browse
from ui import browse_cache, context, sample_actions, sample_query
from ui import view_state as vs
from ui.images import thumbnail
from ui.labels import md

COLUMNS = 4
PAGE_SIZES = (12, 24, 48, 96)

me = context.ensure_signed_in()
context.page_header("Gallery", "A page of samples at a time; click a thumbnail (or 'Inspect') to read the sample closely.")
lake, engine = context.lake(), context.engine()
# what the tiles show comes from these: a commit to one of them (a job, another curator) redraws the page
SHOWN_FROM = ("samples", "items", "scores", "exclusions", "sample_tags")
LIVE_SECONDS = context.settings().ui_live_seconds  # VITPRO_UI_LIVE_SECONDS


@st.fragment(run_every=LIVE_SECONDS)
def _live(drawn: int, drawn_at: datetime) -> None:
    """Every LIVE_SECONDS: the whole page again if the data changed since it was drawn (ticks, page and mark
    are kept: they are session state); otherwise only this line, so an idle page does not flicker."""
    if context.tables_version(SHOWN_FROM) != drawn:
        st.rerun(scope="app")
    st.caption(f"as of {drawn_at:%H:%M:%S} UTC · redrawn when the data changes (looked {datetime.now(timezone.utc):%H:%M:%S})")


_live(context.tables_version(SHOWN_FROM), datetime.now(timezone.utc))

saved = saved_filters.list_all(engine)
filters = [f.name for f in saved]
FILTER_NONE = "(no filter)"
PAGE_KEYS = [vs.Key("gal_range", "range"), vs.Key("gal_filter", str, (FILTER_NONE, *filters), saved_filters.newest(saved) or FILTER_NONE),
             vs.Key("gal_size", int, PAGE_SIZES, 24), vs.Key("gal_page", int, None, 1)]
with st.expander("Filter and sort", expanded=True):
    q = sample_query.controls("gal", PAGE_KEYS)
    c5, c6 = q.columns[4], q.columns[5]
    vis_model, facets = q.vis_model, q.facets
    lo, hi = context.read("score_range", vis_model) if vis_model else (None, None)
    vis_range = None
    if lo is not None and hi > lo:
        # a restored range from another model's scores (or an old link) is brought inside today's
        start, end = st.session_state.get("gal_range") or (lo, hi)
        st.session_state["gal_range"] = (min(max(float(start), lo), hi), max(min(float(end), hi), lo))
        vis_range = c5.slider("VisAttnScore between", lo, hi, step=(hi - lo) / 200, format="%.4g", key="gal_range")
        if tuple(vis_range) == (lo, hi):
            vis_range = None  # the whole range: no condition (samples without a score stay listed unless "scored only")
    else:
        st.session_state.pop("gal_range", None)
    st.session_state.setdefault("gal_filter", PAGE_KEYS[1].default)
    chosen_filter = c6.selectbox("Kept or dropped by", [FILTER_NONE, *filters], key="gal_filter")

query_args = q.args(vis_range=tuple(vis_range) if vis_range else None)
# Samples handed over by the Map page ({"ids": Arrow array, "label"}): the query applies within them until "Show every
# sample". In the session, not the address: a map selection can be a million ids.
only = st.session_state.get("gal_only")
if st.session_state.get("gal_query") != (query_args, only and only["label"]):  # another query: ticks made under the last one no longer apply
    if "gal_query" in st.session_state:
        st.session_state["gal_picked"] = set()
    st.session_state["gal_query"] = (query_args, only and only["label"])
if only:
    o1, o2 = st.columns([5, 1], vertical_alignment="center")
    o1.info(f"Showing only {md(only['label'])}; the filters above apply within them.")
    o2.button("Show every sample", key="gal_only_clear", on_click=lambda: st.session_state.pop("gal_only", None))


def _within():
    """(the browse index, the positions of the query's samples that are among the handed-over ones, in the query's order)."""
    args = dict(query_args)
    index = browse_cache.query_index(args.pop("vis_model"), args.pop("clip_model"), "answer")
    picked = index.pick(lake, **args)
    wanted = only["ids"] if isinstance(only["ids"], pa.Array) else pa.array(list(only["ids"]), pa.string())
    return index, picked[pc.is_in(index.ids, value_set=wanted).to_numpy(zero_copy_only=False)[picked]]


within = _within() if only else None


def _browse(limit: int = 0, offset: int = 0, with_text: bool = False) -> tuple[int, list]:
    """browse_cache.browse's (count, page) of the query, within the handed-over samples where there are some."""
    if within is None:
        return browse_cache.browse(**dict(query_args), limit=limit, offset=offset, with_text=with_text)
    index, picked = within
    return len(picked), (index.rows(lake, picked[offset:offset + limit], with_text=with_text) if limit > 0 else [])


total, _ = _browse()  # from the browse index: no query per page
if total == 0:
    vs.publish("gal", [*q.keys, *PAGE_KEYS], prefix="gal_")
    st.info("No samples match." if facets["task"] else "No samples yet: run the pipeline (Jobs page, or `vitpro demo`).")
    st.stop()

p1, p2, p3 = st.columns([1, 1, 3])
st.session_state.setdefault("gal_size", 24)
size = p1.selectbox("Per page", PAGE_SIZES, key="gal_size")
pages = (total + size - 1) // size
if st.session_state.get("gal_page", 1) > pages:  # a narrower query: the last page there is
    st.session_state["gal_page"] = pages
number = int(p2.number_input("Page", min_value=1, max_value=pages, step=1, key="gal_page"))
p3.markdown(f"page **{number}** of **{pages:,}** · **{total:,}** samples · ← / → turn the page; J / K move the ▸ mark between tiles, "
            "O opens the marked one, T ticks it, X excludes (or restores) it")


def _turn(delta: int) -> None:
    st.session_state["gal_page"] = min(max(1, int(st.session_state.get("gal_page", 1)) + delta), pages)
    st.session_state["gal_focus"] = 0


k1, k2, k3 = st.columns([1, 1, 4])
k1.button("◀ Page", on_click=_turn, args=(-1,), shortcut="left", key="gal_prev", disabled=number <= 1)
k2.button("Page ▶", on_click=_turn, args=(1,), shortcut="right", key="gal_next", disabled=number >= pages)
CSV_MAX = 200_000  # rows in one download of the query (a larger query: narrow it, or `vitpro snapshot` / exports)


def _query_csv() -> bytes:
    """The query's samples as CSV (id, task, category, both scores, question, answer), in its order; built
    when the button is clicked, not on every rerun."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sample_id", "task", "category", "vis_attn", "clip_score", "question", "answer"])
    _, every = _browse(limit=CSV_MAX, with_text=True)
    for r in every:
        writer.writerow([r["sample_id"], r["task"], r["category"], r["vis_attn"], r["clip_score"], r["question"], r["answer"]])
    return out.getvalue().encode("utf-8")


k3.download_button(f"Download this query as CSV ({min(total, CSV_MAX):,} rows)", _query_csv, file_name="gallery-query.csv", mime="text/csv",
                   key="gal_csv", on_click="ignore")
vs.publish("gal", [*q.keys, *PAGE_KEYS], prefix="gal_")
_, rows = _browse(limit=size, offset=(number - 1) * size)
ids = [r["sample_id"] for r in rows]

# The keyboard's mark (▸): one tile of this page that O opens, T ticks and X excludes or restores.
focus = min(int(st.session_state.get("gal_focus", 0)), len(rows) - 1)


def _move(delta: int) -> None:
    st.session_state["gal_focus"] = min(max(0, focus + delta), len(ids) - 1)


def _open_marked() -> None:
    st.session_state["gal_open"] = ids[focus]


def _tick_marked() -> None:
    key = f"gal_sel_{ids[focus]}"
    st.session_state[key] = not st.session_state.get(key, False)
    _tick(ids[focus])


def _exclude_marked() -> None:
    st.session_state["gal_flash"] = sample_actions.toggle_exclusion(ids[focus], st.session_state.get("gal_key_reason") or "",
                                                                    by=me.username)


# The ticked samples, on every page of this query: a tick box is drawn on its own page only, and Streamlit
# forgets a widget's key once it is no longer drawn, so the set itself lives apart from the boxes.
picked: set[str] = st.session_state.setdefault("gal_picked", set())
for sid in ids:
    st.session_state.setdefault(f"gal_sel_{sid}", sid in picked)


def _tick(sid: str) -> None:
    (picked.add if st.session_state.get(f"gal_sel_{sid}") else picked.discard)(sid)


def _select_page() -> None:
    for sid in ids:
        st.session_state[f"gal_sel_{sid}"] = st.session_state["gal_all"]
        _tick(sid)


def _clear_picks() -> None:
    picked.clear()
    for sid in ids:
        st.session_state[f"gal_sel_{sid}"] = False


may_exclude, may_pilot = context.allowed("exclude_samples"), context.allowed("create_pilots")
opened = st.session_state.pop("gal_open", None)
if opened:  # O: the marked tile on Inspect, with this page's query (as its link does)
    st.switch_page("views/inspect.py", query_params={"sample": opened, **sample_query.same_query_on("gal", dict(st.query_params), "insp")})
j = st.columns([1, 1, 1, 1, 3, 1], vertical_alignment="bottom")
j[0].button("▸ previous (K)", on_click=_move, args=(-1,), shortcut="k", key="gal_mark_prev", disabled=focus <= 0)
j[1].button("▸ next (J)", on_click=_move, args=(1,), shortcut="j", key="gal_mark_next", disabled=focus >= len(rows) - 1)
j[2].button("Open ▸ (O)", on_click=_open_marked, shortcut="o", key="gal_mark_open")
if may_exclude or may_pilot:
    j[3].button("Tick ▸ (T)", on_click=_tick_marked, shortcut="t", key="gal_mark_tick")
if may_exclude:
    j[4].text_input("Reason for X", key="gal_key_reason", placeholder="e.g. answer not in the image",
                    help="typed once, kept for the next tiles you exclude with X")
    j[5].button("Exclude ▸ (X)", on_click=_exclude_marked, shortcut="x", key="gal_mark_exclude",
                help="X: the marked tile out of the data set with the reason beside it, or back in if it is excluded")
done = None
if may_exclude or may_pilot:  # annotators see no bulk actions at all (the server checks again on each)
    if "gal_flash" in st.session_state:  # what the last action did (it ended with a redraw)
        sample_actions.show(st.session_state.pop("gal_flash"))
    t1, t2, t3 = st.columns([2, 3, 2])
    t1.checkbox("Select all on this page", key="gal_all", on_change=_select_page)
    off_page = len(picked - set(ids))
    t3.button(f"Clear selection ({len(picked):,})", on_click=_clear_picks, disabled=not picked, key="gal_clear")
    scope = t2.radio("Act on", ["selected", "query"], horizontal=True, key="gal_scope",
                     format_func={"selected": "the ticked samples", "query": "every sample the query matches"}.get,
                     help="an action on the whole query asks you to confirm the count first")
    t2.caption(f"{len(picked):,} ticked" + (f" ({off_page:,} on other pages)" if off_page else "") + f" · {total:,} match the query")
    whole = scope == "query"
    target_n = total if whole else len(picked)
    confirm = (st.checkbox(f"Yes, act on all {total:,} samples that match", key="gal_confirm_all", value=False)
               if whole else True)

    def _targets() -> list[str]:
        if whole and within is not None:
            return within[0].ids.take(pa.array(within[1])).to_pylist()
        return browse_cache.ids(**dict(query_args)) if whole else sorted(picked)

    def _may_act() -> bool:
        """Whether an action has samples to act on (and, on the whole query, its count confirmed); says why not."""
        if not target_n:
            st.error("select samples first (the tick box under each thumbnail), or act on the whole query")
        elif not confirm:
            st.error(f"tick 'Yes, act on all {total:,} samples that match' first")
        return bool(target_n and confirm)

    a, b, c = st.columns(3)
    if may_exclude:
        with a.form("gal_exclude_form"):
            st.markdown(f"**Exclude from the data set** · {target_n:,} sample(s)")
            reason = st.text_input("Reason (kept with the exclusion)", key="gal_reason")
            x1, x2 = st.columns(2)
            do_exclude = x1.form_submit_button("Exclude")
            do_restore = x2.form_submit_button("Restore")
        if (do_exclude or do_restore) and _may_act():
            if do_exclude and not reason.strip():
                st.error("give a reason: it is kept with the excluded samples")
            else:
                targets = _targets()
                try:
                    done = sample_actions.exclude_or_restore(targets, exclude=do_exclude, reason=reason, by=me.username)
                except exclusions.ExclusionError as exc:
                    st.error(str(exc))
    if may_pilot:
        listing = [p[0] for p in pilots.list_pilots(engine)]
        with b.form("gal_pilot_form"):
            st.markdown(f"**Add to a pilot** · {target_n:,} sample(s)")
            pilot_name = st.selectbox("Pilot", listing, key="gal_pilot", placeholder="no pilot yet (Pilot page)")
            do_add = st.form_submit_button("Add to the pilot")
        if do_add and _may_act():
            if not pilot_name:
                st.error("create a pilot first (Pilot page)")
            else:
                targets = _targets()
                try:
                    n = context.guarded("create_pilots", pilots.add_samples, lake, engine, pilot_name, targets)
                    if n is not context.REFUSED:
                        done = f"added {n:,} sample(s) to pilot '{md(pilot_name)}'" + (f" ({len(targets) - n:,} were in it already)" if n < len(targets) else "")
                except pilots.PilotError as exc:
                    st.error(str(exc))
    if may_exclude:  # tags are a curator's notes on samples: whoever may exclude may tag
        with c.form("gal_tag_form"):
            st.markdown(f"**Tag** · {target_n:,} sample(s)")
            tag_text = st.text_input("Tags (comma-separated)", key="gal_tags_text", placeholder="blurry, needs-review")
            y1, y2 = st.columns(2)
            do_tag = y1.form_submit_button("Tag")
            do_untag = y2.form_submit_button("Untag")
        if (do_tag or do_untag) and _may_act():
            targets = _targets()
            try:
                change = tags.add if do_tag else tags.remove
                n = context.guarded("exclude_samples", change, lake, targets, [tag_text], by=me.username)
                if n is not context.REFUSED:
                    done = f"{'tagged' if do_tag else 'untagged'} {n:,} (sample, tag) pair(s)"
            except tags.TagError as exc:
                st.error(md(str(exc)))
    if done:  # done with this selection: drawn again from the top, so that every count and box says so
        st.session_state["gal_flash"] = done
        _clear_picks()
        st.session_state.pop("gal_confirm_all", None)
        st.rerun()

# read after the actions above, so that a tile shows what the action made of it
kept: dict[str, bool] = {}
if chosen_filter != FILTER_NONE:
    try:
        config = FilterConfig.from_dict(saved_filters.get(engine, chosen_filter).config)
        kept = browse.kept_flags(lake, context.stats_table(config).kept_sql(config), ids)
    except FilterError as exc:
        st.warning(f"filter '{md(chosen_filter)}' cannot be applied to the current data: {exc}")
excluded = context.read("excluded_among", tuple(ids))
tagged = context.read("tags_of", tuple(ids))
images = context.read("first_images", tuple(ids))
gains = context.read("metric_of_samples", tuple(ids), "vis_gain", vis_model) if vis_model else {}
verdicts = context.read("metric_of_samples", tuple(ids), "judge_yes", vis_model) if vis_model else {}
blobs = context.blobs()
# a tile's Inspect carries this page's query, so that Inspect's arrows step through the same samples
carried = sample_query.same_query_on("gal", dict(st.query_params), "insp")
for start in range(0, len(rows), COLUMNS):
    cols = st.columns(COLUMNS)
    for k, (col, r) in enumerate(zip(cols, rows[start:start + COLUMNS]), start):
        sid = r["sample_id"]
        link = "inspect?" + urlencode({"sample": sid, **carried})
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
            marks = " ".join(f":blue-badge[{md(t)}]" for t in tagged.get(sid, []))
            mark = ":orange-badge[▸ marked] " if k == focus else ""
            # visual information gain and the VLM judge's p(yes), where the grounding run computed them
            gained = (f" · gain {gains[sid]:+.3g}" if sid in gains else "") + (f" · judge {verdicts[sid]:.2f}" if sid in verdicts else "")
            st.markdown(f"{mark}**{r['task']}** {badge} {marks}  \nVisAttnScore {vis} · CLIPScore {clip}{gained}  \n[Inspect]({link})")
            if may_exclude or may_pilot:
                st.checkbox("select", key=f"gal_sel_{sid}", on_change=_tick, args=(sid,))
