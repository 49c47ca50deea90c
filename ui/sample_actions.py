"""One sample excluded or put back from the keyboard (X on Gallery's focused tile and on Inspect): the
same store call as the Gallery's bulk form, with the reason the curator typed once for a run of samples."""
from __future__ import annotations

from db.lake import exclusions
from ui import context


def toggle_exclusion(sample_id: str, reason: str, *, by: str) -> str:
    """Exclude ``sample_id`` with ``reason``, or put it back if it is excluded; returns what was done, for the
    page to show ("warning: ..." when nothing was). The server checks the user's right here too."""
    lake = context.lake()
    if exclusions.current(lake, sample_id):
        n = context.guarded("exclude_samples", exclusions.restore, lake, [sample_id], by=by)
        return "" if n is context.REFUSED else f"restored sample {sample_id}"
    if not reason.strip():
        return "warning: type the reason for X first (it is kept with the exclusion, and reused for the next ones)"
    try:
        n = context.guarded("exclude_samples", exclusions.exclude, lake, [sample_id], reason=reason.strip(), by=by)
    except exclusions.ExclusionError as exc:
        return f"warning: {exc}"
    return "" if n is context.REFUSED else f"excluded sample {sample_id}: {reason.strip()}"


def show(message: str) -> None:
    """A message from toggle_exclusion (or a page's own), as a warning or a success."""
    import streamlit as st

    if message:
        (st.warning if message.startswith("warning: ") else st.success)(message.removeprefix("warning: "))
