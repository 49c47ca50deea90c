"""Thresholds: set each filter by value or percentile and watch kept / dropped move, overall and per task
and category; histograms with the cut drawn; the samples on either side of each cut; open a saved filter,
adjust it and save it back (or under a new name)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import plotly.graph_objects as go
import streamlit as st

from curation import cuts
from curation.filters import Condition, FilterConfig, FilterError
from curation.model_ids import public_model_id
from db.app import saved_filters
from db.lake import metrics, sampling
from db.reads import sample_briefs, score_kinds
from ui import context, images
from ui import thresholds_state as ws
from ui import view_state as vs
from ui.labels import md

context.ensure_signed_in()
context.page_header("Thresholds", "Each move is one aggregate query over the stored scores; nothing is recomputed.")
lake, engine = context.lake(), context.engine()
VERSION, HOME = lake.current_version(), str(context.settings().home)  # one version lookup per rerun: every cache below keys on it

NEW = "(a new filter)"
MARGIN_N = 3  # samples shown on each side of a cut
INSPECT_PAGE = str(Path(__file__).resolve().parent / "inspect.py")  # as ui/app.py registers it (a page link matches the path)


# ---- reads, remembered until the store changes (the DuckLake version is in every key) ------------------
@st.cache_data(show_spinner=False, max_entries=8)
def _stats(version: int, home: str) -> list[dict]:
    """The stats one can threshold (a pass over every score: once per store version, not per click)."""
    return [r for r in score_kinds.score_kinds(context.lake())
            if r["metric"] in metrics.METRICS and r["subject_kind"] == metrics.METRICS[r["metric"]].subject and r["n"] > r["missing"]
            and r["segment"] in ("", "answer")]


@st.cache_data(show_spinner=False, max_entries=8)
def _selections(version: int, home: str) -> list[str]:
    return [name for name, kind, _ in sampling.selection_names(context.lake()) if kind == "sample"]


@st.cache_data(show_spinner=False, max_entries=64)
def _summary(_table, table_name: str, config_json: str, version: int, home: str):
    """Kept / dropped and histograms of one config: a rerun that changes no cut (typing a name, saving,
    opening an expander) costs nothing."""
    config = FilterConfig.from_dict(json.loads(config_json))
    started = time.perf_counter()
    report, hists = _table.summary(config, hist=[c for c in config.conditions if not c.is_field])
    return report, hists, 1000 * (time.perf_counter() - started)


@st.cache_data(show_spinner=False, max_entries=256)
def _margin(_table, table_name: str, cond_json: str, cut: float, version: int, home: str) -> dict[str, list[dict]]:
    """The samples just below and just above one cut, with their text and image paths: read once per cut."""
    cond = Condition(**json.loads(cond_json))
    above, below = _table.margin(cond, cut, MARGIN_N)
    rows = sample_briefs.briefs(context.lake(), [sid for sid, _ in above + below])  # point reads: a cut moves on every click
    blobs = context.blobs()
    shown = lambda side: [{"sample_id": sid, "value": v, "task": rows.get(sid, {}).get("task"),  # noqa: E731
                           "question": rows.get(sid, {}).get("question") or "",
                           "image": str(blobs.local(rows[sid]["blob_path"], missing_ok=True)) if rows.get(sid, {}).get("blob_path") else None} for sid, v in side]
    return {"below": shown(below), "above": shown(above)}


def _label(r: dict, full_id: bool = False) -> str:
    model = (r["model_id"] if full_id else public_model_id(r["model_id"])) if r["model_id"] else "no model"
    return f"{metrics.label(r['metric'])} · {model}" + (f" · {r['segment']}" if r["segment"] else "")


def _sig(value) -> str:
    """A cut as people read it: 4 significant digits (the stored float has 17)."""
    return "none" if value is None else f"{value:.4g}"


stats = _stats(VERSION, HOME)
if not stats:
    st.info("No scores stored yet: run CLIPScore and VisAttnScore (Jobs page).")
    st.stop()
short = [_label(r) for r in stats]
# a model's folder name, unless two folders of one name scored the same stat: then the whole id
options = {(_label(r, full_id=True) if short.count(label) > 1 else label): r for r, label in zip(stats, short)}
selections = _selections(VERSION, HOME)
saved = {f.name: f.config for f in saved_filters.list_all(engine)}


# ---- the view in the address and back after navigation (ui/view_state.py) ------------------------------
def _stat_keys(label: str) -> list[vs.Key]:
    """One stat's controls as view keys; their defaults are the page's own for that stat."""
    k, metric = ws.keys(label), options[label]["metric"]
    return [vs.Key(k["mode"], str, ("percentile", "value"), "percentile"), vs.Key(k["op"], str, (">=", "<="), ">="),
            vs.Key(k["miss"], bool, None, metric == "clip_score"), vs.Key(k["pt"], bool, None, False),
            vs.Key(k["pct"], float, None, 25.0 if metric == "vis_attn" else 20.0), vs.Key(k["val"], float)]


VIEW = [vs.Key("thr_stats", list, tuple(options)), vs.Key("thr_sel", str, ("all samples", *selections), "all samples")]
vs.restore("thr", VIEW)
vs.restore("thr", [key for label in st.session_state.get("thr_stats") or [] if label in options for key in _stat_keys(label)])


# ---- start from a saved filter ------------------------------------------------------------------------
def _open_saved(options: dict, selections: list[str], saved: dict[str, dict]) -> None:
    """Show the chosen saved filter in the widgets (a callback: it runs before the widgets are drawn)."""
    name = st.session_state.get("thr_from")
    if name not in saved:
        st.session_state.update(thr_fixed=[], thr_unshown=[], thr_loaded=None)
        return
    state, fixed, unshown = ws.widget_state(FilterConfig.from_dict(saved[name]), options, selections)
    for label in state["thr_stats"]:  # no mode switch to carry over: the loaded cut is the cut
        st.session_state[f"_thr_prev_mode_{label}"] = state[ws.keys(label)["mode"]]
    st.session_state.update(state, thr_fixed=fixed, thr_unshown=unshown, thr_loaded=name, thr_name=name)


st.selectbox("Start from saved filter", [NEW, *saved], key="thr_from", on_change=_open_saved, args=(options, selections, saved),
             help="shows a saved filter's conditions in the controls below; adjust them, then save it back or under a new name")
if st.session_state.get("thr_unshown"):
    st.warning("Not shown (this store has no such stat, or the controls cannot show it): " + "; ".join(st.session_state["thr_unshown"]))
fixed = [Condition(**c) for c in st.session_state.get("thr_fixed") or []]
if fixed:
    st.caption(f"Also applied, as saved in {st.session_state.get('thr_loaded')!r}: " + "; ".join(c.describe() for c in fixed))

# one VisAttnScore and one CLIPScore to start with (the first model of each, where several scored them)
first_of: dict[str, str] = {}
for label, r in options.items():
    first_of.setdefault(r["metric"], label)
st.session_state.setdefault("thr_stats", [label for metric, label in first_of.items() if metric in ("vis_attn", "clip_score")])
st.session_state["thr_stats"] = [label for label in st.session_state["thr_stats"] if label in options]  # a stat gone from the store
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Stats to threshold", list(options), key="thr_stats")
selection = c2.selectbox("Samples", ["all samples", *selections], key="thr_sel")
selection = None if selection == "all samples" else selection

if not chosen and not fixed:
    st.info("Pick at least one stat.")
    st.stop()
try:  # the stats table first: a mode switch below carries its cut over through it
    table = context.stats_table(FilterConfig([Condition(options[lb]["metric"], ">=", 0.0, model_id=options[lb]["model_id"],
                                                        segment=options[lb]["segment"]) for lb in chosen] + fixed, selection=selection))
except FilterError as exc:
    st.error(str(exc))
    st.stop()


def _carry(cond_of_stat: Condition, mode: str, k: dict[str, str], lo: float, hi: float) -> None:
    """The user switched percentile <-> value: set the new slider to the same cut (the percentile's value
    in the store, or the value's percentile), so the kept count stays where it was."""
    carried = f"_thr_carried_{k['pct']}"
    if mode == "value" and k["pct"] in st.session_state:
        cond = Condition(cond_of_stat.metric, ">=", None, float(st.session_state[k["pct"]]), model_id=cond_of_stat.model_id, segment=cond_of_stat.segment)
        value = cuts.value_at(table, cond)
        if value is not None:
            st.session_state[k["val"]] = ws.on_grid(value, lo, hi)
            # remembered: switching back without moving the value gives the very percentile (the value's
            # rounding to the slider's grid would otherwise drift it, p30 -> p30.5)
            st.session_state[carried] = (float(st.session_state[k["pct"]]), st.session_state[k["val"]])
    elif mode == "percentile" and k["val"] in st.session_state:
        before = st.session_state.get(carried)
        if before is not None and before[1] == st.session_state[k["val"]]:
            st.session_state[k["pct"]] = before[0]
            return
        pct = cuts.percentile_of(table, cond_of_stat, float(st.session_state[k["val"]]))
        if pct is not None:
            st.session_state[k["pct"]] = round(pct, 1)


conditions: list[Condition] = []
for label in chosen:
    r, k = options[label], ws.keys(label)
    stat = Condition(r["metric"], ">=", 0.0, model_id=r["model_id"], segment=r["segment"])
    lo, hi = table.value_range(stat)
    lo, hi = (float(r["min"]), float(r["max"])) if lo is None else (float(lo), float(hi))
    with st.container(border=True):
        a, b, c, d = st.columns([2, 1, 4, 2])
        a.markdown(f"**{label}**")
        mode = b.radio("by", ["percentile", "value"], key=k["mode"], label_visibility="collapsed")
        if st.session_state.get(f"_thr_prev_mode_{label}", mode) != mode:
            _carry(stat, mode, k, lo, hi)
        st.session_state[f"_thr_prev_mode_{label}"] = mode
        op = d.selectbox("keep", [">=", "<="], key=k["op"], help=">= keeps samples at or above the cut")
        st.session_state.setdefault(k["miss"], r["metric"] == "clip_score")
        missing = d.checkbox("missing passes", key=k["miss"])
        per_task = d.checkbox("percentile per task", key=k["pt"], disabled=mode != "percentile")
        if mode == "percentile":
            st.session_state.setdefault(k["pct"], 25.0 if r["metric"] == "vis_attn" else 20.0)
            pct = c.slider("percentile", 0.0, 100.0, step=ws.PERCENTILE_STEP, format="%.1f", key=k["pct"])
            cond = Condition(r["metric"], op, None, float(pct), model_id=r["model_id"], segment=r["segment"], per_task=per_task, keep_missing=missing)
        else:
            if k["val"] not in st.session_state:  # value mode without a cut to carry over: the 25th percentile
                start = cuts.value_at(table, Condition(r["metric"], ">=", None, 25.0, model_id=r["model_id"], segment=r["segment"]))
                st.session_state[k["val"]] = ws.on_grid(lo if start is None else start, lo, hi)
            # a saved value outside today's range (the scores changed since) would stop the slider: clamp it
            st.session_state[k["val"]] = min(max(float(st.session_state[k["val"]]), lo), hi if hi > lo else lo + 1.0)
            value = c.slider("value", lo, hi if hi > lo else lo + 1.0, step=ws.value_step(lo, hi), format="%.4g", key=k["val"])
            cond = Condition(r["metric"], op, float(value), model_id=r["model_id"], segment=r["segment"], keep_missing=missing)
        conditions.append(cond)

vs.publish("thr", [*VIEW, *(key for label in chosen for key in _stat_keys(label))], prefix="thr_")

config = FilterConfig(conditions + fixed, selection=selection)
try:
    report, hists, query_ms = _summary(table, table.name, json.dumps(config.to_dict(), sort_keys=True), VERSION, HOME)
except FilterError as exc:
    st.error(str(exc))
    st.stop()

if "thr_flash" in st.session_state:
    st.success(st.session_state.pop("thr_flash"))
total = report.kept + report.dropped
excluded = getattr(report, "excluded", 0)  # samples taken out of the data set (counted among the dropped)
unscored = table.unscored(config)  # dropped for want of a score, not for their score: said apart
judged = total - excluded - unscored  # the samples the cuts were applied to
m = st.columns(5)
m[0].metric("kept", f"{report.kept:,}", f"{100 * report.kept / judged:.1f}% of scored" if judged > 0 else None, delta_color="off",
            help="the share is of the samples that have every stat the cuts need (not of all samples)")
m[1].metric("dropped by the cuts", f"{report.dropped - excluded - unscored:,}")
m[2].metric("not scored", f"{unscored:,}", help="samples without a value of a stat a cut needs ('missing passes' off): dropped, "
            "but for want of a score; score them, or tick 'missing passes'")
m[3].metric("samples", f"{total:,}", help=f"{excluded:,} of them excluded from the data set" if excluded else None)
m[4].metric("query time", f"{query_ms:.0f} ms")
if report.thresholds:
    st.caption("Cuts: " + "; ".join(f"{k} → {'per task (table below its histogram)' if isinstance(v, dict) else _sig(v)}"
                                    for k, v in report.thresholds.items()))


def _cut(cond: Condition):
    if cond.percentile is None:
        return cond.value
    return report.thresholds.get(cond.describe())


def _inspect_link(container, sample_id: str) -> None:
    """A link to the sample on Inspect (its permalink ``inspect?sample=<id>``). Inside the app, a page link
    (it keeps the session); a page run on its own (tests) has no registered Inspect page: a relative link."""
    from streamlit.errors import StreamlitAPIException

    try:
        container.page_link(INSPECT_PAGE, label="open in Inspect", icon=":material/search:", query_params={"sample": sample_id})
    except StreamlitAPIException:
        container.markdown(f"[open in Inspect](inspect?sample={quote(sample_id, safe='')})")


def _margin_strip(cond: Condition, cut: float) -> None:
    cond_json = json.dumps(FilterConfig([cond]).to_dict()["conditions"][0], sort_keys=True)
    sides = _margin(table, table.name, cond_json, float(cut), VERSION, HOME)
    cols = st.columns(2)
    for col, title, rows in ((cols[0], "just below the cut", sides["below"]), (cols[1], "just above the cut", sides["above"])):
        col.markdown(f"*{title}*")
        for row in rows:
            pic, words = col.columns([1, 4])
            thumb = images.thumbnail(row["image"], 128) if row["image"] else None
            if thumb:
                pic.image(thumb, width=72)
            else:
                pic.caption("no image")
            words.markdown(f"`{_sig(row['value'])}` · {row['task'] or ''}")
            words.text(row["question"][:140])
            _inspect_link(words, row["sample_id"])


for cond, label in zip(conditions, chosen):
    bins = hists.get(table.column(cond)) or []
    if not bins:
        continue
    width = (bins[1][0] - bins[0][0]) if len(bins) > 1 else 1.0
    centres = [b[0] + width / 2 for b in bins]
    fig = go.Figure([go.Bar(x=centres, y=[b[1] - b[2] for b in bins], name="dropped", marker_color="#d62728", width=width),
                     go.Bar(x=centres, y=[b[2] for b in bins], name="kept", marker_color="#2ca02c", width=width)])
    cut = _cut(cond)
    lines = sorted(cut.items()) if isinstance(cut, dict) else [("cut", cut)]
    shown = sorted(((n, v) for n, v in lines if v is not None), key=lambda nv: nv[1])
    for k, (name, value) in enumerate(shown):
        # each line says whose cut it is; in the order of their values, labels step through four heights, so
        # that neighbouring cuts (eight tasks' cuts can sit within a bin) never write over each other
        fig.add_vline(x=value, line_dash="dash", line_color="black", annotation_text=f"{name} {_sig(value)}",
                      annotation_position="top", annotation_textangle=-90, annotation_font_size=10, annotation_yshift=-(k % 4) * 45)
    fig.update_layout(barmode="stack", height=300 if len(lines) < 2 else 380, title=f"{label}: {cond.describe()}", margin=dict(l=10, r=10, t=60, b=10),
                      xaxis_title=label, yaxis_title="samples")
    st.plotly_chart(fig, width="stretch", key=f"thr_hist_{label}")
    if isinstance(cut, dict):
        own = _summary(table, table.name, json.dumps(FilterConfig([cond], selection=selection).to_dict(), sort_keys=True), VERSION, HOME)[0]
        counts = {t: (kept, dropped) for t, kept, dropped in own.per_task}
        st.dataframe([{"task": t, "cut": _sig(v), "kept": counts.get(t, (0, 0))[0], "dropped": counts.get(t, (0, 0))[1]} for t, v in sorted(cut.items())],
                     hide_index=True, width="stretch", key=f"thr_cuts_{label}")
        st.caption("kept and dropped by this condition alone; the margin strip is shown for a single cut")
    elif cut is not None:
        _margin_strip(cond, float(cut))

left, right = st.columns(2)
for col, title, axis, rows in ((left, "per task", "task", report.per_task), (right, "per category", "category", report.per_category)):
    names = [r[0] for r in rows]
    fig = go.Figure([go.Bar(name="kept", x=names, y=[r[1] for r in rows], marker_color="#2ca02c"),
                     go.Bar(name="dropped", x=names, y=[r[2] for r in rows], marker_color="#d62728")])
    fig.update_layout(barmode="stack", height=300, title=f"Kept and dropped {title}", margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title=axis, yaxis_title="samples")
    col.plotly_chart(fig, width="stretch", key=f"thr_bars_{axis}")
    col.dataframe([{"name": n, "kept": k, "dropped": d} for n, k, d in rows], hide_index=True, width="stretch")

if context.allowed("save_filters"):  # annotators do not see the form; guarded() below is the check that counts
    st.subheader("Save as a named filter")
    with st.form("save_filter"):
        st.session_state.setdefault("thr_name", "")
        name = st.text_input("Filter name", key="thr_name", help="the name of a saved filter replaces it; a new name adds one")
        save = st.form_submit_button("Save filter")
    if save:
        name = name.strip()
        if not name:
            st.error("give the filter a name")
        elif name in saved and name != st.session_state.get("thr_loaded") and not st.session_state.get("thr_replace_ok") == name:
            # a name typed over another filter: say so once; saving again replaces it
            st.session_state["thr_replace_ok"] = name
            st.warning(f"a filter named '{md(name)}' exists already: save again to replace it, or choose another name")
        else:
            replaced = context.guarded("save_filters", saved_filters.save, engine, name, config.to_dict(), context.user().username)
            if replaced is not context.REFUSED:
                st.session_state.pop("thr_replace_ok", None)
                st.success(f"{'replaced' if replaced else 'saved'} filter '{md(name)}': {report.kept:,} samples kept")

if context.allowed("exclude_samples"):  # act on the whole cut: what these thresholds drop leaves the data set
    dropped_n = report.dropped - excluded
    with st.expander(f"Exclude the {dropped_n:,} samples these cuts drop"):
        st.caption("They leave every filter, snapshot and export made from now on (Snapshots made before keep them); a restore "
                   "(Gallery, or `vitpro samples restore`) puts them back. Unscored samples are among them unless 'missing passes' is ticked.")
        with st.form("thr_exclude_form"):
            reason = st.text_input("Reason (kept with the exclusion)", key="thr_ex_reason")
            sure = st.checkbox(f"Yes, exclude all {dropped_n:,}", key="thr_ex_sure")
            go_ = st.form_submit_button("Exclude them")
        if go_:
            if not reason.strip():
                st.error("give a reason: it is kept with the excluded samples")
            elif not sure:
                st.error(f"tick 'Yes, exclude all {dropped_n:,}' first")
            else:
                from db.lake import exclusions

                n = context.guarded("exclude_samples", lambda: exclusions.exclude(lake, table.dropped_ids(config), reason=reason.strip(),
                                                                                  by=context.user().username))
                if n is not context.REFUSED:  # drawn again at once: every count then says what the exclusion did
                    st.session_state["thr_flash"] = f"excluded {n:,} sample(s) these cuts dropped"
                    st.session_state.pop("thr_ex_sure", None)
                    st.rerun()
