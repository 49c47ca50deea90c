"""Samples excluded or put back: one from the keyboard (X on Gallery's focused tile and on Inspect), with the reason
the curator typed once for a run of samples; many from the bulk forms of the Gallery and the Map."""
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


def exclude_or_restore(targets: list[str], *, exclude: bool, reason: str, by: str) -> str | None:
    """The bulk form's action (Gallery, Map): exclude ``targets`` with ``reason`` or restore them; returns what was
    done for the page to show, None where the server refused the user. Raises exclusions.ExclusionError."""
    lake = context.lake()
    if exclude:
        n = context.guarded("exclude_samples", exclusions.exclude, lake, targets, reason=reason.strip(), by=by)
        return None if n is context.REFUSED else f"excluded {n:,} sample(s)" + (f" ({len(targets) - n:,} were already)" if n < len(targets) else "")
    n = context.guarded("exclude_samples", exclusions.restore, lake, targets, by=by)
    return None if n is context.REFUSED else f"restored {n:,} sample(s)" + (f" ({len(targets) - n:,} were not excluded)" if n < len(targets) else "")


def show(message: str) -> None:
    """A message from toggle_exclusion (or a page's own), as a warning or a success."""
    import streamlit as st

    if message:
        (st.warning if message.startswith("warning: ") else st.success)(message.removeprefix("warning: "))
