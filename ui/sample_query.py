"""The filter-and-sort controls that Inspect and Gallery share (the same query, each page its own widget
keys): task, category, text, order, the two scores' models and "scored only". Their values are part of
the page's view (ui/view_state.py): in the address, and back after navigation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from db.reads import browse
from ui import context
from ui import view_state as vs
from ui.labels import model_labels

TEXT_HELP = ("question, answer, the item's title, description, brand and attributes, a complaint's text, and the OCR text of the "
             "item's images")


@dataclass
class SampleQuery:
    tasks: list[str]
    categories: list[str]
    text: str
    order: str
    vis_model: str | None
    clip_model: str | None
    scored_only: bool
    vis_models: list[str]
    names: dict[str, str]
    facets: dict[str, Any]
    columns: tuple  # the control rows' columns (c1 ... c6), for a page's own controls beside these
    keys: list = ()  # the controls' view_state keys (the page publishes them with its own)

    def args(self, **extra) -> tuple[tuple[str, Any], ...]:
        """The browse query as a hashable tuple of (name, value) (a cache key and browse_cache.browse's kwargs)."""
        base = {"vis_model": self.vis_model, "clip_model": self.clip_model, "tasks": tuple(self.tasks), "categories": tuple(self.categories),
                "text": self.text, "order": self.order, "scored_only": bool(self.scored_only and self.vis_model)}
        return tuple({**base, **extra}.items())


QUERY_PARTS = ("tasks", "cats", "text", "order", "vis", "clip", "scored")  # the widget keys' endings, the same on every page


def view_keys(prefix: str, facets: dict[str, Any], vis_models: list[str], clip_models: list[str]) -> list[vs.Key]:
    """The shared controls' keys as view_state keys (their types, choices and defaults)."""
    return [vs.Key(f"{prefix}_tasks", list, tuple(facets["task"]), []), vs.Key(f"{prefix}_cats", list, tuple(facets["category"]), []),
            vs.Key(f"{prefix}_text", str, None, ""), vs.Key(f"{prefix}_order", str, tuple(browse.ORDERS), next(iter(browse.ORDERS))),
            vs.Key(f"{prefix}_vis", str, tuple(vis_models), vis_models[0] if vis_models else None),
            vs.Key(f"{prefix}_clip", str, tuple(clip_models), clip_models[0] if clip_models else None),
            vs.Key(f"{prefix}_scored", bool, None, bool(vis_models))]


def same_query_on(page_prefix: str, params: dict[str, str], prefix: str) -> dict[str, str]:
    """The query parameters of one page's shared controls renamed for another page's (a Gallery tile opens
    Inspect with the Gallery's filter, so its arrows step through the same samples)."""
    return {f"{prefix}_{part}": params[f"{page_prefix}_{part}"] for part in QUERY_PARTS if f"{page_prefix}_{part}" in params}


def controls(prefix: str, extra: list[vs.Key] = ()) -> SampleQuery:
    """Draw the shared controls inside an open "Filter and sort" expander; widget keys are ``{prefix}_...``.
    Their values (and the page's ``extra`` keys) are first restored from the address or the session's last
    view of the page (view_state.restore); the page publishes them once all its widgets are drawn."""
    vis_models = context.read("stored_models", "vis_attn", "answer", True)
    clip_models = context.read("stored_models", "clip_score", "", True)
    names = model_labels([*vis_models, *clip_models])
    facets = context.read("facets")
    keys = view_keys(prefix, facets, vis_models, clip_models)
    vs.restore(prefix, [*keys, *extra])
    st.session_state.setdefault(f"{prefix}_scored", bool(vis_models))  # set here, not as value=: a restored value wins
    c1, c2, c3 = st.columns(3)
    tasks = c1.multiselect("Task", facets["task"], key=f"{prefix}_tasks")
    cats = c2.multiselect("Category", facets["category"], key=f"{prefix}_cats")
    text = c3.text_input("Text contains", key=f"{prefix}_text", help=TEXT_HELP)
    c4, c5, c6 = st.columns(3)
    order = c4.selectbox("Order", list(browse.ORDERS), key=f"{prefix}_order")
    vis_model = c5.selectbox("VisAttnScore model", vis_models, key=f"{prefix}_vis", format_func=names.get) if vis_models else None
    clip_model = c6.selectbox("CLIPScore model", clip_models, key=f"{prefix}_clip", format_func=names.get) if clip_models else None
    # on by default wherever anything is scored: half of a fresh store's samples have no VisAttnScore yet
    scored_only = c4.checkbox("Scored only", key=f"{prefix}_scored", disabled=not vis_models,
                              help="only samples with a VisAttnScore from the chosen model")
    return SampleQuery(tasks, cats, text, order, vis_model, clip_model, scored_only, vis_models, names, facets, (c1, c2, c3, c4, c5, c6), keys)
