"""Snapshots: freeze a saved filter at the current DuckLake version, rename one, list them, diff two, check one for
near-duplicate leaks across the held-out split, export one in any format (a job on the workers), download an export as a zip or its manifest. Annotators see the
list, the diff and the downloads; the forms that change something are for admins only."""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from curation import snapshots
from curation.exports import FORMATS
from curation.filters import FilterConfig, FilterError
from db.app import jobs as jobs_db
from db.app import saved_filters, users
from db.lake import exclusions
from db.storage import export_files
from db.storage.locations import Location
from jobs.submit import submit_job
from ui import context, downloads
from ui.labels import md

me = context.ensure_signed_in()
context.page_header("Snapshots", "A snapshot is a saved filter frozen at one DuckLake version: it exports the same bytes forever.")
s, lake, engine = context.settings(), context.lake(), context.engine()
EXPORTS = s.output("exports", "").rstrip("/")  # a folder, or an s3:// prefix (VITPRO_OUT_PATH)
REMOTE = not Location.of(EXPORTS).is_local
SNAPSHOT_KEYS = ("diff_a", "diff_b", "export_name", "manifest_snap", "rename_old", "leak_snap")  # widgets that hold a snapshot name


def _forget_stale(names: list[str], keys=SNAPSHOT_KEYS) -> None:
    """A snapshot renamed since: its old name is no option any more, start those pickers afresh."""
    for key in keys:
        if key in st.session_state and st.session_state[key] not in names:
            del st.session_state[key]


def _zip(who, entry, root_name: str) -> bytes:
    """The export as a zip, for a user the store lets export now (checked when the button is clicked, on
    Streamlit's download thread: no session there, so the user is captured at render). An export in S3 is
    copied into this server's cache first."""
    users.require(engine, who, "export")
    return downloads.zip_folder(export_files.local_copy(entry, s.home / "cache" / "exports"), root_name=root_name)


@st.cache_data(show_spinner=False, max_entries=256)
def _folder_bytes(folder: str, stamp: str) -> int:
    """An export's size, measured once per export (a new export rewrites its manifest): a folder of many
    images costs a stat per file (or an S3 listing), not on every rerun."""
    return export_files.size_of_export(folder, stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _found_remote(root: str, snap: str, last_export: tuple) -> list:
    """The snapshot's finished exports in S3: a few requests, made again once another export job has
    ended (``last_export``) rather than on every rerun."""
    return export_files.find(root, snap, FORMATS, size_of=_folder_bytes)


def _found(snap: str) -> list:
    if not REMOTE:
        return export_files.find(EXPORTS, snap, FORMATS, size_of=_folder_bytes)
    last = jobs_db.list_jobs(engine, limit=1, kind="export")
    return _found_remote(EXPORTS, snap, (last[0].id, last[0].status) if last else ())


@st.cache_data(show_spinner=False, max_entries=64)
@st.cache_data(show_spinner="comparing the two snapshots...", max_entries=32)
def _diff(home: str, a: str, a_version: int, a_sha: str, b: str, b_version: int, b_sha: str) -> dict[str, dict[str, int]]:
    """Per task: added, removed, unchanged from snapshot a to b. Snapshots never change: computed once per
    pair and server process (a rename looks it up again: the name is part of the key)."""
    return snapshots.diff(lake, snapshots.get(engine, a), snapshots.get(engine, b))


def _create(name: str, filter_name: str):
    config = FilterConfig.from_dict(saved_filters.get(engine, filter_name).config)
    return snapshots.create(lake, engine, name=name, filter_name=filter_name, config=config, created_by=me.username)


if context.allowed("create_snapshots"):  # annotators do not see the form at all; guarded() still checks on the server
    st.subheader("Create")
    saved = saved_filters.list_all(engine)
    filters = [f.name for f in saved]
    version = lake.current_version()
    with st.form("snapshot_create"):
        c = st.columns(2)
        fname = c[0].selectbox("Saved filter", filters, index=filters.index(saved_filters.newest(saved)) if filters else None, placeholder="save a filter on Thresholds first",
                               key="create_filter")
        # Keyed, with a fixed empty default: a value= that followed the filter made Streamlit see a new widget
        # whenever the filter changed, and the first submit after a change dropped the typed name.
        typed = c[1].text_input("Snapshot name", key="create_name", placeholder=f"<saved filter>-v{version} when left blank",
                                help="Letters, digits, spaces, dashes, dots; no slashes. Left blank: the filter's name and the store version.")
        if st.form_submit_button("Create snapshot"):
            if not fname:
                st.error("no saved filter yet: save one on the Thresholds page")
            else:
                try:
                    snap = context.guarded("create_snapshots", _create, typed.strip() or f"{fname}-v{version}", fname)
                    if snap is not context.REFUSED:
                        st.success(f"snapshot '{md(snap.name)}': {snap.counts['kept']:,} samples at DuckLake version {snap.lake_version}"
                                   + (f" ({snap.counts['excluded']:,} excluded samples left out)" if snap.counts.get("excluded") else ""))
                except (snapshots.SnapshotError, FilterError, saved_filters.UnknownFilter) as exc:
                    st.error(str(exc))

snaps = snapshots.list_all(engine)
_forget_stale([x.name for x in snaps])
if snaps and context.allowed("create_snapshots"):
    st.subheader("Rename")
    with st.form("snapshot_rename"):
        c = st.columns(2)
        old = c[0].selectbox("Snapshot", [x.name for x in snaps], index=len(snaps) - 1, key="rename_old")
        new = c[1].text_input("New name", key="rename_new", help=f"Its exports in {EXPORTS}/<name> move with it.")
        if st.form_submit_button("Rename snapshot"):
            try:
                renamed = context.guarded("create_snapshots", snapshots.rename, engine, old, new, exports_root=None if REMOTE else Path(EXPORTS))
                if renamed is not context.REFUSED:
                    _forget_stale([x.name for x in snapshots.list_all(engine)], [k for k in SNAPSHOT_KEYS if k != "rename_old"])
                    where = (f"; exports in S3 stay under {EXPORTS}/{old}" if REMOTE  # S3 has no rename of a prefix
                             else f"; its exports are in {EXPORTS}/{renamed.name}" if (Path(EXPORTS) / renamed.name).exists() else "")
                    st.success(f"snapshot '{md(old)}' is now '{md(renamed.name)}'{md(where)}")
            except snapshots.SnapshotError as exc:
                st.error(str(exc))
    snaps = snapshots.list_all(engine)

if not snaps:
    st.info("No snapshots yet." + ("" if context.allowed("create_snapshots") else " Ask an admin to create one."))
    st.stop()
names = [x.name for x in snaps]
st.subheader("Snapshots")
excluded_now = exclusions.count(lake)
st.caption(f"{excluded_now:,} sample(s) are excluded now: snapshots made from now on leave them out; each snapshot keeps the samples "
           "it was made of (its 'excluded' column counts those left out when it was made).")
st.dataframe([{"name": x.name, "filter": x.filter_name, "kept": x.counts.get("kept"), "dropped": x.counts.get("dropped"),
               "excluded": x.counts.get("excluded", 0), "DuckLake version": x.lake_version, "by": x.created_by,
               "created (UTC)": f"{x.created_at:%Y-%m-%d %H:%M:%S}", "conditions": "; ".join(FilterConfig.from_dict(x.filter_config).describe())}
              for x in snaps], hide_index=True, width="stretch")

st.subheader("Diff")
c = st.columns(2)
a = c[0].selectbox("From", names, index=0, key="diff_a")
b = c[1].selectbox("To", names, index=len(names) - 1, key="diff_b")
if a != b:
    sa, sb = (next(x for x in snaps if x.name == n) for n in (a, b))
    # what a diff depends on: a snapshot never changes, so its name, version and kept hash say it all
    key = (str(s.home), sa.name, sa.lake_version, sa.counts.get("kept_sha256"), sb.name, sb.lake_version, sb.counts.get("kept_sha256"))
    # on request only: a diff reads both snapshots' samples at their versions (seconds at a million samples)
    if st.session_state.get("diff_shown") != key and st.button("Compare", key="diff_go", help="Reads both snapshots' samples; remembered afterwards."):
        st.session_state["diff_shown"] = key
    if st.session_state.get("diff_shown") == key:
        try:
            per_task = _diff(*key)
            tasks = list(per_task)
            fig = go.Figure([go.Bar(name=k, x=tasks, y=[per_task[t][k] for t in tasks], marker_color=col)
                             for k, col in (("unchanged", "#1f77b4"), ("added", "#2ca02c"), ("removed", "#d62728"))])
            fig.update_layout(barmode="group", height=300, margin=dict(l=10, r=10, t=20, b=10))
            st.plotly_chart(fig, width="stretch")
            st.dataframe([{"task": t, **v} for t, v in per_task.items()], hide_index=True)
        except snapshots.SnapshotError as exc:
            st.error(str(exc))
else:
    st.caption("pick two different snapshots")

st.subheader("Leaks")
st.caption("Held-out products whose photos near-duplicate training photos (`vitpro dedup images` makes the groups): a run splits by "
           "near-duplicate group, so none should cross; 'by product' shows what a split by product, as adapters trained before "
           "did, lets through. Adapters of the snapshot whose split may leak are named.")
c = st.columns(4)
leak_snap = c[0].selectbox("Snapshot", names, index=len(names) - 1, key="leak_snap")
leak_by = c[1].selectbox("Split", ["dup_group", "product"], format_func={"dup_group": "by near-duplicate group", "product": "by product"}.get,
                         key="leak_by")
leak_holdout = c[2].number_input("Held out", 0.0, 0.99, 0.1, 0.05, key="leak_holdout", help="The run's --holdout (a share of products).")
leak_seed = int(c[3].number_input("Seed", 0, 10**9, 0, key="leak_seed", help="The run's --seed."))
leak_key = (leak_snap, leak_by, float(leak_holdout), leak_seed, lake.current_version())
# on request: the split reads every member's product and photo groups
if st.session_state.get("leaks_shown") != leak_key and st.button("Check for leaks", key="leak_go"):
    st.session_state["leaks_shown"] = leak_key
if st.session_state.get("leaks_shown") == leak_key:
    from trainer import leaks

    try:
        report = leaks.split_leaks(lake, engine, leak_snap, settings=leaks.SplitSettings(holdout=float(leak_holdout), seed=leak_seed, by=leak_by))
    except (leaks.LeakError, snapshots.SnapshotError) as exc:
        st.info(md(str(exc)))
    else:
        c = st.columns(3)
        c[0].metric("held-out samples", f"{report['held_out_samples']:,}")
        c[1].metric("held-out samples with a training near-duplicate", f"{report['held_out_samples_leaking']:,}")
        c[2].metric("groups crossing the split", f"{len(report['leaks']):,}")
        who = lambda items: ", ".join(f"{x['source']}/{x['external_id']}" if x["external_id"] else x["item_id"] for x in items)  # noqa: E731
        if report["leaks"]:
            st.dataframe([{"group": x["group"], "held out": who(x["held_out"]), "in training": who(x["training"])} for x in report["leaks"]],
                         hide_index=True, width="stretch")
        else:
            st.success(f"no near-duplicate group crosses this split ({md(report['grouping'])})")
        for adapter in report["adapters"]:
            if adapter["possibly_leaking"]:
                st.warning(f"adapter of run '{md(adapter['run'])}': possibly leaking ({md(adapter['why'])}); its evaluation may be too high")

if context.allowed("export"):  # annotators do not see the form at all; guarded() still checks on the server
    st.subheader("Export")
    with st.form("snapshot_export"):
        c = st.columns(3)
        snap_name = c[0].selectbox("Snapshot", names, index=len(names) - 1, key="export_name")
        formats = c[1].multiselect("Formats", list(FORMATS), default=list(FORMATS), key="export_formats")
        ocr = c[2].checkbox("OCR text in the prompt", value=True, key="export_ocr")
        replace = c[2].checkbox("Replace an export that exists", value=False, key="export_replace",
                                help="an export of this snapshot in a chosen format is replaced only when this is ticked")
        submitted = st.form_submit_button("Export")
    if submitted:
        from jobs.export import ExportJob

        there = [e.fmt for e in _found(snap_name) if e.fmt in formats]
        if there and not replace:  # the engine would write the same snapshot over itself: say so, and ask
            st.error(f"'{md(snap_name)}' is exported already in {', '.join(there)}; nothing was launched. Tick 'Replace an export "
                     "that exists' to write it again.")
        else:
            try:
                params = ExportJob(snapshot=snap_name, formats=formats, out=f"{EXPORTS}/{snap_name}", ocr=ocr, force=replace).params()
            except ValueError as exc:  # a folder holding something else: said, nothing overwritten
                st.error(md(str(exc)) + ("" if replace else " · tick 'Replace an export that exists' to overwrite it"))
            else:
                job = context.guarded("export", submit_job, "export", params, settings=s, launched_by=me.username)
                if job is not context.REFUSED:
                    st.success(f"export job {job} launched: it shows below when it ends; files go to {md(EXPORTS)}/{md(snap_name)}")

st.subheader("Exports on disk")


@st.fragment(run_every=5)
def exports_on_disk() -> None:
    """Read again every few seconds: an export job that ends shows here without a reload."""
    st.caption(f"as of {datetime.now(timezone.utc):%H:%M:%S} UTC · refreshed every 5 s")
    shown = st.selectbox("Snapshot", names, index=len(names) - 1, key="manifest_snap")
    found = _found(shown)
    if not found:
        st.caption(f"no export of '{md(shown)}' yet in {md(EXPORTS)}/{md(shown)}")
    cap, may_export = downloads.cap_bytes(), context.allowed("export")
    for entry in found:
        fmt, manifest, size = entry.fmt, entry.manifest, entry.size
        c = st.columns([2, 3, 2, 2])
        c[0].markdown(f"**{fmt}** · {manifest.get('records', '?')} records · {size / 1e6:,.1f} MB")
        c[1].caption(entry.location)
        c[2].download_button("Download manifest", entry.manifest_bytes, file_name=f"{shown}-{fmt}-manifest.json", mime="application/json", key=f"dl_{fmt}",
                             on_click="ignore")
        if not may_export:
            pass  # the data itself leaves with an export: admins only (the manifest says what is in it)
        elif size > cap:
            c[3].caption(f"too large to download as a zip here ({size / 1e6:,.0f} MB, the limit is {cap / 1e6:,.0f} MB): copy {entry.location} from the server")
        else:
            # deferred: the zip is built when clicked, not on every rerun of the page
            c[3].download_button("Download zip", functools.partial(_zip, me, entry, f"{shown}-{fmt}"),
                                 file_name=f"{shown}-{fmt}.zip", mime="application/zip", key=f"zip_{fmt}", on_click="ignore")


exports_on_disk()
