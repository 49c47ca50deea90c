"""The curator web app: ``vitpro ui`` (or ``streamlit run ui/app.py``).

Served by ui/server.py, whose ``/login`` route signs people in and sets the session cookie; this script
checks that session on every rerun (ui/auth.py) and serves the pages to its user only.
No model library is imported here or by any page: long work is sent to the workers as jobs.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run ui/app.py` runs this file as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402

from ui import auth, context, job_notices, views_panel, warm  # noqa: E402
from ui.context import user  # noqa: E402

# ui/views, not ui/pages: Streamlit treats a "pages" folder beside the main script as pages of their own
# (its older multipage mode), served by URL before this script has even decided who is signed in
PAGES = Path(__file__).resolve().parent / "views"


def main() -> None:
    st.set_page_config(page_title="VIT-Pro Curation Studio", page_icon=":material/shopping_bag:", layout="wide")
    auth.restore()
    signed_in = user()
    if signed_in is None:
        # through st.navigation even here: one page and nothing else reachable
        st.navigation([st.Page(auth.sign_in_page, title="Sign in", url_path="signin", default=True)], position="hidden").run()
        return
    # once per server process: after each commit, the pages' costly reads are built before anyone asks
    # (ui/warm.py; only where ui/server.py serves this script, not under AppTest)
    warm.start(lambda: context.lake().current_version(), context.settings().ui_warm_seconds)
    with st.sidebar:
        st.markdown(f"**{signed_in.username}** · {signed_in.role}")
        # a plain form posted to the server's /logout in this tab (a markdown link would open a new tab): the
        # server revokes the session, clears the cookie and shows the sign-in page
        st.html('<form method="post" action="/logout" style="margin:0"><button type="submit" class="vitpro-signout" '
                'style="padding:4px 12px;border:1px solid #bbb;border-radius:6px;background:#fff;cursor:pointer">Sign out</button></form>')
    pages = [
        st.Page(str(PAGES / "overview.py"), title="Overview", icon=":material/monitoring:", default=True),
        st.Page(str(PAGES / "inspect.py"), title="Inspect", icon=":material/search:"),
        st.Page(str(PAGES / "gallery.py"), title="Gallery", icon=":material/grid_view:", url_path="gallery"),
        st.Page(str(PAGES / "map.py"), title="Map", icon=":material/scatter_plot:", url_path="map"),
        st.Page(str(PAGES / "thresholds.py"), title="Thresholds", icon=":material/tune:"),
        st.Page(str(PAGES / "pilot.py"), title="Pilot", icon=":material/label:"),
        st.Page(str(PAGES / "jobs.py"), title="Jobs", icon=":material/settings:"),
        st.Page(str(PAGES / "snapshots.py"), title="Snapshots", icon=":material/inventory_2:"),
        st.Page(str(PAGES / "training.py"), title="Training", icon=":material/show_chart:"),
    ]
    current = st.navigation(pages)
    with st.sidebar:
        views_panel.panel(current, {page.url_path: page for page in pages})
        job_notices.watch()  # a toast when a job this user launched ends, on any page
    current.run()


main()
