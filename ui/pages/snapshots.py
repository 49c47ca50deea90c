"""Snapshots: freeze a saved filter at the current DuckLake version, list them, diff two, export one in any
format (a job on the workers), download an export's manifest."""
from __future__ import annotations

import json

import plotly.graph_objects as go
import streamlit as st

from curation.exports import FORMATS, MANIFEST
from curation.filters import FilterConfig, FilterError
from db import saved_filters, snapshots
from ui import context
from workers.submit import submit_job

me = context.ensure_signed_in()
context.page_header("Snapshots", "A snapshot is a saved filter frozen at one DuckLake version: it exports the same bytes forever.")
s, lake, engine = context.settings(), context.lake(), context.engine()


def _create(name: str, filter_name: str):
    config = FilterConfig.from_dict(saved_filters.get(engine, filter_name).config)
    return snapshots.create(lake, engine, name=name, filter_name=filter_name, config=config, created_by=me.username)


st.subheader("Create" + ("" if context.allowed("create_snapshots") else " (admins only: you will be refused)"))
filters = [f.name for f in saved_filters.list_all(engine)]
with st.form("snapshot_create"):
    c = st.columns(2)
    fname = c[0].selectbox("Saved filter", filters, index=len(filters) - 1 if filters else None, placeholder="save a filter on Thresholds first")
    sname = c[1].text_input("Snapshot name", value=f"{fname or 'snapshot'}-v{lake.current_version()}")
    if st.form_submit_button("Create snapshot"):
        if not fname:
            st.error("no saved filter yet: save one on the Thresholds page")
        else:
            try:
                snap = context.guarded("create_snapshots", _create, sname.strip(), fname)
                if snap is not context.REFUSED:
                    st.success(f"snapshot {snap.name!r}: {snap.counts['kept']:,} samples at DuckLake version {snap.lake_version}")
            except (snapshots.SnapshotError, FilterError, saved_filters.UnknownFilter) as exc:
                st.error(str(exc))

snaps = snapshots.list_all(engine)
if not snaps:
    st.info("No snapshots yet.")
    st.stop()
st.subheader("Snapshots")
st.dataframe([{"name": x.name, "filter": x.filter_name, "kept": x.counts.get("kept"), "dropped": x.counts.get("dropped"),
               "DuckLake version": x.lake_version, "by": x.created_by, "created (UTC)": f"{x.created_at:%Y-%m-%d %H:%M:%S}",
               "conditions": "; ".join(FilterConfig.from_dict(x.filter_config).describe())} for x in snaps],
             hide_index=True, width="stretch")

names = [x.name for x in snaps]
st.subheader("Diff")
c = st.columns(2)
a = c[0].selectbox("From", names, index=0, key="diff_a")
b = c[1].selectbox("To", names, index=len(names) - 1, key="diff_b")
if a != b:
    try:
        per_task = snapshots.diff(lake, snapshots.get(engine, a), snapshots.get(engine, b))
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

st.subheader("Export" + ("" if context.allowed("export") else " (admins only: you will be refused)"))
with st.form("snapshot_export"):
    c = st.columns(3)
    snap_name = c[0].selectbox("Snapshot", names, index=len(names) - 1, key="export_name")
    formats = c[1].multiselect("Formats", list(FORMATS), default=list(FORMATS), key="export_formats")
    ocr = c[2].checkbox("OCR text in the prompt", value=True, key="export_ocr")
    if st.form_submit_button("Export"):
        from workers.jobs import export as export_job

        try:
            params = export_job.prepare_params(snapshot=snap_name, formats=formats, out=str(s.home / "exports" / snap_name), ocr=ocr, force=True)
        except ValueError as exc:
            st.error(str(exc))
        else:
            job = context.guarded("export", submit_job, "export", params, settings=s, launched_by=me.username)
            if job is not context.REFUSED:
                st.success(f"export job {job} launched: watch it on the Jobs page; files go to {s.home / 'exports' / snap_name}")

st.subheader("Exports on disk")
shown = st.selectbox("Snapshot", names, index=len(names) - 1, key="manifest_snap")
folder = s.home / "exports" / shown
found = [(fmt, folder / fmt / MANIFEST) for fmt in FORMATS if (folder / fmt / MANIFEST).is_file()]
if not found:
    st.caption(f"no export of {shown!r} yet in {folder}")
for fmt, path in found:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    c = st.columns([2, 3, 2])
    c[0].markdown(f"**{fmt}** · {manifest.get('records', '?')} records")
    c[1].caption(str(path.parent))
    c[2].download_button("Download manifest", path.read_bytes(), file_name=f"{shown}-{fmt}-manifest.json", mime="application/json", key=f"dl_{fmt}")
