"""A notice, on whatever page the user is on, when a job they launched ends: a toast with its status, read
every few seconds by a small fragment in the sidebar (one indexed query per user)."""
from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from db.app import jobs as jobs_db
from ui import context

SEEN_KEY = "_jobs_seen_until"
EVERY_SECONDS = 5
ICON = {"succeeded": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/block:"}


def notices(now: datetime | None = None) -> list[tuple[str, str]]:
    """The lines to show for this user's jobs that ended since the last look (the first look starts now:
    jobs that ended before the session began are the Jobs page's to show)."""
    now = now or datetime.now(timezone.utc)
    since = st.session_state.setdefault(SEEN_KEY, now)
    me = context.user()
    if me is None:
        return []
    ended = jobs_db.ended_since(context.engine(), me.username, since)
    if ended:
        st.session_state[SEEN_KEY] = max(j.finished_at if j.finished_at.tzinfo else j.finished_at.replace(tzinfo=timezone.utc) for j in ended)
    return [(f"{j.kind} job {j.id} {j.status}" + (f": {j.error[:120]}" if j.status == "failed" and j.error else ""), j.status) for j in ended]


@st.fragment(run_every=EVERY_SECONDS)
def watch() -> None:
    for line, status in notices():
        st.toast(line, icon=ICON.get(status, ":material/info:"))
