"""Map: every sample on a 2-D projection of its first image's embedding (the map job's map_x / map_y), as a
WebGL scatter coloured by task, by kept / dropped / excluded under a saved filter, or by any stored stat (a
k-means cluster or a near-duplicate group as categories). Beyond 50,000 samples a sample of them is drawn
over a density of all (db/reads/map_reads.py says which and why); a box, a lasso or clicked points select
over every point, drawn or not. Hovering a point shows its photo by the cursor (ui/map_hover.py: a hover label
cannot hold an image); a clicked point's photo, task and value stay beside the map. The selection opens in the
Gallery; admins exclude it, tag it or add it to a pilot."""
from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from curation.filters import FilterConfig, FilterError
from db.app import pilots, saved_filters
from db.lake import exclusions, metrics, tags
from db.reads import browse, map_reads
from ui import context, map_hover, sample_actions, stats_cache, warm
from ui import view_state as vs
from ui.images import thumbnail
from ui.labels import md, model_labels

me = context.ensure_signed_in()
context.page_header("Map", "Every sample at its first image's place on a 2-D projection of the image embeddings; "
                    "drag a box or a lasso (or click points) to select, over every point, drawn or not.")
lake, engine = context.lake(), context.engine()
HOME = str(context.settings().home)
POINT_TABLES = ("samples", "scores")  # what the points and the stats read: a commit to another table keeps them
VERSION = context.tables_version(POINT_TABLES)
DRAWN_CHOICES = (10_000, 25_000, 50_000, 100_000)  # points drawn at most (a sample beyond: see map_reads)
DENSITY_BINS = 160
MISSING_COLOUR = "#c8c8c8"
STATUS_COLOURS = {"kept": "#1f77b4", "in the data set": "#1f77b4", "dropped": "#ff7f0e", "excluded": "#444444"}  # blue / orange: colour-blind safe
LEGEND_MAX = 24  # categories drawn as traces of their own (a legend entry each); more share one trace
GALLERY = "views/gallery.py"
TASK, STATUS = "task", "kept / dropped / excluded"
NO_FILTER = "(no filter: excluded or not)"


# ---- reads, remembered per version of the tables they read (a click that changes nothing costs nothing) ----
@st.cache_data(show_spinner=False, max_entries=8)
def _catalog(version: int, home: str) -> tuple[list[dict], list[map_reads.Colour]]:
    """The projections stored and the stats a point can be coloured by (one pass over the scores' kinds)."""
    return map_reads.catalog(context.lake(), version)


@st.cache_resource(show_spinner=False, max_entries=4)
def _points(home: str, version: int, model_id: str) -> map_reads.MapPoints:
    """Every point of one projection: one query per version (kept on disk: a restarted server loads a file)."""
    return map_reads.load_points(context.lake(), model_id, version=version, cache_dir=Path(home) / "cache" / "reads")


def _points_now(model_id: str) -> map_reads.MapPoints:
    return _points(str(context.settings().home), context.tables_version(POINT_TABLES), model_id)


warm.register("map_points", _points_now)  # after a job's commit, built again in the background (ui/warm.py)
warm.register("map_catalog", lambda: _catalog(context.tables_version(POINT_TABLES), str(context.settings().home)))


@st.cache_resource(show_spinner=False, max_entries=16)
def _stat_colours(home: str, version: int, model_id: str, colour: map_reads.Colour) -> map_reads.Colours:
    return map_reads.stat_values(context.lake(), _points(home, version, model_id), colour, version=version)


@st.cache_resource(show_spinner=False, max_entries=8)
def _status_colours(home: str, version: int, status_version: int, model_id: str, filter_json: str | None) -> map_reads.Colours:
    kept_sql = None
    if filter_json is not None:
        config = FilterConfig.from_dict(json.loads(filter_json))
        kept_sql = context.stats_table(config).kept_sql(config)
    return map_reads.status_values(context.lake(), _points(home, version, model_id), kept_sql=kept_sql)


def _readable(model_ids: list[str]) -> dict[str, str]:
    """Readable model names (ui/labels.py); the map and clusters jobs' ``METHOD@MODEL`` ids as the method and the model's name."""
    ids = [m for m in dict.fromkeys(model_ids) if m]
    tails = model_labels([m.split("@", 1)[1] if "@" in m else m for m in ids])
    return {m: (m.split("@", 1)[0] + "@" + tails[m.split("@", 1)[1]]) if "@" in m else tails[m] for m in ids}


def _colour_label(c: map_reads.Colour, names: dict[str, str]) -> str:
    return f"{metrics.label(c.metric)} · {names.get(c.model_id) or 'no model'}" + (f" · {c.segment}" if c.segment else "")


# ---- no map yet ------------------------------------------------------------------------------------------
warm.note("map_catalog")
projections, stat_options = _catalog(VERSION, HOME)
if not projections:
    st.info("No map yet: it needs the image embeddings (the CLIPScore job stores them) projected to 2-D. "
            "Run `vitpro map --local` (or the map form on the Jobs page, under Duplicates & map), then come back.")
    st.stop()

by_model = {p["model_id"]: p for p in projections}
names = _readable([p["model_id"] for p in projections] + [c.model_id for c in stat_options])
colour_by = {TASK: None, STATUS: None, **{_colour_label(c, names): c for c in stat_options}}
saved = saved_filters.list_all(engine)
filters = [f.name for f in saved]
KEYS = [vs.Key("map_proj", str, tuple(by_model), projections[0]["model_id"]), vs.Key("map_colour", str, tuple(colour_by), TASK),
        vs.Key("map_filter", str, (NO_FILTER, *filters), saved_filters.newest(saved) or NO_FILTER), vs.Key("map_drawn", int, DRAWN_CHOICES, 50_000)]
vs.restore("map", KEYS)
for key in KEYS:  # a value gone from the choices (a projection or stat no longer stored): the default
    if st.session_state.get(key.name) not in key.choices:
        st.session_state[key.name] = key.default
c1, c2, c3, c4 = st.columns([3, 3, 2, 1])
model = c1.selectbox("Projection", list(by_model), key="map_proj", format_func=lambda m: f"{names.get(m, m)} · {by_model[m]['images']:,} images "
                     f"· {by_model[m]['created']}", help="the newest first; each is one run of the map job")
chosen = c2.selectbox("Colour by", list(colour_by), key="map_colour",
                      help="an image stat is its value for the point's image (a sample's first image), an item stat its item's")
filter_name = c3.selectbox("Kept or dropped by", [NO_FILTER, *filters], key="map_filter", disabled=chosen != STATUS,
                           help="the saved filter that says kept or dropped (with 'Colour by: kept / dropped / excluded')")
limit = c4.selectbox("Points drawn", DRAWN_CHOICES, key="map_drawn", format_func=lambda n: f"{n:,}",
                     help="at most this many are drawn (the same ones every time); the grey density shows them all")
vs.publish("map", KEYS, prefix="map_")

warm.note("map_points", model)
points = _points(HOME, VERSION, model)
if not len(points):
    st.info(f"The projection {md(names.get(model, model))} places none of the samples' first images: run `vitpro map --local` again "
            "after new samples or images.")
    st.stop()

# ---- colours ---------------------------------------------------------------------------------------------
if chosen == TASK:
    colours = map_reads.task_values(points)
elif chosen == STATUS:
    filter_json, config = None, None
    if filter_name != NO_FILTER:
        try:
            config = FilterConfig.from_dict(saved_filters.get(engine, filter_name).config)
            context.stats_table(config)  # a filter the store cannot apply says so here
            filter_json = json.dumps(config.to_dict(), sort_keys=True)
        except FilterError as exc:
            st.warning(f"filter '{md(filter_name)}' cannot be applied to the current data: {exc}")
            config = None
    status_tables = stats_cache.tables_read(config.selection) if filter_json else ("exclusions",)
    colours = _status_colours(HOME, VERSION, context.tables_version(status_tables), model, filter_json)
else:
    colours = _stat_colours(HOME, VERSION, model, colour_by[chosen])


# ---- the figure ------------------------------------------------------------------------------------------
def _palette(n: int) -> list[str]:
    return list(qualitative.Plotly if n <= 10 else qualitative.Dark24)


def figure(points: map_reads.MapPoints, drawn: np.ndarray, colours: map_reads.Colours, title: str) -> tuple[go.Figure, list]:
    """(the figure, the positions each of its traces draws: None for the density); a point's trace and index
    in a selection event find its sample through the second."""
    traces: list = []
    data: list = []
    dense = len(drawn) < len(points)
    if dense:  # every point, as counts per cell (log scale): where the undrawn ones are
        counts, xc, yc = points.density(DENSITY_BINS)
        z = np.log1p(counts).astype(np.float32)
        z[counts == 0] = np.nan
        data.append(go.Heatmap(z=z, x=xc.astype(np.float32), y=yc.astype(np.float32), colorscale=[[0, "#f2f2f2"], [1, "#7a7a7a"]],
                               showscale=False, hoverinfo="skip", zsmooth=False, name="density of all points"))
        traces.append(None)
    size = 3 if len(drawn) > 20_000 else 5 if len(drawn) > 2_000 else 7
    marker = dict(size=size, opacity=0.85)
    values = colours.values[drawn]
    missing = values < 0 if colours.categorical else np.isnan(values)
    if missing.any():
        at = drawn[missing]
        data.append(go.Scattergl(x=points.x[at], y=points.y[at], mode="markers", name=colours.missing, marker=dict(marker, color=MISSING_COLOUR),
                                 hovertemplate=f"{html.escape(colours.missing)}<extra></extra>"))
        traces.append(at)
    if colours.categorical:
        present = np.flatnonzero(np.bincount(values[~missing], minlength=len(colours.labels)))
        if len(present) <= LEGEND_MAX:
            palette = _palette(len(colours.labels))
            for code in present:
                at = drawn[values == code]
                label = colours.labels[code]
                tone = STATUS_COLOURS.get(label) if title == STATUS else None
                data.append(go.Scattergl(x=points.x[at], y=points.y[at], mode="markers", name=html.escape(label),
                                         marker=dict(marker, color=tone or palette[code % len(palette)]),
                                         hovertemplate=f"{html.escape(label)}<extra></extra>"))
                traces.append(at)
        else:  # many groups: one trace, each group a colour of the palette (neighbouring numbers differ), its number in the hover
            at = drawn[~missing]
            palette = list(qualitative.Dark24)
            scale = [[k / (len(palette) - 1), c] for k, c in enumerate(palette)]
            numbers = colours.numbers[values[~missing]] if colours.numbers is not None else values[~missing]
            data.append(go.Scattergl(x=points.x[at], y=points.y[at], mode="markers", name=html.escape(title), customdata=numbers.astype(np.int32),
                                     marker=dict(marker, color=(values[~missing] % len(palette)).astype(np.int8), colorscale=scale, cmin=0,
                                                 cmax=len(palette) - 1),
                                     hovertemplate=colours.labels[0].rsplit(" ", 1)[0] + " %{customdata}<extra></extra>"))
            traces.append(at)
    else:
        at = drawn[~missing]
        every = colours.values[~np.isnan(colours.values)]
        lo, hi = (float(every.min()), float(every.max())) if len(every) else (0.0, 1.0)
        data.append(go.Scattergl(x=points.x[at], y=points.y[at], mode="markers", name=html.escape(title),
                                 marker=dict(marker, color=colours.values[at].astype(np.float32), colorscale="Viridis",
                                             cmin=lo, cmax=hi, showscale=True,
                                             colorbar=dict(title=dict(text=html.escape(title.split(" · ")[0])), thickness=12)),
                                 hovertemplate="%{marker.color:.4g}<extra></extra>"))
        traces.append(at)
    fig = go.Figure(data)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, title=None, scaleanchor="x")
    fig.update_layout(height=640, margin=dict(l=0, r=0, t=10, b=0), dragmode="select", uirevision=points.model_id,
                      legend=dict(itemsizing="constant", orientation="h", y=-0.02), plot_bgcolor="white")
    return fig, traces


drawn = points.drawn(limit)
fig, traces = figure(points, drawn, colours, chosen)
n_all = len(points)
if len(drawn) < n_all:
    st.caption(f"Drawn: a sample of **{len(drawn):,}** of the **{n_all:,}** samples on this map (always the same ones: those with the "
               f"smallest hash of their id); the grey background is the density of all {n_all:,} (log scale). A selection counts every "
               "sample inside it, drawn or not.")
else:
    st.caption(f"Drawn: all **{n_all:,}** samples on this map.")
st.caption("One item's samples (one per task) share its photo, hence its place: each point is moved by a small fixed jitter so that "
           "they show side by side. **Hover a point** to see its photo; **click** it to keep its photo, task and value beside the map.")

blobs = context.blobs()
map_col, side = st.columns([4, 1])
with map_col:
    event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("box", "lasso", "points"), width="stretch",
                            config={"displaylogo": False, "scrollZoom": True})
    map_hover.mount(map_hover.register(points, traces, blobs, lambda sid: browse.first_images(lake, [sid]).get(sid)), "map_chart")


# ---- the selection: boxes and lassos over every point, or the clicked points ------------------------------
def _from_event(event) -> dict | None:
    """What the chart's event selected, in map terms: boxes and lassos as shapes (applied to every point), or
    the clicked points' sample ids. None for an empty event (a redrawn chart starts empty)."""
    sel = (event or {}).get("selection") or {}
    boxes = [(float(b["x"][0]), float(b["x"][1]), float(b["y"][0]), float(b["y"][1])) for b in sel.get("box") or [] if len(b.get("x") or []) == 2]
    lassos = [([float(v) for v in s["x"]], [float(v) for v in s["y"]]) for s in sel.get("lasso") or [] if len(s.get("x") or []) >= 3]
    if boxes or lassos:
        return {"model": model, "boxes": boxes, "lassos": lassos, "ids": []}
    clicked = []
    for p in sel.get("points") or []:
        curve, index = p.get("curve_number"), p.get("point_index", p.get("point_number"))
        if curve is not None and index is not None and 0 <= curve < len(traces) and traces[curve] is not None and 0 <= index < len(traces[curve]):
            clicked.append(int(traces[curve][index]))
    if clicked:
        return {"model": model, "boxes": [], "lassos": [], "ids": points.ids(np.array(clicked))}
    return None


def _clear_selection() -> None:
    st.session_state.pop("map_sel", None)
    st.session_state.pop("map_point", None)


# A chart whose figure changes (another colour, a recoloured point after an exclusion) is a new chart with an empty
# selection: the selection is kept apart, and replaced only by a new selection, not by a redrawn chart's empty one.
new = _from_event(event)
if new is not None and new != st.session_state.get("map_sel_seen"):
    st.session_state["map_sel_seen"] = new
    st.session_state["map_sel"] = new
    if new["ids"]:
        st.session_state["map_point"] = new["ids"][-1]
selection = st.session_state.get("map_sel")
if selection and selection.get("model") != model:  # drawn on another projection: its shapes mean nothing here
    _clear_selection()
    selection = None


def resolve(points: map_reads.MapPoints, selection: dict) -> np.ndarray:
    """The positions of every point the selection holds, in hash order."""
    parts = [points.inside_box(*b) for b in selection["boxes"]] + [points.inside_polygon(xs, ys) for xs, ys in selection["lassos"]]
    if selection["ids"]:
        parts.append(points.positions_of(selection["ids"]))
    return np.unique(np.concatenate(parts)) if parts else map_reads.EMPTY


def _value_text(position: int) -> str:
    v = colours.values[position]
    if colours.categorical:
        return colours.missing if v < 0 else colours.labels[v]
    return colours.missing if np.isnan(v) else f"{v:.4g}"


def _inspect(sample_id: str) -> str:
    return f"inspect?sample={quote(sample_id, safe='')}"


with side:  # the clicked point: its photo, what it is, a link
    shown_id = st.session_state.get("map_point")
    at = points.positions_of([shown_id]) if shown_id else map_reads.EMPTY
    if len(at):
        pos = int(at[0])
        image = context.read("first_images", (shown_id,)).get(shown_id)
        thumb = thumbnail(str(blobs.local(image, missing_ok=True))) if image else None
        if thumb:
            st.image(thumb, width="stretch", link=_inspect(shown_id))
        else:
            st.caption("image file missing" if image else "no image")
        st.markdown(f"**{md(points.tasks[points.task_codes[pos]])}** · {md(chosen)}: {md(_value_text(pos))}  \n`{shown_id}`  \n"
                    f"[Inspect]({_inspect(shown_id)})")
    else:
        st.caption("Click a point: its photo, task and colour value show here.")

if "map_flash" in st.session_state:  # what the last action did (it ended with a redraw)
    st.success(st.session_state.pop("map_flash"))
if not selection:
    st.caption("Nothing selected: drag a box (or pick the lasso in the chart's tool bar) over the map, or click points "
               "(shift-click adds more).")
    st.stop()

chosen_at = resolve(points, selection)
n_sel = len(chosen_at)
how = ", ".join(part for part in (
    f"{len(selection['boxes'])} box{'es' if len(selection['boxes']) > 1 else ''}" if selection["boxes"] else "",
    f"{len(selection['lassos'])} lasso{'s' if len(selection['lassos']) > 1 else ''}" if selection["lassos"] else "",
    f"{len(selection['ids'])} clicked point{'s' if len(selection['ids']) > 1 else ''}" if selection["ids"] else "") if part)
s1, s2 = st.columns([5, 1])
s1.subheader(f"Selection: {n_sel:,} sample{'' if n_sel == 1 else 's'}")
s2.button("Clear selection", on_click=_clear_selection, key="map_clear")
in_drawn = int(np.count_nonzero(points.rank()[chosen_at] < len(drawn)))
st.caption(f"By {how}; every sample inside counts, drawn or not ({in_drawn:,} of them drawn).")
if n_sel and colours.categorical:
    codes = colours.values[chosen_at]
    counts = np.bincount(codes[codes >= 0], minlength=len(colours.labels))
    top = [(colours.labels[k], int(counts[k])) for k in np.argsort(-counts, kind="stable")[:6] if counts[k]]
    missing_n = int(np.count_nonzero(codes < 0))
    st.caption(f"{md(chosen)}: " + " · ".join(f"{md(label)} {n:,}" for label, n in top)
               + (" · …" if np.count_nonzero(counts) > len(top) else "") + (f" · {md(colours.missing)} {missing_n:,}" if missing_n else ""))
if not n_sel:
    st.info("No sample inside this selection.")
    st.stop()

few = points.by_hash(chosen_at)[:8]  # a few of them (the smallest hashes: the same ones every time)
few_ids = points.ids(few)
images = context.read("first_images", tuple(few_ids))
for col, pos, sid in zip(st.columns(8), few, few_ids):
    thumb = thumbnail(str(blobs.local(images[sid], missing_ok=True))) if sid in images else None
    if thumb:
        col.image(thumb, width="stretch", link=_inspect(sid))
    col.caption(f"[{md(points.tasks[points.task_codes[pos]])}]({_inspect(sid)})")


def _targets() -> list[str]:
    return points.ids(chosen_at)


# ---- actions: the Gallery's own store calls and permission checks ------------------------------------------
def _open_in_gallery() -> None:
    """The selection handed to the Gallery (its session: a selection can be a million ids, too many for an
    address); the Gallery shows those samples, its filters applying within them, until "Show every sample"."""
    st.session_state["gal_only"] = {"ids": points.id_array(chosen_at), "label": f"the {n_sel:,} samples selected on the Map ({how})"}
    st.session_state["gal_page"] = 1
    st.session_state.pop("gal_picked", None)


if st.button(f"Open the {n_sel:,} in the Gallery", key="map_open", type="primary"):
    from streamlit.errors import StreamlitAPIException

    _open_in_gallery()
    try:
        st.switch_page(GALLERY)
    except StreamlitAPIException:  # the page run on its own (tests): no Gallery registered beside it
        st.markdown("[Open the Gallery](gallery)")

may_exclude, may_pilot = context.allowed("exclude_samples"), context.allowed("create_pilots")
done = None
if may_exclude or may_pilot:  # annotators see the map and open it in the Gallery, but change nothing (the server checks again)
    a, b, c = st.columns(3)
    if may_exclude:
        with a.form("map_exclude_form"):
            st.markdown(f"**Exclude from the data set** · {n_sel:,} sample(s)")
            reason = st.text_input("Reason (kept with the exclusion)", key="map_reason")
            x1, x2 = st.columns(2)
            do_exclude = x1.form_submit_button("Exclude")
            do_restore = x2.form_submit_button("Restore")
        if do_exclude and not reason.strip():
            st.error("give a reason: it is kept with the excluded samples")
        elif do_exclude or do_restore:
            targets = _targets()
            try:
                done = sample_actions.exclude_or_restore(targets, exclude=do_exclude, reason=reason, by=me.username)
            except exclusions.ExclusionError as exc:
                st.error(md(str(exc)))
        with c.form("map_tag_form"):  # tags are a curator's notes on samples: whoever may exclude may tag
            st.markdown(f"**Tag** · {n_sel:,} sample(s)")
            tag_text = st.text_input("Tags (comma-separated)", key="map_tags_text", placeholder="blurry, needs-review")
            y1, y2 = st.columns(2)
            do_tag = y1.form_submit_button("Tag")
            do_untag = y2.form_submit_button("Untag")
        if do_tag or do_untag:
            try:
                n = context.guarded("exclude_samples", tags.add if do_tag else tags.remove, lake, _targets(), [tag_text], by=me.username)
                if n is not context.REFUSED:
                    done = f"{'tagged' if do_tag else 'untagged'} {n:,} (sample, tag) pair(s)"
            except tags.TagError as exc:
                st.error(md(str(exc)))
    if may_pilot:
        listing = [p[0] for p in pilots.list_pilots(engine)]
        with b.form("map_pilot_form"):
            st.markdown(f"**Add to a pilot** · {n_sel:,} sample(s)")
            pilot_name = st.selectbox("Pilot", listing, key="map_pilot", placeholder="no pilot yet (Pilot page)")
            do_add = st.form_submit_button("Add to the pilot")
        if do_add:
            if not pilot_name:
                st.error("create a pilot first (Pilot page)")
            else:
                targets = _targets()
                try:
                    n = context.guarded("create_pilots", pilots.add_samples, lake, engine, pilot_name, targets)
                    if n is not context.REFUSED:
                        done = f"added {n:,} sample(s) to pilot '{md(pilot_name)}'" + (f" ({len(targets) - n:,} were in it already)" if n < len(targets) else "")
                except pilots.PilotError as exc:
                    st.error(md(str(exc)))
    if done:  # drawn again from the top, so that colours and counts say what the action did (the selection stays)
        st.session_state["map_flash"] = done
        st.rerun()
