"""The sidebar's saved views: save the page on screen with its address (filters, cuts, page number) under a
name, and open any saved view, anyone's, in one click. The view's state itself travels in the query string
(ui/view_state.py); a saved view is that query string and the page's path, kept in the app tables."""
from __future__ import annotations

import streamlit as st

from db.app import saved_views
from ui import context
from ui.labels import md

PRIVATE_PARAMS = ("tab",)  # a tab's own id (the Pilot page's undo history) is never part of a shared view


def panel(current, pages: dict[str, object]) -> None:
    """``current``: the page st.navigation picked; ``pages``: url path -> page, to link each view to."""
    engine = context.engine()
    views = saved_views.list_all(engine)
    with st.expander(f"Saved views ({len(views)})"):
        for view in views:
            target = pages.get(view.page)
            if target is None:
                st.caption(f"{md(view.name)}: page {md(view.page)} is gone")
                continue
            st.page_link(target, label=view.name, query_params=view.query or None, help=f"saved by {view.created_by}")
        with st.form("save_view", clear_on_submit=True, border=False):
            name = st.text_input("Save this view as", key="view_name", placeholder="e.g. counting, low scores")
            if st.form_submit_button("Save view"):
                query = {k: v for k, v in st.query_params.items() if k not in PRIVATE_PARAMS}
                try:
                    replaced = saved_views.save(engine, name, current.url_path, query, context.user().username)
                    st.success(f"{'replaced' if replaced else 'saved'} view '{md(name.strip())}'")
                except saved_views.ViewError as exc:
                    st.error(md(str(exc)))
